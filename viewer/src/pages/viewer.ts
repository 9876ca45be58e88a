/** The slide page: a full-window OpenSeadragon viewer on the hub's DeepZoom or IIIF tiles. */

import type OpenSeadragon from "openseadragon";
import { centreNames, getSlide, type SlideDetail } from "../lib/api";
import { h, mount, setTitle } from "../lib/dom";
import { ApiError, errorText } from "../lib/errors";
import { formatDimensions, formatVendor, scanResolution } from "../lib/format";
import { compareWithUrl, viewerUrl, worklistUrl, type Protocol, type ViewState } from "../lib/routes";
import { t } from "../lib/strings";
import { applyView, currentView, fullyLoaded } from "../lib/transform";
import { createAiPanel, type AiPanel } from "../panels/ai";
import { attachAnnotations, type Annotations } from "../panels/annotate";
import { associatedImagesButton } from "../panels/associated";
import { appHeader, backLink, deidentifiedNotice } from "../panels/header";
import { setUpNavigation, type Navigation } from "../panels/navigation";
import { attachOverlays, type Overlays } from "../panels/overlays";
import { placementLine } from "../panels/placement";
import type { ScaleControl } from "../panels/scale";
import { shareButton } from "../panels/share";
import { createSlideViewer, slideViewerElements, tileSource } from "../panels/slide-viewer";

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
  /** AI assistance (models, jobs, results); null on a de-identified slide. */
  readonly ai: AiPanel | null;
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

/** `view`: where to open (a shared link's), else the whole slide. */
export async function showViewer(
  root: HTMLElement,
  slideId: string,
  protocol: Protocol,
  view: ViewState | null,
): Promise<void> {
  setTitle(t.viewer.loading);
  const setState = (state: PageState): void => {
    root.dataset.state = state;
  };
  setState("loading");
  const back = backLink();
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

  setTitle(slide.name);
  // Another centre's slide: its annotation and overlay routes answer 404 by design.
  const deidentified = slide.view === "deidentified";
  const switcher = protocolSwitch(protocol, (next) => handle.setProtocol(next));
  const elements = slideViewerElements("osd");
  const main = h("main", { class: "viewer-main" }, elements.osd, elements.message);
  // Results of models are layers of the full view only, as the annotations are.
  const ai = deidentified ? null : createAiPanel(slide, main);
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
        ...(ai ? [ai.button] : []),
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

  const { viewer, scale } = createSlideViewer(elements, slide, protocol);
  const navigation = setUpNavigation(viewer, slide, () => handle.protocol, main);
  const overlays = deidentified ? null : attachOverlays(viewer, slide, main);
  const annotations = deidentified ? null : attachAnnotations(viewer, slide);
  if (ai && overlays && annotations) ai.connect({ overlays, annotations });

  let restoreBounds: OpenSeadragon.Rect | null = null;
  let openAt = view;
  viewer.addHandler("open", () => {
    if (restoreBounds) viewer.viewport.fitBounds(restoreBounds, true);
    if (openAt) applyView(viewer, openAt, true);
    restoreBounds = null;
    openAt = null;
    setState("ready");
  });
  viewer.addHandler("open-failed", () => setState("error"));

  const handle: ViewerHandle = {
    slide,
    viewer,
    scale,
    navigation,
    overlays,
    annotations,
    ai,
    protocol,
    fullyLoaded: () => fullyLoaded(viewer),
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
      // First, where the rest may be cut short: its case, block and stain (and, for those
      // who may, the form that sets them).
      placementLine(slide),
      h(
        "span",
        { class: "slide-facts-rest" },
        h("span", { class: "slide-centre" }, centreName),
        ...facts.slice(1).map((f) => ` · ${f}`),
      ),
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
  const title = notFound ? t.viewer.notFoundTitle : t.viewer.loadFailed(errorText(error));
  setTitle(title);
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
          h("h1", {}, title),
          notFound && h("p", {}, t.viewer.notFound(slideId)),
          h("p", {}, h("a", { href: worklistUrl() }, t.viewer.backToWorklist)),
        ),
      ),
    ),
  );
}
