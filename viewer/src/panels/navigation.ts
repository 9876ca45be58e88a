/**
 * Getting around a slide: the view in the address bar (shareable links), the toolbar
 * (magnifications, rotation, flip, copy link, help) and the keyboard shortcuts.
 */

import OpenSeadragon from "openseadragon";
import { getCase, listSlides, type SlideDetail, type SlideSummary } from "../lib/api";
import { h, isTyping } from "../lib/dom";
import { formatMagnification, imageZoomAt, OBJECTIVES } from "../lib/format";
import { addressBar, viewerUrl, type Protocol } from "../lib/routes";
import { t } from "../lib/strings";
import { currentView, imageZoom, zoomImageTo } from "../lib/transform";
import { TOGGLE_OVERLAYS_EVENT } from "./overlays";
import { rotationSlider } from "./rotation";

/** Slides asked for at a time when a slide without case looks for its neighbours, and how
 * many such pages at most (past them, n and p do nothing). */
const NEIGHBOUR_PAGE = 200;
const NEIGHBOUR_PAGES = 5;

/** Zoom factor of one +/- key press; arrow keys pan by this fraction of the view. */
const KEY_ZOOM = 1.4;
const KEY_PAN = 0.2;

export interface Navigation {
  /** Writes the current view into the address bar now. */
  updateUrl(): void;
  zoomToMagnification(mag: number): void;
  rotateBy(degrees: number): void;
  toggleFlip(): void;
  toggleHelp(show?: boolean): void;
  /** Opens the next (+1) or previous (-1) viewable slide of the slide's case (in block
   * order), or of the worklist's slides for a slide without case, if there is one. */
  goToSlide(step: 1 | -1): Promise<void>;
}

export function setUpNavigation(
  viewer: OpenSeadragon.Viewer,
  slide: SlideDetail,
  protocol: () => Protocol,
  main: HTMLElement,
): Navigation {
  const viewport = viewer.viewport;

  // ---- the address bar --------------------------------------------------------------------
  const address = addressBar(() => {
    const view = currentView(viewer);
    return view && viewerUrl(slide.id, protocol(), view);
  });
  const updateUrl = address.now;
  for (const event of ["viewport-change", "rotate", "flip", "animation-finish"] as const) {
    viewer.addHandler(event, address.schedule);
  }

  // ---- actions ----------------------------------------------------------------------------
  const rotation = rotationSlider("rotation", t.viewer.rotation, (degrees) =>
    viewport.setRotation(degrees, true),
  );
  viewer.addHandler("rotate", () => rotation.show(viewport.getRotation()));

  const flip = button(t.viewer.flip, "⇋", () => navigation.toggleFlip(), "f");
  const showFlip = (): void => flip.setAttribute("aria-pressed", String(viewport.getFlip()));
  viewer.addHandler("flip", showFlip);
  showFlip();

  const copied = h("span", { class: "copied", role: "status" });
  const copy = button(t.viewer.copyLinkHint, t.viewer.copyLink, () => {
    updateUrl();
    void copyText(window.location.href).then((ok) => {
      copied.textContent = ok ? t.viewer.linkCopied : "";
      window.setTimeout(() => (copied.textContent = ""), 2000);
    });
  });

  const help = helpOverlay(() => navigation.toggleHelp(false));
  main.append(help);

  // The neighbours, asked for once per case (the header's form may move the slide).
  let neighbours: { caseId: string | null; ids: Promise<string[]> } | null = null;
  const navigation: Navigation = {
    updateUrl,
    zoomToMagnification(mag) {
      if (slide.mpp !== null) zoomImageTo(viewer, imageZoomAt(mag, slide.mpp));
    },
    rotateBy(degrees) {
      // From the target angle, unnormalised: a quick r r r animates the short way round.
      viewport.setRotation(viewport.getRotation() + degrees);
    },
    toggleFlip() {
      viewport.toggleFlip();
    },
    toggleHelp(show = help.hidden) {
      help.hidden = !show;
      if (show) help.querySelector("button")?.focus();
    },
    async goToSlide(step) {
      const caseId = slide.case_id ?? null;
      if (neighbours?.caseId !== caseId) neighbours = { caseId, ids: neighbourIds(slide) };
      let ids: string[];
      try {
        ids = await neighbours.ids;
      } catch {
        neighbours = null; // try again on the next key press
        return;
      }
      const next = ids[ids.indexOf(slide.id) + step];
      if (ids.includes(slide.id) && next !== undefined) window.location.assign(viewerUrl(next, protocol()));
    },
  };

  // ---- the toolbar (an OpenSeadragon control, so it stays in full-page mode) --------------
  const magnifications =
    slide.mpp === null
      ? null
      : h(
          "div",
          { class: "group magnifications", role: "group", "aria-label": t.viewer.magnifications },
          ...OBJECTIVES.map((mag, i) => {
            const label = formatMagnification(mag);
            const b = button(t.viewer.magnifyTo(label), label, () => navigation.zoomToMagnification(mag));
            b.dataset.magnification = String(mag);
            b.setAttribute("aria-keyshortcuts", String(i + 1));
            return b;
          }),
        );
  // The button of the magnification on screen, if any, shows pressed.
  const showMagnification = (): void => {
    const zoom = imageZoom(viewer, false); // where the zoom goes: pressed at once, not at the end
    if (!magnifications || slide.mpp === null || zoom === null) return;
    for (const b of magnifications.querySelectorAll("button")) {
      const target = imageZoomAt(Number(b.dataset.magnification), slide.mpp);
      b.setAttribute("aria-pressed", String(Math.abs(zoom / target - 1) < 0.01));
    }
  };
  viewer.addHandler("zoom", showMagnification);
  viewer.addHandler("open", showMagnification);
  const toolbar = h(
    "div",
    { class: "view-toolbar", role: "toolbar", "aria-label": t.viewer.toolbar },
    magnifications ?? false,
    h(
      "div",
      { class: "group" },
      button(t.viewer.rotateLeft, "⟲", () => navigation.rotateBy(-90), "R"),
      rotation.slider,
      rotation.readout,
      button(t.viewer.rotateRight, "⟳", () => navigation.rotateBy(90), "r"),
      flip,
    ),
    h(
      "div",
      { class: "group" },
      copy,
      copied,
      button(t.viewer.help, "?", () => navigation.toggleHelp(), "?"),
    ),
  );
  // OpenSeadragon sizes the element it docks to 100% of its wrapper: style a child instead.
  viewer.addControl(h("div", {}, toolbar), {
    anchor: OpenSeadragon.ControlAnchor.BOTTOM_RIGHT,
    autoFade: false,
  });

  // ---- keys -------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    // A modal dialog (Share…) has the keyboard: the slide behind it stays put.
    if (document.querySelector("dialog[open]")) return;
    // The digit keys by position: on a French (AZERTY) keyboard "1" unshifted is "&".
    const key = /^(Digit|Numpad)[1-9]$/.test(event.code) ? event.code.slice(-1) : event.key;
    if (!handleKey(key, viewer, navigation)) return;
    event.preventDefault();
  });

  return navigation;
}

