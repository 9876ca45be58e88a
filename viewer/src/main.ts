/** Entry point: picks the page from the URL. */

import { parseRoute } from "./lib/routes";
import { language } from "./lib/strings";
import { showCompare } from "./pages/compare";
import { showLogin } from "./pages/login";
import { showViewer } from "./pages/viewer";
import { showWorklist } from "./pages/worklist";
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
  void showWorklist(root, route.filters, route.compareWith);
}
