/** Entry point: picks the page from the URL. */

import { showCompare } from "./compare";
import { showLogin } from "./login";
import { parseRoute } from "./routes";
import { language } from "./strings";
import { showViewer } from "./viewer";
import { showWorklist } from "./worklist";
import "./style.css";

const root = document.getElementById("app");
if (!root) throw new Error("index.html has no #app element");
document.documentElement.lang = language;

const route = parseRoute(window.location);
if (route.page === "viewer") {
  void showViewer(root, route.slideId, route.protocol, route.view);
} else if (route.page === "compare") {
  void showCompare(root, route.compare);
} else if (route.page === "login") {
  void showLogin(root, route.next);
} else {
  void showWorklist(root, route.query, route.compareWith);
}
