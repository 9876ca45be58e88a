/**
 * The glass slide's label and macro photographs, shown only when the hub lists them: it lists
 * none for a de-identified slide (the label often carries a name), and then the slide page
 * shows no button and asks for nothing.
 */

import type { SlideDetail } from "../lib/api";
import { h } from "../lib/dom";
import { t } from "../lib/strings";

/** Label and macro first: what a pathologist looks for; any other image after them. */
const ORDER = ["label", "macro"];

/**
 * The header button ("Label / Macro") and its panel, which it adds to `container`. The images
 * are requested when the panel first opens. Hidden (and inert) when the hub lists no image.
 */
export function associatedImagesButton(slide: SlideDetail, container: HTMLElement): HTMLElement {
  const entries = Object.entries(slide.associated_images ?? {}).sort(
    ([a], [b]) => rank(a) - rank(b) || a.localeCompare(b),
  );
  const button = h(
    "button",
    {
      type: "button",
      class: "associated-button",
      title: t.associated.hint,
      "aria-expanded": "false",
      "aria-controls": "associated-panel",
      hidden: entries.length === 0,
    },
    t.associated.button,
  );
  if (entries.length === 0) return button;

  const close = h(
    "button",
    {
      type: "button",
      class: "associated-close",
      title: t.associated.close,
      "aria-label": t.associated.close,
    },
    "×",
  );
  const figures = entries.map(([name, url]) => {
    const caption = t.associated.names[name] ?? name;
    const image = h("img", { alt: caption, decoding: "async" });
    image.addEventListener("error", () => {
      figure.replaceChildren(
        h("p", { class: "associated-error", role: "alert" }, t.associated.failed(caption)),
      );
    });
    const figure = h(
      "figure",
      { class: "associated-image", "data-name": name },
      image,
      h("figcaption", {}, caption),
    );
    return { figure, image, url };
  });
  const panel = h(
    "aside",
    { class: "associated-panel", id: "associated-panel", "aria-label": t.associated.button, hidden: true },
    h("header", {}, h("h2", {}, t.associated.button), close),
    ...figures.map((f) => f.figure),
  );
  container.append(panel);

  const show = (open: boolean): void => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) for (const f of figures) if (!f.image.src) f.image.src = f.url;
  };
  button.addEventListener("click", () => show(panel.hidden));
  close.addEventListener("click", () => show(false));
  return button;
}

function rank(name: string): number {
  const index = ORDER.indexOf(name);
  return index === -1 ? ORDER.length : index;
}
