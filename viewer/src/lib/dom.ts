/** A few lines of DOM building, so pages read as structure rather than createElement calls. */

import { t } from "./strings";

type Attributes = Record<string, string | number | boolean | undefined>;
type Child = Node | string | null | undefined | false;

/** `h("a", { href: "/" }, "home")`: an element with attributes (false/undefined ones left out). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Replaces everything in `root` with `children`. */
export function mount(root: HTMLElement, ...children: Node[]): void {
  root.replaceChildren(...children);
}

/** The browser tab's title: `text` · IAIN. */
export function setTitle(text: string): void {
  document.title = `${text} · ${t.app.name}`;
}

/** Keys in a text field (or on a slider, whose arrows move it) are text, not shortcuts. */
export function isTyping(target: EventTarget | null): boolean {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}
