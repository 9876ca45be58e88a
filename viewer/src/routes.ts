/** The viewer's URLs. The hub returns index.html for /viewer/*, and main.ts dispatches here. */

export type Protocol = "dzi" | "iiif";

/**
 * A view of a slide, as a shareable link carries it: `?x=&y=&zoom=&rot=&flip=1`.
 * x, y: the view's centre in full-resolution (level-0) pixels; zoom: screen (CSS) pixels per
 * level-0 pixel, so 1 is the scan's own resolution; rotation: degrees clockwise, 0 to 360;
 * flip: mirrored horizontally.
 */
export interface ViewState {
  x: number;
  y: number;
  zoom: number;
  rotation: number;
  flip: boolean;
}

export type Route =
  | { page: "worklist"; query: string }
  | { page: "viewer"; slideId: string; protocol: Protocol; view: ViewState | null };

export function parseRoute(location: Location | URL): Route {
  const params = new URLSearchParams(location.search);
  const match = /^\/viewer\/(.*)$/.exec(location.pathname);
  if (match) {
    return {
      page: "viewer",
      slideId: decodeURIComponent(match[1] ?? "").replace(/\/+$/, ""),
      protocol: params.get("protocol") === "iiif" ? "iiif" : "dzi",
      view: parseView(params),
    };
  }
  return { page: "worklist", query: params.get("q") ?? "" };
}

/** The view in `params`, or null unless x, y and a positive zoom are all there. */
export function parseView(params: URLSearchParams): ViewState | null {
  const number = (name: string): number | null => {
    const text = params.get(name);
    const value = text === null || text.trim() === "" ? NaN : Number(text);
    return Number.isFinite(value) ? value : null;
  };
  const [x, y, zoom] = [number("x"), number("y"), number("zoom")];
  if (x === null || y === null || zoom === null || zoom <= 0) return null;
  return { x, y, zoom, rotation: normalizeDegrees(number("rot") ?? 0), flip: params.get("flip") === "1" };
}

/** An angle in [0, 360). */
export function normalizeDegrees(degrees: number): number {
  return ((degrees % 360) + 360) % 360;
}

export function worklistUrl(query = ""): string {
  return query ? `/?${new URLSearchParams({ q: query })}` : "/";
}

/** Rounded to what a screen can show: whole pixels, 4 significant digits of zoom, 0.1°. */
export function viewerUrl(
  slideId: string,
  protocol: Protocol = "dzi",
  view: ViewState | null = null,
): string {
  const params = new URLSearchParams();
  if (view) {
    params.set("x", String(Math.round(view.x)));
    params.set("y", String(Math.round(view.y)));
    params.set("zoom", String(Number(view.zoom.toPrecision(4))));
    const rotation = Number(normalizeDegrees(view.rotation).toFixed(1)) % 360;
    if (rotation !== 0) params.set("rot", String(rotation));
    if (view.flip) params.set("flip", "1");
  }
  if (protocol !== "dzi") params.set("protocol", protocol);
  const query = params.toString();
  return `/viewer/${encodeURIComponent(slideId)}${query ? `?${query}` : ""}`;
}
