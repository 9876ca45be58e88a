/** The slide page: a full-window OpenSeadragon viewer on the hub's DeepZoom or IIIF tiles. */

import OpenSeadragon from "openseadragon";
import { attachAnnotations, type Annotations } from "./annotate";
import { ApiError, centreNames, checkSession, getSlide, type SlideDetail } from "./api";
import { associatedImagesButton } from "./associated";
import { h, mount } from "./dom";
import { formatDimensions, formatVendor, scanResolution } from "./format";
import { appHeader, deidentifiedNotice } from "./header";
import { applyView, currentView, setUpNavigation, type Navigation } from "./navigation";
import { attachOverlays, type Overlays } from "./overlays";
import { compareWithUrl, viewerUrl, worklistUrl, type Protocol, type ViewState } from "./routes";
import { ScaleControl } from "./scale";
import { shareButton } from "./share";
import { t } from "./strings";

/** What the page exposes on `window.iain`: for tests, and for a developer's console. */
export interface ViewerHandle {
  readonly slide: SlideDetail;
  readonly viewer: OpenSeadragon.Viewer;
  readonly scale: ScaleControl;
  readonly navigation: Navigation;
  /** The layers panel: heatmaps and detections over the slide; null on a de-identified slide. */
  readonly overlays: Overlays | null;
  /** Null on a de-identified slide (the hub keeps its annotations to its own centre). */
  readonly annotations: Annotations | null;
  protocol: Protocol;
  /** True once every tile needed for the current view, at the best resolution, is drawn. */
  fullyLoaded(): boolean;
  setProtocol(protocol: Protocol): void;
}

declare global {
  interface Window {
    iain?: ViewerHandle;
  }
}

export type PageState = "loading" | "ready" | "error";

/**
 * OpenSeadragon's 2D-canvas drawer rather than its WebGL default: on machines without a GPU
 * (hospital virtual desktops, headless test browsers) WebGL falls back to software rendering
 * and a view took ~6 s to draw instead of ~1 s. Revisit when overlays need WebGL.
 */
const DRAWER = "canvas";

/** `view`: where to open (a shared link's), else the whole slide. */
export async function showViewer(
  root: HTMLElement,
  slideId: string,
  protocol: Protocol,
  view: ViewState | null,
): Promise<void> {
  document.title = `${t.viewer.loading} · ${t.app.name}`;
  const setState = (state: PageState): void => {
    root.dataset.state = state;
  };
  setState("loading");
  const back = h("a", { class: "back", href: worklistUrl() }, `← ${t.viewer.back}`);
  const notice = h("p", { class: "notice", role: "status" }, t.viewer.loading);
  mount(
    root,
    h("div", { class: "page viewer-page" }, appHeader(back), h("main", { class: "viewer-main" }, notice)),
  );

  let slide: SlideDetail;
  let centres: Map<string, string>;
  try {
    [slide, centres] = await Promise.all([getSlide(slideId), centreNames()]);
  } catch (error) {
    setState("error");
    showError(root, back, error, slideId);
    return;
  }

  document.title = `${slide.name} · ${t.app.name}`;
  // Another centre's slide: its annotation and overlay routes answer 404 by design.
  const deidentified = slide.view === "deidentified";
  const switcher = protocolSwitch(protocol, (next) => handle.setProtocol(next));
  const osd = h("div", { class: "osd", id: "osd" });
  const message = h("p", { class: "osd-message", role: "alert", hidden: true });
  const main = h("main", { class: "viewer-main" }, osd, message);
  mount(
    root,
    h(
      "div",
      { class: "page viewer-page" },
      appHeader(
        back,
        slideTitle(slide, centres.get(slide.centre) ?? slide.centre),
        ...(deidentified ? [deidentifiedNotice()] : []),
        associatedImagesButton(slide, main),
        // Only a full view can be shared: a de-identified one is another centre's slide.
        ...(deidentified ? [] : [shareButton(slide, centres)]),
        h(
          "a",
          { class: "compare-link", href: compareWithUrl(slide.id), title: t.compare.fromViewerHint },
          t.compare.fromViewer,
        ),
        switcher.element,
      ),
      main,
    ),
  );

  const { viewer, scale } = createSlideViewer(osd, slide, protocol);
  const navigation = setUpNavigation(viewer, slide, () => handle.protocol, main);
  const overlays = deidentified ? null : attachOverlays(viewer, slide, main);
  const annotations = deidentified ? null : attachAnnotations(viewer, slide);

  let restoreBounds: OpenSeadragon.Rect | null = null;
  let openAt = view;
  viewer.addHandler("open", () => {
    message.hidden = true;
    if (restoreBounds) viewer.viewport.fitBounds(restoreBounds, true);
    if (openAt) applyView(viewer, openAt, true);
    restoreBounds = null;
    openAt = null;
    setState("ready");
  });
  viewer.addHandler("open-failed", (event) => {
    message.textContent = t.viewer.imageFailed(event.message);
    message.hidden = false;
    setState("error");
  });

  const handle: ViewerHandle = {
    slide,
    viewer,
    scale,
    navigation,
    overlays,
    annotations,
    protocol,
    fullyLoaded: () => viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0).getFullyLoaded(),
    setProtocol(next) {
      if (next === handle.protocol) return;
      handle.protocol = next;
      switcher.select(next);
      history.replaceState(null, "", viewerUrl(slide.id, next, currentView(viewer)));
      restoreBounds = viewer.world.getItemCount() > 0 ? viewer.viewport.getBounds(true) : null;
      setState("loading");
      viewer.open({ tileSource: tileSource(slide, next) });
    },
  };
  window.iain = handle;
}

