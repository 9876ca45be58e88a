/**
 * The viewer's URLs. The hub returns index.html for /, /viewer/*, /compare and /login, and
 * main.ts dispatches here.
 */

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
  | { page: "worklist"; query: string; compareWith: string | null }
  | { page: "viewer"; slideId: string; protocol: Protocol; view: ViewState | null }
  | { page: "compare"; compare: CompareState }
  | { page: "login"; next: string };

/** Slides shown side by side on the compare page. */
export const COMPARE_MIN = 2;
export const COMPARE_MAX = 4;

/**
 * The compare page's link: `?slides=a,b[,c,d]&v=x,y,zoom,rot[,f]&v=…&lock=0`. One `v` per
 * slide, in that slide's level-0 pixels as on the slide page (`f`: flipped); while locked,
 * the differences between the views are the offsets the lock keeps. Views are null where
 * the link has none (or not one for every slide): each slide then opens whole.
 */
export interface CompareState {
  slideIds: string[];
  views: ViewState[] | null;
  locked: boolean;
}

export function parseRoute(location: Location | URL): Route {
  const params = new URLSearchParams(location.search);
  if (/^\/compare\/?$/.test(location.pathname)) return { page: "compare", compare: parseCompare(params) };
  if (/^\/login\/?$/.test(location.pathname)) return { page: "login", next: safeNext(params.get("next")) };
  const match = /^\/viewer\/(.*)$/.exec(location.pathname);
  if (match) {
    return {
      page: "viewer",
      slideId: decodeURIComponent(match[1] ?? "").replace(/\/+$/, ""),
      protocol: params.get("protocol") === "iiif" ? "iiif" : "dzi",
      view: parseView(params),
    };
  }
  return { page: "worklist", query: params.get("q") ?? "", compareWith: params.get("compare") };
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

/** The worklist with `slideId` already ticked for comparison: the slide page's "Compare…". */
export function compareWithUrl(slideId: string): string {
  return `/?${new URLSearchParams({ compare: slideId })}`;
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

export function parseCompare(params: URLSearchParams): CompareState {
  const slideIds = (params.get("slides") ?? "")
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean)
    .slice(0, COMPARE_MAX);
  const given = params.getAll("v");
  const views = given.map(parseCompactView).filter((view): view is ViewState => view !== null);
  const complete = views.length === given.length && views.length === slideIds.length;
  return {
    slideIds,
    views: complete ? views : null,
    locked: params.get("lock") !== "0",
  };
}

/** "x,y,zoom,rot[,f]" → a view; null unless x, y and a positive zoom are numbers. */
function parseCompactView(text: string): ViewState | null {
  const parts = text.split(",");
  const [x = NaN, y = NaN, zoom = NaN, rotation = NaN] = parts
    .slice(0, 4)
    .map((part) => (part.trim() === "" ? NaN : Number(part)));
  if (!Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(zoom) || zoom <= 0) return null;
  return {
    x,
    y,
    zoom,
    rotation: normalizeDegrees(Number.isFinite(rotation) ? rotation : 0),
    flip: parts[4] === "f",
  };
}

/** Rounded like viewerUrl's views. */
export function compareUrl(state: CompareState): string {
  const params = new URLSearchParams({ slides: state.slideIds.join(",") });
  for (const view of state.views ?? []) {
    const rotation = Number(normalizeDegrees(view.rotation).toFixed(1)) % 360;
    const parts = [Math.round(view.x), Math.round(view.y), Number(view.zoom.toPrecision(4)), rotation];
    params.append("v", parts.join(",") + (view.flip ? ",f" : ""));
  }
  if (!state.locked) params.set("lock", "0");
  return `/compare?${params.toString().replace(/%2C/g, ",")}`;
}

/** Where to go after signing in: a path of this hub only (never another site). */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  return next.startsWith("/login") ? "/" : next;
}
