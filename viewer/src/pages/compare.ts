/**
 * The compare page: two to four slides side by side (e.g. H&E and IHC of one block), their
 * views locked together in physical units or free. While unlocked the user moves one slide
 * alone; locking again keeps that offset.
 */

import type OpenSeadragon from "openseadragon";
import { getCase, getSlide, listSlides, type SlideDetail, type SlideSummary } from "../lib/api";
import { h, mount, setTitle } from "../lib/dom";
import { errorText } from "../lib/errors";
import { formatBlock } from "../lib/format";
import {
  addressBar,
  COMPARE_MAX,
  COMPARE_MIN,
  compareUrl,
  viewerUrl,
  worklistUrl,
  type CompareState,
  type ViewState,
} from "../lib/routes";
import { t } from "../lib/strings";
import { applyView, currentView, fullyLoaded } from "../lib/transform";
import { appHeader, backLink } from "../panels/header";
import { rotationSlider } from "../panels/rotation";
import { createSlideViewer, slideViewerElements, type SlideViewerElements } from "../panels/slide-viewer";

/**
 * A view in units every slide shares (a ViewState in those units rather than level-0 pixels):
 * x, y the centre; zoom in screen (CSS) pixels per unit; rotation in degrees clockwise. The
 * unit is a micrometre when every slide has a pixel size, else each slide's own width (slides
 * then line up as if they were the same size).
 */
export type SharedView = ViewState;

export type CompareUnit = "µm" | "width";

/** What the page exposes on `window.iain.compare`: for tests and a developer's console. */
export interface CompareHandle {
  readonly slides: SlideDetail[];
  readonly viewers: OpenSeadragon.Viewer[];
  readonly unit: CompareUnit;
  readonly locked: boolean;
  /** The viewport the others follow: the one the user last touched. */
  readonly active: number;
  setLocked(locked: boolean): void;
  setActive(index: number): void;
  /** Lines every slide up on the active one: same centre and rotation, offsets dropped. */
  align(): void;
  /** Each viewport's view in shared units; null before its image is open. */
  sharedViews(): (SharedView | null)[];
  /** True once every viewport has drawn all its tiles at the best resolution. */
  fullyLoaded(): boolean;
}