/** What a page may change about a slide viewer; the defaults are the single-slide page's. */
export interface SlideViewerOptions {
  /** The minimap in the top-right corner. */
  showNavigator?: boolean;
  /** Zoom and home buttons; the compare page hides them in its small viewports. */
  showNavigationControl?: boolean;
}

/**
 * An OpenSeadragon viewer on `slide` in `element`, with the scale bar: the one place its
 * options live, shared by the slide page and the compare page.
 */
export function createSlideViewer(
  element: HTMLElement,
  slide: SlideDetail,
  protocol: Protocol,
  options: SlideViewerOptions = {},
): { viewer: OpenSeadragon.Viewer; scale: ScaleControl } {
  for (const [name, text] of Object.entries(t.osd)) OpenSeadragon.setString(`Tooltips.${name}`, text);
  const viewer = OpenSeadragon({
    element,
    prefixUrl: __OSD_IMAGES_URL__,
    tileSources: tileSource(slide, protocol),
    drawer: DRAWER,
    showNavigator: options.showNavigator ?? true,
    showNavigationControl: options.showNavigationControl ?? true,
    navigatorPosition: "TOP_RIGHT",
    navigatorAutoFade: false,
    navigatorSizeRatio: 0.18,
    navigatorBackground: "#1b1c1f",
    navigatorBorderColor: "#555",
    navigatorOpacity: 1, // not see-through: the slide behind it looked like part of the minimap
    showRotationControl: false, // the toolbar has rotation and flip
    keyboardNavEnabled: false, // navigation.ts handles keys on the whole page
    autoHideControls: false,
    visibilityRatio: 0.5,
    minZoomImageRatio: 0.8,
    maxZoomPixelRatio: 2, // up to 2× past the scan's own resolution
    zoomPerScroll: 1.4,
    // A zoom is sharp only once its animation ends: the tiles of the destination are
    // fetched during it (loadDestinationTilesOnAnimation) and were in by ~0.3 s, so a 0.6 s
    // animation was most of the wait (docs/benchmarks.md). Still eased, just shorter.
    animationTime: 0.3,
    // OpenSeadragon starts one tile load per frame by default: a 1920×1080 view needs ~60
    // tiles, i.e. a full second at 60 fps, whatever the server's speed. 64 (all in the first
    // frame) was no faster: the browser's 6 connections are the queue, and an animated zoom
    // then also fetched ~20 tiles of the in-between views.
    maxTilesPerFrame: 16,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
  });
  // A tile refused because the session ended elsewhere (an admin, another tab): back to login.
  viewer.addHandler("tile-load-failed", checkSession);
  const scale = new ScaleControl(viewer, slide.mpp);
  return { viewer, scale };
}

export function tileSource(slide: SlideDetail, protocol: Protocol): string {
  return protocol === "iiif" ? slide.iiif_url : slide.dzi_url;
}

function slideTitle(slide: SlideDetail, centreName: string): HTMLElement {
  const facts = [centreName, formatVendor(slide.vendor), formatDimensions(slide.width, slide.height)];
  const scan = scanResolution(slide);
  if (scan) facts.push(scan);
  return h(
    "div",
    { class: "slide-title" },
    h("h1", { class: "slide-name", title: slide.name }, slide.name),
    h(
      "p",
      { class: "slide-facts" },
      h("span", { class: "slide-centre" }, centreName),
      ...facts.slice(1).map((f) => ` · ${f}`),
    ),
  );
}

function protocolSwitch(
  initial: Protocol,
  onChange: (protocol: Protocol) => void,
): { element: HTMLElement; select(protocol: Protocol): void } {
  const buttons = (Object.keys(t.viewer.protocols) as Protocol[]).map((protocol) => {
    const button = h("button", { type: "button", "data-protocol": protocol }, t.viewer.protocols[protocol]);
    button.addEventListener("click", () => onChange(protocol));
    return button;
  });
  const select = (protocol: Protocol): void => {
    for (const button of buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.protocol === protocol));
    }
  };
  select(initial);
  const element = h(
    "div",
    {
      class: "protocol-switch",
      role: "group",
      "aria-label": t.viewer.protocol,
      title: t.viewer.protocolHint,
    },
    h("span", { class: "label" }, t.viewer.protocol),
    ...buttons,
  );
  return { element, select };
}

function showError(root: HTMLElement, back: HTMLElement, error: unknown, slideId: string): void {
  const notFound = error instanceof ApiError && error.notFound;
  const why = error instanceof ApiError ? error.detail : String(error);
  document.title = `${notFound ? t.viewer.notFoundTitle : t.viewer.loadFailed(why)} · ${t.app.name}`;
  mount(
    root,
    h(
      "div",
      { class: "page viewer-page" },
      appHeader(back),
      h(
        "main",
        { class: "viewer-main" },
        h(
          "section",
          { class: "error-panel", role: "alert" },
          h("h1", {}, notFound ? t.viewer.notFoundTitle : t.viewer.loadFailed(why)),
          notFound && h("p", {}, t.viewer.notFound(slideId)),
          h("p", {}, h("a", { href: worklistUrl() }, t.viewer.backToWorklist)),
        ),
      ),
    ),
  );
}
