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
  const number = (name: string): number => {
    const text = params.get(name);
    return text === null || text.trim() === "" ? NaN : Number(text);
  };
  return viewOf(number("x"), number("y"), number("zoom"), number("rot"), params.get("flip") === "1");
}

/** A view, or null unless x, y and zoom are numbers and zoom > 0; a rotation that is not a
 * number is 0. Links carry views as text: NaN stands for a missing or unreadable number. */
function viewOf(x: number, y: number, zoom: number, rotation: number, flip: boolean): ViewState | null {
  if (!Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(zoom) || zoom <= 0) return null;
  return { x, y, zoom, rotation: normalizeDegrees(Number.isFinite(rotation) ? rotation : 0), flip };
}

/** A view rounded to what a screen can show, as links carry it: whole pixels, 4 significant
 * digits of zoom, 0.1°. */
function roundView(view: ViewState): ViewState {
  return {
    x: Math.round(view.x),
    y: Math.round(view.y),
    zoom: Number(view.zoom.toPrecision(4)),
    rotation: Number(normalizeDegrees(view.rotation).toFixed(1)) % 360,
    flip: view.flip,
  };
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

/** The view rounded (see roundView). */
export function viewerUrl(
  slideId: string,
  protocol: Protocol = "dzi",
  view: ViewState | null = null,
): string {
  const params = new URLSearchParams();
  if (view) {
    const { x, y, zoom, rotation, flip } = roundView(view);
    params.set("x", String(x));
    params.set("y", String(y));
    params.set("zoom", String(zoom));
    if (rotation !== 0) params.set("rot", String(rotation));
    if (flip) params.set("flip", "1");
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
  return viewOf(x, y, zoom, rotation, parts[4] === "f");
}

/** The views rounded like viewerUrl's. */
export function compareUrl(state: CompareState): string {
  const params = new URLSearchParams({ slides: state.slideIds.join(",") });
  for (const view of state.views ?? []) {
    const { x, y, zoom, rotation, flip } = roundView(view);
    params.append("v", [x, y, zoom, rotation].join(",") + (flip ? ",f" : ""));
  }
  if (!state.locked) params.set("lock", "0");
  return `/compare?${params.toString().replace(/%2C/g, ",")}`;
}

/** The login page's path: the one page that is open to anybody. */
export const LOGIN_PATH = "/login";

/** The login page for coming back to `next` (default: where the user is now). */
export function loginUrl(next: string = window.location.pathname + window.location.search): string {
  return next && next !== "/" ? `${LOGIN_PATH}?${new URLSearchParams({ next })}` : LOGIN_PATH;
}

/** Where to go after signing in: a path of this hub only (never another site). */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  return next.startsWith("/login") ? "/" : next;
}

/** How often, at most, the address bar follows a view while it moves. */
const URL_UPDATE_MS = 250;

/**
 * Keeps the address bar on `link()` (the page's view, so that a reload or a copied address
 * shows it): `schedule()` at every move writes it at most every URL_UPDATE_MS, `now()` at
 * once. Null from `link()` leaves the address as it is.
 */
export function addressBar(link: () => string | null): { schedule(): void; now(): void } {
  let timer: number | undefined;
  const now = (): void => {
    window.clearTimeout(timer);
    timer = undefined;
    const url = link();
    if (url !== null) history.replaceState(null, "", url);
  };
  return {
    now,
    schedule() {
      timer ??= window.setTimeout(now, URL_UPDATE_MS);
    },
  };
}
