/**
 * Where a slide's level-0 pixels are on screen, and the view as links carry it: every
 * conversion between the slide (level-0 pixels), OpenSeadragon's viewport and the viewer
 * element's CSS pixels is made here.
 *
 * OpenSeadragon's flip quirk: a flipped viewer mirrors its drawn canvas about its middle, but
 * its coordinate conversions (pixelFromPoint, pointFromPixel, imageToViewerElementCoordinates,
 * windowToImageCoordinates…) do not, so they answer for the unflipped view. Here, and only
 * here, x is mirrored by hand.
 */

import OpenSeadragon from "openseadragon";
import type { Pt } from "./geometry";
import { normalizeDegrees, type ViewState } from "./routes";

/** Level-0 px → the viewer element's CSS px: x' = a·x + c·y + e, y' = b·x + d·y + f. */
export type Affine = [number, number, number, number, number, number];

/** The slide's image in `viewer` (the first of its world: overlays come after it); null before
 * it is open. */
export function slideImage(viewer: OpenSeadragon.Viewer): OpenSeadragon.TiledImage | null {
  return viewer.world.getItemAt(0) ?? null;
}

/** True once every tile needed for the current view, at the best resolution, is drawn. */
export function fullyLoaded(viewer: OpenSeadragon.Viewer): boolean {
  return viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0).getFullyLoaded();
}

/** Where a level-0 point is drawn now, in CSS px of the viewer element; null before the
 * image is open. */
export function imageToScreen(viewer: OpenSeadragon.Viewer, p: Pt): Pt | null {
  const item = slideImage(viewer);
  if (!item) return null;
  const viewport = viewer.viewport;
  const pixel = viewport.pixelFromPoint(item.imageToViewportCoordinates(p[0], p[1], true), true);
  return [mirrored(viewport, pixel.x), pixel.y];
}

/** The level-0 point drawn now at `s` (CSS px of the viewer element); null before the image
 * is open. */
export function screenToImage(viewer: OpenSeadragon.Viewer, s: Pt): Pt | null {
  const item = slideImage(viewer);
  if (!item) return null;
  const viewport = viewer.viewport;
  const point = viewport.pointFromPixel(new OpenSeadragon.Point(mirrored(viewport, s[0]), s[1]), true);
  const image = item.viewportToImageCoordinates(point, true);
  return [image.x, image.y];
}

/** A pointer event's position (`clientX`, `clientY`) in CSS px of the viewer element. */
export function clientToScreen(viewer: OpenSeadragon.Viewer, clientX: number, clientY: number): Pt {
  const rect = viewer.canvas.getBoundingClientRect();
  return [clientX - rect.left, clientY - rect.top];
}

/** x in the unflipped view's pixels ↔ x as drawn (the same map both ways). */
function mirrored(viewport: OpenSeadragon.Viewport, x: number): number {
  return viewport.getFlip() ? viewport.getContainerSize().x - x : x;
}

/** imageToScreen as one matrix, for drawing many points (zoom, pan, any rotation, flip: the
 * map is affine); null before the image is open. */
export function imageToScreenMatrix(viewer: OpenSeadragon.Viewer): Affine | null {
  const item = slideImage(viewer);
  if (!item) return null;
  // Any two lengths would do; the image's own are the most precise (far corners, big numbers).
  const size = item.getContentSize();
  const [ox, oy] = imageToScreen(viewer, [0, 0])!;
  const [xx, xy] = imageToScreen(viewer, [size.x, 0])!;
  const [yx, yy] = imageToScreen(viewer, [0, size.y])!;
  return [(xx - ox) / size.x, (xy - oy) / size.x, (yx - ox) / size.y, (yy - oy) / size.y, ox, oy];
}

/** Screen px per level-0 px of `m` (its scale, whatever its rotation). */
export function matrixScale(m: Affine): number {
  return Math.hypot(m[0], m[1]);
}

/** The level-0 box [x0, y0, x1, y1] holding everything `m` puts in the screen rectangle from
 * (left, top) to (right, bottom): the view may be rotated. */
export function screenBoxToImage(
  m: Affine,
  left: number,
  top: number,
  right: number,
  bottom: number,
): [number, number, number, number] {
  const [a, b, c, d, e, f] = m;
  const det = a * d - b * c || 1;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [sx, sy] of [
    [left, top],
    [right, top],
    [left, bottom],
    [right, bottom],
  ] as const) {
    const u = sx - e;
    const v = sy - f;
    const x = (d * u - c * v) / det;
    const y = (a * v - b * u) / det;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  return [x0, y0, x1, y1];
}

/** Screen (CSS) px per level-0 px: now (`current`), else where the zoom is going; null
 * before the image is open. */
export function imageZoom(viewer: OpenSeadragon.Viewer, current = true): number | null {
  const item = slideImage(viewer);
  return item ? item.viewportToImageZoom(viewer.viewport.getZoom(current)) : null;
}

/** Zooms to `zoom` screen px per level-0 px. */
export function zoomImageTo(viewer: OpenSeadragon.Viewer, zoom: number, immediately = false): void {
  const item = slideImage(viewer);
  if (item) viewer.viewport.zoomTo(item.imageToViewportZoom(zoom), undefined, immediately);
}

/** The level-0 rectangle as a viewport rectangle (for fitBounds); null before the image is open. */
export function imageToViewportRect(
  viewer: OpenSeadragon.Viewer,
  x: number,
  y: number,
  width: number,
  height: number,
): OpenSeadragon.Rect | null {
  return slideImage(viewer)?.imageToViewportRectangle(x, y, width, height) ?? null;
}

/** The view now, in level-0 pixels; null before the image is open. */
export function currentView(viewer: OpenSeadragon.Viewer): ViewState | null {
  const item = slideImage(viewer);
  if (!item) return null;
  const viewport = viewer.viewport;
  const centre = item.viewportToImageCoordinates(viewport.getCenter(true));
  return {
    x: centre.x,
    y: centre.y,
    zoom: item.viewportToImageZoom(viewport.getZoom(true)),
    rotation: normalizeDegrees(viewport.getRotation(true)),
    flip: viewport.getFlip(),
  };
}

export function applyView(viewer: OpenSeadragon.Viewer, view: ViewState, immediately: boolean): void {
  const item = slideImage(viewer);
  if (!item) return;
  const viewport = viewer.viewport;
  viewport.setFlip(view.flip);
  viewport.setRotation(view.rotation, immediately);
  viewport.zoomTo(item.imageToViewportZoom(view.zoom), undefined, immediately);
  viewport.panTo(item.imageToViewportCoordinates(view.x, view.y), immediately);
}
