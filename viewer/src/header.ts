/** The top bar shared by every page: brand (a link to the worklist) and page-specific parts. */

import { h } from "./dom";
import { worklistUrl } from "./routes";
import { t } from "./strings";

export function appHeader(...parts: Node[]): HTMLElement {
  return h(
    "header",
    { class: "app-header" },
    h(
      "a",
      { class: "brand", href: worklistUrl(), title: t.app.tagline },
      h("img", { src: "/favicon.svg", alt: "", width: 22, height: 22 }),
      h("span", { class: "brand-name" }, t.app.name),
    ),
    ...parts,
  );
}