export async function showCompare(root: HTMLElement, state: CompareState): Promise<void> {
  setTitle(t.compare.loading);
  root.dataset.state = "loading";
  const back = backLink();
  const notice = h("p", { class: "notice", role: "status" }, t.compare.loading);
  const page = (...parts: (Node | null)[]): HTMLElement =>
    h("div", { class: "page viewer-page compare-page" }, ...parts);
  mount(root, page(appHeader(back), h("main", { class: "viewer-main" }, notice)));

  if (state.slideIds.length < COMPARE_MIN) {
    failed(root, notice, t.compare.tooFew);
    return;
  }
  let slides: SlideDetail[];
  try {
    slides = await Promise.all(state.slideIds.map((id) => getSlide(id)));
  } catch (error) {
    failed(root, notice, t.compare.failed(errorText(error)));
    return;
  }

  const unit: CompareUnit = slides.every((s) => s.mpp !== null && s.mpp > 0) ? "µm" : "width";
  // Units per level-0 pixel of each slide.
  const scale = slides.map((s) => (unit === "µm" ? (s.mpp ?? 1) : 1 / s.width));

  setTitle(t.compare.title(slides.length));
  const lock = h(
    "button",
    {
      type: "button",
      class: "compare-lock",
      title: t.compare.lockHint,
      "aria-pressed": String(state.locked),
    },
    t.compare.lock,
  );
  const align = h(
    "button",
    { type: "button", class: "compare-align", title: t.compare.alignHint },
    t.compare.align,
  );
  // The slider turns the active slide; while unlocked, that sets a rotation offset.
  const rotation = rotationSlider("compare-rotation", t.compare.rotationHint, (degrees) =>
    viewers[active]!.viewport.setRotation(degrees, true),
  );
  const add = addSlideMenu(slides, (id) => location.assign(withSlide(id)));
  const grid = h("main", { class: `viewer-main compare-grid compare-${slides.length}` });
  mount(
    root,
    page(
      appHeader(
        back,
        h("h1", { class: "page-title" }, t.compare.title(slides.length)),
        h("div", { class: "compare-actions" }, rotation.slider, rotation.readout, lock, align, add),
      ),
      unit === "width" ? h("p", { class: "compare-warning", role: "note" }, t.compare.relative) : null,
      grid,
    ),
  );

  const cells = slides.map((slide, index) => compareCell(slide, index, slides.length));
  grid.append(...cells.map((c) => c.element));
  const viewers = cells.map(
    (cell, index) =>
      createSlideViewer(cell, slides[index]!, "dzi", { showNavigator: slides.length === 2 }).viewer,
  );

  const toShared = (i: number): SharedView | null => {
    const view = currentView(viewers[i]!);
    const u = scale[i]!;
    return (
      view && { x: view.x * u, y: view.y * u, zoom: view.zoom / u, rotation: view.rotation, flip: view.flip }
    );
  };
  const fromShared = (i: number, v: SharedView): ViewState => {
    const u = scale[i]!;
    return { x: v.x / u, y: v.y / u, zoom: v.zoom * u, rotation: v.rotation, flip: v.flip };
  };

  // ---- the lock ---------------------------------------------------------------------------
  // When locking (or when another viewport becomes the active one) every view is noted; from
  // then on a follower keeps, relative to the active viewport, the offset it had then: the
  // same tissue stays under the same point of every viewport.
  let locked = state.locked;
  let active = 0;
  let anchors: (SharedView | null)[] = [];
  let following = false;
  const noteAnchors = (): void => {
    anchors = viewers.map((_, i) => toShared(i));
  };
  const follow = (): void => {
    const lead = toShared(active);
    const from = anchors[active];
    if (!locked || following || !lead || !from) return;
    following = true;
    for (const [j, viewer] of viewers.entries()) {
      const to = anchors[j];
      if (j === active || !to) continue;
      // Screen = R(rotation)·(p − centre), equal in both: the leader's move, turned by the
      // rotation between the two at anchoring, is the follower's move.
      const turn = ((from.rotation - to.rotation) * Math.PI) / 180;
      const [dx, dy] = [lead.x - from.x, lead.y - from.y];
      const view: SharedView = {
        x: to.x + Math.cos(turn) * dx - Math.sin(turn) * dy,
        y: to.y + Math.sin(turn) * dx + Math.cos(turn) * dy,
        zoom: lead.zoom,
        rotation: lead.rotation + (to.rotation - from.rotation),
        flip: lead.flip !== (from.flip !== to.flip),
      };
      applyView(viewer, fromShared(j, view), true);
    }
    following = false;
  };

  const showRotation = (): void => rotation.show(viewers[active]!.viewport.getRotation());

  const setActive = (index: number): void => {
    if (index === active || !viewers[index]) return;
    active = index;
    cells.forEach((cell, i) => cell.element.classList.toggle("active", i === index));
    noteAnchors();
    showRotation();
  };
  const setLocked = (next: boolean): void => {
    locked = next;
    lock.setAttribute("aria-pressed", String(next));
    lock.textContent = next ? t.compare.lock : t.compare.unlocked;
    if (next) {
      noteAnchors();
      follow(); // one zoom for all from now on
    }
    scheduleUrlUpdate();
  };
  const alignAll = (): void => {
    const lead = toShared(active);
    if (!lead) return;
    anchors = viewers.map(() => lead);
    const wasLocked = locked;
    locked = true;
    follow();
    locked = wasLocked;
    noteAnchors();
    scheduleUrlUpdate();
  };
  lock.addEventListener("click", () => setLocked(!locked));
  align.addEventListener("click", alignAll);
  cells.forEach((cell, index) => {
    // Capture phase: the viewport becomes active before OpenSeadragon moves it.
    for (const type of ["pointerdown", "wheel", "focusin"] as const) {
      cell.element.addEventListener(type, () => setActive(index), { capture: true, passive: true });
    }
  });

  // ---- the address bar --------------------------------------------------------------------
  /** The link to the slides at `indices`, with their views if every one is open. */
  const link = (indices: number[]): string => {
    const views = indices.map((i) => currentView(viewers[i]!));
    const complete = views.filter((v): v is ViewState => v !== null);
    return compareUrl({
      slideIds: indices.map((i) => slides[i]!.id),
      views: complete.length === indices.length ? complete : null,
      locked,
    });
  };
  const address = addressBar(() => link(slides.map((_, i) => i)));
  function scheduleUrlUpdate(): void {
    address.schedule();
  }
  const withSlide = (id: string): string => {
    const ids = [...slides.map((s) => s.id), id];
    return compareUrl({ slideIds: ids, views: null, locked });
  };

  viewers.forEach((viewer, index) => {
    viewer.addHandler("viewport-change", () => {
      if (index === active) follow();
      scheduleUrlUpdate();
    });
    viewer.addHandler("rotate", () => {
      if (index === active) showRotation();
    });
    cells[index]!.openAlone.addEventListener("click", () => {
      cells[index]!.openAlone.href = viewerUrl(slides[index]!.id, "dzi", currentView(viewer));
    });
    if (cells[index]!.remove) {
      cells[index]!.remove.addEventListener("click", () => {
        location.assign(link(slides.map((_, i) => i).filter((i) => i !== index)));
      });
    }
  });

  // ---- opening ----------------------------------------------------------------------------
  const opened = viewers.map(
    (viewer) =>
      new Promise<boolean>((resolve) => {
        viewer.addOnceHandler("open", () => resolve(true));
        viewer.addOnceHandler("open-failed", () => resolve(false));
      }),
  );
  const results = await Promise.all(opened);
  if (state.views) {
    viewers.forEach((viewer, i) => applyView(viewer, state.views![i]!, true));
    noteAnchors();
  } else {
    // No view in the link: the first slide whole, the others on it without offset.
    noteAnchors();
    const lead = toShared(0);
    if (lead && locked) {
      anchors = viewers.map(() => lead);
      follow();
      noteAnchors();
    }
  }
  cells[0]!.element.classList.add("active");
  showRotation();
  setLocked(locked);
  root.dataset.state = results.every(Boolean) ? "ready" : "error";

  const handle: CompareHandle = {
    slides,
    viewers,
    unit,
    get locked() {
      return locked;
    },
    get active() {
      return active;
    },
    setLocked,
    setActive,
    align: alignAll,
    sharedViews: () => viewers.map((_, i) => toShared(i)),
    fullyLoaded: () => viewers.every(fullyLoaded),
  };
  // `window.iain` is typed as the slide page's handle; this page puts its own there.
  Object.assign(window, { iain: { compare: handle } });
}

