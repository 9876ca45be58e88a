/** The top bar shared by every page: brand (a link to the worklist) and page-specific parts. */

import { h } from "./dom";
import { worklistUrl } from "./routes";
import { setLanguage, t } from "./strings";

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
    languageToggle(),
  );
}

/** One button naming the other language in itself ("Français", "English"). */
function languageToggle(): HTMLElement {
  const { other, otherName, switchHint } = t.language;
  const button = h(
    "button",
    { type: "button", class: "language", lang: other, title: switchHint },
    otherName,
  );
  button.addEventListener("click", () => setLanguage(other));
  return button;
}
