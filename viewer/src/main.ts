/** Entry point: picks the page from the URL. */

import { parseRoute } from "./routes";
import { showViewer } from "./viewer";
import { showWorklist } from "./worklist";
import "./style.css";

const root = document.getElementById("app");
if (!root) throw new Error("index.html has no #app element");

const route = parseRoute(window.location);
if (route.page === "viewer") {
  void showViewer(root, route.slideId, route.protocol);
} else {
  void showWorklist(root, route.query);
}
