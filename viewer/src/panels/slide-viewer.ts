/**
 * An OpenSeadragon viewer on a slide, with its scale bar and the message shown when the
 * image cannot be opened: the one place its options live, shared by the slide page and the
 * compare page.
 */

import OpenSeadragon from "openseadragon";
import { checkSession, type SlideDetail } from "../lib/api";
import { h } from "../lib/dom";
import type { Protocol } from "../lib/routes";
import { t } from "../lib/strings";
import { ScaleControl } from "./scale";

/**
 * OpenSeadragon's 2D-canvas drawer rather than its WebGL default: on machines without a GPU
 * (hospital virtual desktops, headless test browsers) WebGL falls back to software rendering
 * and a view took ~6 s to draw instead of ~1 s. Revisit when overlays need WebGL.
 */
const DRAWER = "canvas";

/** What a page may change about a slide viewer; the defaults are the single-slide page's. */
export interface SlideViewerOptions {
  /** The minimap in the top-right corner. */
  showNavigator?: boolean;
  /** Zoom and home buttons; the compare page hides them in its small viewports. */
  showNavigationControl?: boolean;
}

/** Where a slide viewer goes (`osd`, id `id`) and its message, for the page to lay out. */
export interface SlideViewerElements {
  readonly osd: HTMLElement;
  /** Shown, with OpenSeadragon's reason, while the image cannot be opened. */
  readonly message: HTMLElement;
}

export function slideViewerElements(id: string): SlideViewerElements {
  return {
    osd: h("div", { class: "osd", id }),
    message: h("p", { class: "osd-message", role: "alert", hidden: true }),
  };
}

/** An OpenSeadragon viewer on `slide` in `elements.osd`, with the scale bar. */
export function createSlideViewer(
  elements: SlideViewerElements,
  slide: SlideDetail,
  protocol: Protocol,
  options: SlideViewerOptions = {},
): { viewer: OpenSeadragon.Viewer; scale: ScaleControl } {
  for (const [name, text] of Object.entries(t.osd)) OpenSeadragon.setString(`Tooltips.${name}`, text);
  const viewer = OpenSeadragon({
    element: elements.osd,
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
    keyboardNavEnabled: false, // panels/navigation.ts handles keys on the whole page
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
    // The level drawn has 0.7 to 1.4 screen pixels per pixel (the one nearest the screen's
    // resolution) instead of 0.5 to 1 (the default, up to 4× the screen's pixels): a 2× zoom
    // step keeps that ratio, so with 0.5 a slide whose home view falls just above a level
    // fetched ~130 tiles at every step (320–410 ms), with 0.7 35–60 on every geometry
    // measured (120–200 ms; docs/benchmarks.md, issue 10). HTTP/2 did not help: the
    // browser's work per tile is the queue, not its 6 connections.
    minPixelRatio: 0.7,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
  });
  // A tile refused because the session ended elsewhere (an admin, another tab): back to login.
  viewer.addHandler("tile-load-failed", checkSession);
  const { message } = elements;
  viewer.addHandler("open", () => {
    message.hidden = true;
  });
  viewer.addHandler("open-failed", (event) => {
    message.textContent = t.viewer.imageFailed(event.message);
    message.hidden = false;
  });
  const scale = new ScaleControl(viewer, slide.mpp);
  return { viewer, scale };
}

export function tileSource(slide: SlideDetail, protocol: Protocol): string {
  return protocol === "iiif" ? slide.iiif_url : slide.dzi_url;
}