/** The viewable slides `slide` is one of, in order: its case's (block order), else the
 * worklist's slides (oldest first), as far as needed to find it and the one after it. */
async function neighbourIds(slide: SlideDetail): Promise<string[]> {
  const viewable = (slides: SlideSummary[]): string[] => slides.filter((s) => s.viewable).map((s) => s.id);
  if (slide.case_id) {
    try {
      return viewable((await getCase(slide.case_id)).slides);
    } catch {
      // A case not shared whole (one slide of it is): its slides are not all to be seen.
    }
  }
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < NEIGHBOUR_PAGES; i++) {
    const page = await listSlides({ limit: NEIGHBOUR_PAGE, cursor });
    ids.push(...viewable(page.items));
    const at = ids.indexOf(slide.id);
    if (page.next_cursor === null || (at >= 0 && at < ids.length - 1)) break;
    cursor = page.next_cursor;
  }
  return ids;
}

/** Returns false for a key that is not a shortcut. */
function handleKey(key: string, viewer: OpenSeadragon.Viewer, navigation: Navigation): boolean {
  const viewport = viewer.viewport;
  const pan = (dx: number, dy: number): void => {
    const size = viewport.getContainerSize();
    viewport.panBy(viewport.deltaPointsFromPixels(new OpenSeadragon.Point(dx * size.x, dy * size.y)));
    viewport.applyConstraints(); // as a drag would: not off the slide
  };
  const zoom = (factor: number): void => {
    viewport.zoomBy(factor);
    viewport.applyConstraints(); // as the mouse wheel would: not past the zoom limits
  };
  const digit = Number(key);
  if (Number.isInteger(digit) && digit >= 1 && digit <= OBJECTIVES.length) {
    navigation.zoomToMagnification(OBJECTIVES[digit - 1] ?? 1);
    return true;
  }
  switch (key) {
    case "+":
    case "=":
      zoom(KEY_ZOOM);
      return true;
    case "-":
    case "_":
      zoom(1 / KEY_ZOOM);
      return true;
    case "ArrowLeft":
      pan(-KEY_PAN, 0);
      return true;
    case "ArrowRight":
      pan(KEY_PAN, 0);
      return true;
    case "ArrowUp":
      pan(0, -KEY_PAN);
      return true;
    case "ArrowDown":
      pan(0, KEY_PAN);
      return true;
    case "r":
      navigation.rotateBy(90);
      return true;
    case "R":
      navigation.rotateBy(-90);
      return true;
    case "f":
    case "F":
      navigation.toggleFlip();
      return true;
    case "h":
    case "H":
      viewport.goHome();
      return true;
    case "n":
      void navigation.goToSlide(1);
      return true;
    case "p":
      void navigation.goToSlide(-1);
      return true;
    case "?":
      navigation.toggleHelp();
      return true;
    case "o":
    case "O":
      // overlays.ts listens: navigation knows keys, not layers.
      document.dispatchEvent(new Event(TOGGLE_OVERLAYS_EVENT));
      return true;
    case "Escape":
      navigation.toggleHelp(false);
      return true;
    default:
      return false;
  }
}

function button(title: string, text: string, onClick: () => void, shortcut?: string): HTMLButtonElement {
  const b = h("button", { type: "button", title, "aria-keyshortcuts": shortcut }, text);
  if (text !== title) b.setAttribute("aria-label", title);
  b.addEventListener("click", onClick);
  return b;
}

function helpOverlay(close: () => void): HTMLElement {
  const closeButton = h("button", { type: "button", class: "close" }, t.viewer.close);
  closeButton.addEventListener("click", close);
  const overlay = h(
    "div",
    { class: "help-overlay", hidden: true },
    h(
      "section",
      { class: "help", role: "dialog", "aria-label": t.viewer.help },
      h("h2", {}, t.viewer.help),
      h(
        "dl",
        {},
        ...t.viewer.shortcuts.flatMap(([keys, what]) => [h("dt", {}, h("kbd", {}, keys)), h("dd", {}, what)]),
      ),
      closeButton,
    ),
  );
  overlay.addEventListener("click", (event) => {
    if (event.target === overlay) close();
  });
  return overlay;
}

/** The clipboard API where the page may use it (https, localhost), else the old way. */
async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { readonly: true, class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