interface Cell extends SlideViewerElements {
  element: HTMLElement;
  openAlone: HTMLAnchorElement;
  remove: HTMLButtonElement | null;
}

function compareCell(slide: SlideDetail, index: number, count: number): Cell {
  const { osd, message } = slideViewerElements(`osd-${index}`);
  const openAlone = h(
    "a",
    { class: "compare-open", href: viewerUrl(slide.id), title: t.compare.openAloneHint },
    t.compare.openAlone,
  );
  const remove =
    count > COMPARE_MIN
      ? h(
          "button",
          {
            type: "button",
            class: "compare-remove",
            title: t.compare.remove(slide.name),
            "aria-label": t.compare.remove(slide.name),
          },
          "×",
        )
      : null;
  const label = h(
    "div",
    { class: "compare-label" },
    h("span", { class: "compare-name", title: slide.name }, slide.name),
    openAlone,
    remove,
  );
  const element = h(
    "section",
    { class: "compare-cell", "data-slide-id": slide.id, "aria-label": slide.name },
    osd,
    label,
    message,
  );
  return { element, osd, message, openAlone, remove };
}

/** How many of the newest slides "Add a slide…" offers besides the cases' own. */
const ADD_MENU_SLIDES = 100;

/** "Add a slide…": the viewable slides not shown yet, listed when the page opens: the other
 * slides of the shown slides' cases first (a block's other stains), then the newest slides. */
function addSlideMenu(shown: SlideDetail[], onPick: (id: string) => void): HTMLElement {
  const ids = shown.map((s) => s.id);
  const select = h(
    "select",
    { class: "compare-add", "aria-label": t.compare.add, hidden: shown.length >= COMPARE_MAX },
    h("option", { value: "" }, t.compare.add),
  );
  if (shown.length < COMPARE_MAX) void fillAddMenu(select, shown, ids);
  select.addEventListener("change", () => {
    if (select.value) onPick(select.value);
  });
  return select;
}

async function fillAddMenu(select: HTMLSelectElement, shown: SlideDetail[], ids: string[]): Promise<void> {
  const offered = new Set(ids);
  const options = (slides: SlideSummary[]): HTMLOptionElement[] =>
    slides
      .filter((slide) => slide.viewable && !offered.has(slide.id))
      .map((slide) => {
        offered.add(slide.id);
        const about = [slide.stain, formatBlock(slide)].filter(Boolean).join(" · ");
        return h("option", { value: slide.id }, about ? `${slide.name} (${about})` : slide.name);
      });
  const caseIds = [...new Set(shown.map((s) => s.case_id).filter((id): id is string => Boolean(id)))];
  const cases = await Promise.allSettled(caseIds.map((id) => getCase(id)));
  const groups: HTMLElement[] = [];
  for (const found of cases) {
    if (found.status !== "fulfilled") continue; // a case not shared whole: its slides are not ours to list
    const items = options(found.value.slides);
    if (items.length > 0)
      groups.push(h("optgroup", { label: t.placement.caseOf(found.value.reference) }, ...items));
  }
  try {
    const recent = options((await listSlides({ limit: ADD_MENU_SLIDES, order: "desc" })).items);
    if (groups.length > 0 && recent.length > 0)
      groups.push(h("optgroup", { label: t.compare.otherSlides }, ...recent));
    else groups.push(...recent);
  } catch {
    if (groups.length === 0) select.hidden = true; // the page works without it
  }
  select.append(...groups);
}

function failed(root: HTMLElement, notice: HTMLElement, text: string): void {
  root.dataset.state = "error";
  setTitle(text);
  notice.textContent = text;
  notice.classList.add("error");
  notice.append(" ", h("a", { href: worklistUrl() }, t.viewer.backToWorklist));
}
