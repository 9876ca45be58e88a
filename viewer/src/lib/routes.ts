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
  | { page: "worklist"; filters: WorklistFilters; compareWith: string | null }
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
  return { page: "worklist", filters: parseWorklist(params), compareWith: params.get("compare") };
}

/**
 * The worklist's search, filters and sort, as its link carries them:
 * `/?q=&status=&stain=&since=&until=&sort=&order=&limit=`. Empty and default values are left
 * out of the link, so the plain worklist is `/`.
 */
export interface WorklistFilters {
  q: string;
  /** A case status ("received", "in_progress", "signed_out"), or "" for every one. */
  status: string;
  stain: string;
  /** YYYY-MM-DD, or "": the cases received from, to (inclusive). */
  since: string;
  until: string;
  sort: "date" | "reference" | "status";
  order: "asc" | "desc";
  /** Cases per page; null: the worklist's own page size. */
  limit: number | null;
}

export const WORKLIST_SORTS = ["date", "reference", "status"] as const;
/** The most cases a page may ask for (the hub's exchange.slides.listing.MAX_LIMIT). */
export const MAX_PAGE = 200;

/** The order a sort starts in: newest first by date, A to Z by reference. */
export function defaultOrder(sort: WorklistFilters["sort"]): WorklistFilters["order"] {
  return sort === "date" ? "desc" : "asc";
}

export const NO_FILTERS: WorklistFilters = {
  q: "",
  status: "",
  stain: "",
  since: "",
  until: "",
  sort: "date",
  order: "desc",
  limit: null,
};

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export function parseWorklist(params: URLSearchParams): WorklistFilters {
  const text = (name: string): string => (params.get(name) ?? "").trim();
  const sort = WORKLIST_SORTS.find((s) => s === text("sort")) ?? "date";
  const order = text("order");
  const limit = Number(text("limit"));
  return {
    q: params.get("q") ?? "",
    status: text("status"),
    stain: text("stain"),
    since: DAY.test(text("since")) ? text("since") : "",
    until: DAY.test(text("until")) ? text("until") : "",
    sort,
    order: order === "asc" || order === "desc" ? order : defaultOrder(sort),
    limit: Number.isInteger(limit) && limit >= 1 ? Math.min(limit, MAX_PAGE) : null,
  };
}

/** Whether the worklist shows a subset: some search or filter is set (sort aside). */
export function isFiltered(filters: WorklistFilters): boolean {
  return Boolean(filters.q.trim() || filters.status || filters.stain || filters.since || filters.until);
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

/** The worklist with these filters (defaults left out: `/` is the whole worklist). */
export function worklistUrl(filters: Partial<WorklistFilters> = {}): string {
  const all = { ...NO_FILTERS, ...filters };
  const params = new URLSearchParams();
  if (all.q.trim()) params.set("q", all.q.trim());
  for (const name of ["status", "stain", "since", "until"] as const) {
    if (all[name]) params.set(name, all[name]);
  }
  if (all.sort !== "date") params.set("sort", all.sort);
  if (all.order !== defaultOrder(all.sort)) params.set("order", all.order);
  if (all.limit !== null) params.set("limit", String(all.limit));
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

const LAST_WORKLIST_KEY = "iain.worklist";

/** Remembers the worklist's address (its filters), for the slide page's way back. */
export function rememberWorklist(url: string): void {
  try {
    sessionStorage.setItem(LAST_WORKLIST_KEY, url);
  } catch {
    // Storage disabled: the way back is the whole worklist.
  }
}

/** The worklist as the user last left it in this tab (its filters), else the whole one. */
export function lastWorklistUrl(): string {
  try {
    const url = sessionStorage.getItem(LAST_WORKLIST_KEY);
    return url && url.startsWith("/?") ? url : "/";
  } catch {
    return "/";
  }
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
