/** The hub's HTTP API, typed as the server sends it. The viewer talks to the hub only here. */

import { ApiError, apiErrorOf, LoginThrottled } from "./errors";
import type { GeoJsonGeometry } from "./geometry";
import { LOGIN_PATH, loginUrl } from "./routes";
import { t } from "./strings";

/** As exchange/core/statuses.py names them; the hub may add others. */
export type SlideStatus = "ready" | "queued" | "converting" | "failed" | (string & {});

/**
 * Statuses that end by themselves (the slide's pyramid is waiting for a worker, or being
 * built): the worklist polls the hub and updates their badges until none of its slides has
 * one. The hub's SlideStatus.QUEUED and CONVERTING; the viewer keeps no other status list
 * (whether a slide can be opened is the hub's `viewable`).
 */
export const PENDING_STATUSES: readonly SlideStatus[] = ["queued", "converting"];

export interface SlideSummary {
  id: string;
  name: string;
  centre: string;
  status: SlideStatus;
  /** Whether the viewer can open it: while its pyramid is built (or after that failed) the
   * hub serves it from the original file. */
  viewable: boolean;
  error: string | null;
  vendor: string;
  width: number;
  height: number;
  /** µm per pixel at full resolution, when the scanner recorded it. */
  mpp: number | null;
  mpp_x: number | null;
  mpp_y: number | null;
  objective_power: number | null;
  created_at: string;
  dzi_url: string;
  iiif_url: string;
  thumbnail_url: string;
  /** "deidentified": another centre's slide shared with the user (by its opaque id): no
   * label, macro, annotations or overlays there (the hub answers 404). */
  view?: SlideView;
  /** Its case, addressed as the user sees it (the case's opaque id on a de-identified view);
   * absent or null while the slide is to be linked. */
  case_id?: string | null;
  case_reference?: string | null;
  /** Where it was cut from, and its stain, when known. */
  part?: string | null;
  block?: string | null;
  level?: string | null;
  stain?: string | null;
  /** Full view only: how its case was found ("barcode", "file_name", "lis", "manual"), and
   * its label's barcode text. */
  link_source?: string | null;
  barcode?: string | null;
}

/** One page of a list (GET /api/slides, GET /api/cases): `total` counts every item the
 * filters match, over all pages; `next_cursor` asks for the next page (null on the last). */
export interface Page<T> {
  items: T[];
  total: number;
  next_cursor: string | null;
}

export type CaseStatus = "received" | "in_progress" | "signed_out" | (string & {});
export const CASE_STATUSES: readonly CaseStatus[] = ["received", "in_progress", "signed_out"];

/** A case as GET /api/cases and /api/cases/{id} send it: `id` is its opaque id on the
 * de-identified view, where `received_on` is null (the year only is shown). */
export interface CaseSummary {
  id: string;
  centre: string;
  reference: string;
  organ: string;
  specimen_type: string;
  received_on: string | null;
  received_year: number;
  status: CaseStatus;
  view: SlideView;
  /** Every slide of it the user may see; `slides` holds the first ones (all of them from
   * getCase), in block order. */
  slide_count: number;
  stains: string[];
  slides: SlideSummary[];
}

export type ListSort = "date" | "reference" | "status";
export type ListOrder = "asc" | "desc";

/** The worklist's query, shared by both lists (exchange/web/listing.py). */
export interface ListQuery {
  limit?: number;
  cursor?: string | null;
  sort?: ListSort;
  order?: ListOrder;
  /** Words, each matching the beginning of a word of the reference, organ, stain or (full
   * view) file name, accents and case folded. */
  q?: string;
  stain?: string;
  centre?: string[];
  /** YYYY-MM-DD, inclusive: a case's received date, a slide's added date. */
  since?: string;
  until?: string;
  organ?: string;
  /** A case reference prefix. */
  reference?: string;
  /** Only what other centres share with the user. */
  shared?: boolean;
}

export interface SlideQuery extends ListQuery {
  /** The slide's status ("ready", "failed"…). */
  status?: SlideStatus;
  /** false: the slides to be linked to a case. */
  linked?: boolean;
  /** A case's id: its slides only. */
  case?: string;
}

export interface CaseQuery extends ListQuery {
  status?: CaseStatus;
}

/** Where a slide was cut from, as PUT /api/slides/{id}/case takes it; a null reference
 * unlinks the slide (a new reference makes a new case of the user's centre). */
export interface Placement {
  case_reference: string | null;
  part?: string | null;
  block?: string | null;
  level?: string | null;
  stain?: string | null;
}

export type SlideView = "full" | "deidentified";

/** The normalised pyramid's job (GET /api/slides/{id}); `error` is never sent on the
 * de-identified view. */
export interface ConversionInfo {
  status: "queued" | "converting" | "ready" | "skipped" | "failed" | (string & {});
  percent: number;
  note: string | null;
  error: string | null;
  seconds: number | null;
}

export interface Level {
  width: number;
  height: number;
  downsample: number;
}

export interface SlideDetail extends SlideSummary {
  levels: Level[];
  associated_images: Record<string, string>;
  size_bytes: number;
  /** Absent or null for slides that never had a pyramid built. */
  conversion?: ConversionInfo | null;
}

export interface Centre {
  code: string;
  name: string;
  city: string;
}

/** The signed-in user as the hub describes them (GET /api/me, POST /api/login). */
export interface Me {
  user: { id: string; username: string; display_name: string; centre: string; roles: string[] };
  csrf_token: string | null;
  auth?: "session" | "token";
}

export interface LoginOptions {
  password: boolean;
  oidc: boolean;
  oidc_label: string | null;
}

/**
 * The session's CSRF token, kept in memory only (never in storage a script of another page
 * could read): every request that changes something sends it as X-CSRF-Token.
 */
let csrfToken: string | null = null;
let mePromise: Promise<Me> | null = null;

/** An answer of 401 means the session ended (or never was): go and log in, then come back.
 * Every call to the hub goes through here, /api/me included: one refused call is enough. */
function checkLoggedIn(response: Response): void {
  if (response.status === 401 && window.location.pathname !== LOGIN_PATH) {
    window.location.assign(loginUrl());
  }
}

/**
 * `fetch` for the hub's API: writes (POST, PUT, PATCH, DELETE) carry the CSRF token, fetched
 * from /api/me when this page does not have it yet; a 401 sends the user to the login page.
 */
async function apiFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers);
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
    if (csrfToken === null) {
      try {
        await getMe();
      } catch {
        // Not logged in: the write gets its 401 below.
      }
    }
    if (csrfToken !== null) headers.set("X-CSRF-Token", csrfToken);
  }
  const response = await fetch(url, { ...init, method, headers, credentials: "same-origin" });
  checkLoggedIn(response);
  return response;
}

/**
 * One call to the hub's API, JSON both ways: resolves to the answer (null for a 204), rejects
 * with an ApiError: status 0 when the hub cannot be reached, else the hub's reason.
 */
export async function apiRequest<T>(method: string, url: string, body?: unknown): Promise<T> {
  const response = await send(method, url, body);
  return response.status === 204 ? (null as T) : ((await response.json()) as T);
}

/** `apiRequest` without reading the answer. */
async function send(method: string, url: string, body?: unknown): Promise<Response> {
  let response: Response;
  try {
    response = await apiFetch(url, {
      method,
      headers:
        body === undefined
          ? { Accept: "application/json" }
          : { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, t.errors.network);
  }
  if (!response.ok) throw await apiErrorOf(response);
  return response;
}

/** Who is signed in (cached for the page's life); rejects with ApiError 401 if nobody. */
export function getMe(): Promise<Me> {
  mePromise ??= apiRequest<Me>("GET", "/api/me").then((me) => {
    csrfToken = me.csrf_token;
    return me;
  });
  mePromise.catch(() => {
    mePromise = null;
  });
  return mePromise;
}

let lastSessionCheck = 0;

/** After a failed tile (an image load, whose status no script sees): asks the hub whether
 * the session still stands, at most every 5 s; a 401 sends the user to the login page. */
export function checkSession(): void {
  const now = Date.now();
  if (now - lastSessionCheck < 5000) return;
  lastSessionCheck = now;
  void fetch("/api/me", { headers: { Accept: "application/json" } }).then(checkLoggedIn, () => {
    // No answer at all: the tiles' own retries and messages cover it.
  });
}

export async function getLoginOptions(): Promise<LoginOptions> {
  return apiRequest<LoginOptions>("GET", "/api/login/options");
}

/** Password login; the session cookie is set by the hub (HttpOnly: no script reads it). */
export async function login(username: string, password: string): Promise<Me> {
  let response: Response;
  try {
    response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
  } catch {
    throw new ApiError(0, t.errors.network);
  }
  if (response.status === 429) {
    throw new LoginThrottled(Number(response.headers.get("Retry-After") ?? "60") || 60);
  }
  if (!response.ok) throw await apiErrorOf(response);
  const me = (await response.json()) as Me;
  csrfToken = me.csrf_token;
  mePromise = Promise.resolve(me);
  return me;
}

export async function logout(): Promise<void> {
  const response = await apiFetch("/api/logout", { method: "POST" });
  csrfToken = null;
  mePromise = null;
  if (!response.ok && response.status !== 401) throw await apiErrorOf(response);
}

/** `path` with the query's set values (empty strings and nulls left out; a flag as "true" or
 * "false", as `linked=false` asks for the slides to be linked). */
function withQuery(path: string, query: ListQuery & Record<string, unknown>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) params.append(name, String(one));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** A page of the slides the user may see, oldest first unless `order: "desc"`. */
export function listSlides(query: SlideQuery = {}): Promise<Page<SlideSummary>> {
  return apiRequest<Page<SlideSummary>>("GET", withQuery("/api/slides", { ...query }));
}

/** A page of cases with their first slides, newest received first unless `order: "asc"`. */
export function listCases(query: CaseQuery = {}): Promise<Page<CaseSummary>> {
  return apiRequest<Page<CaseSummary>>("GET", withQuery("/api/cases", { ...query }));
}

/** One case with every slide of it the user may see. */
export function getCase(id: string): Promise<CaseSummary> {
  return apiRequest<CaseSummary>("GET", `/api/cases/${encodeURIComponent(id)}`);
}

/** Puts a slide of the user's centre into a case (created if new), with its block and stain;
 * resolves to the slide as listed. Technicians, pathologists, residents and centre admins. */
export function placeSlide(id: string, placement: Placement): Promise<SlideSummary> {
  return apiRequest<SlideSummary>("PUT", `/api/slides/${encodeURIComponent(id)}/case`, placement);
}

export function getSlide(id: string): Promise<SlideDetail> {
  return apiRequest<SlideDetail>("GET", `/api/slides/${encodeURIComponent(id)}`);
}

export function listCentres(): Promise<Centre[]> {
  return apiRequest<Centre[]>("GET", "/api/centres");
}

/** Centre code → display name; codes the hub does not know stay as they are. */
export async function centreNames(): Promise<Map<string, string>> {
  try {
    return new Map((await listCentres()).map((c) => [c.code, c.name]));
  } catch {
    return new Map();
  }
}

export function thumbnailUrl(slide: SlideSummary, size: number): string {
  return `${slide.thumbnail_url}?size=${size}`;
}

/** A heatmap's legend: a colour ramp from `min` to `max` (evenly spaced `colours`). */
export interface RampLegend {
  type: "ramp";
  colour_map: string;
  colours: string[];
  min: number;
  max: number;
  label: string;
}

/** A feature set's legend: one colour per class, with how many features have it. */
export interface ClassesLegend {
  type: "classes";
  classes: { name: string; colour: string; count: number }[];
}

/** A layer computed over a slide: a heatmap (DeepZoom tiles) or GeoJSON features. */
export interface OverlayInfo {
  id: string;
  slide_id: string;
  kind: "heatmap" | "features";
  name: string;
  legend: RampLegend | ClassesLegend;
  created_at: string;
  feature_count: number | null;
  dzi_url: string | null;
  features_url: string | null;
  /** A model's result: the inference job that computed it, and what it came from. */
  job_id?: string | null;
  info?: OverlayProvenance | null;
}

/** What the hub records beside a model's result (exchange/web/jobs.py `complete`). */
export interface OverlayProvenance {
  model?: {
    id: string;
    name: string;
    version: string;
    sha256: string;
    intended_use: string;
    licence: string;
  };
  job_id?: string;
  attempt?: number;
  summary?: JobSummary | null;
  provenance?: JobProvenance | null;
}

/** A feature of an overlay, as the hub stores them: GeoJSON in level-0 pixel coordinates. */
export interface OverlayFeature {
  type: "Feature";
  id?: string | number;
  geometry: GeoJsonGeometry;
  properties: { class?: string; score?: number; colour?: string; [key: string]: unknown };
}

export function listOverlays(slideId: string): Promise<OverlayInfo[]> {
  return apiRequest<OverlayInfo[]>("GET", `/api/slides/${encodeURIComponent(slideId)}/overlays`);
}

export async function getOverlayFeatures(url: string): Promise<OverlayFeature[]> {
  return (await apiRequest<{ features: OverlayFeature[] }>("GET", url)).features;
}

// ---- sharing (exchange/web/grants.py) ---------------------------------------------------

export type Purpose = "second_opinion" | "teaching" | "tumour_board";
export const PURPOSES: readonly Purpose[] = ["second_opinion", "teaching", "tumour_board"];

/** A grant as GET/POST /api/grants send it. Given: `slide_id` is the slide's id; received:
 * its opaque id (the de-identified view's). `live`: neither revoked nor expired. */
export interface Grant {
  id: string;
  slide_id: string | null;
  case_id: string | null;
  grantor_centre: string;
  grantee_centre: string | null;
  grantee_user: string | null;
  purpose: Purpose | (string & {});
  legal_basis: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  live: boolean;
  direction: "given" | "received";
}

export interface GrantRequest {
  slide_id: string;
  centre?: string;
  user?: string;
  purpose: Purpose;
  expires_at?: string;
  legal_basis?: string;
}

export function listGrants(): Promise<Grant[]> {
  return apiRequest<Grant[]>("GET", "/api/grants");
}

/** Shares a slide of the user's centre; rejects with the hub's reason (403, 404, 400…). */
export async function createGrant(grant: GrantRequest): Promise<Grant> {
  return apiRequest<Grant>("POST", "/api/grants", grant);
}

export async function revokeGrant(grantId: string): Promise<void> {
  await send("DELETE", `/api/grants/${encodeURIComponent(grantId)}`);
}

// ---- AI assistance (exchange/web/jobs.py) ----------------------------------------------

/** What a model is registered for: research only, or an aid to diagnosis. */
export type IntendedUse = "research use only" | "diagnostic aid" | (string & {});

/** A registered model version, as GET /api/models lists them. */
export interface AiModel {
  id: string;
  name: string;
  version: string;
  task: string;
  sha256: string;
  artefact_format: string;
  size_bytes: number;
  intended_use: IntendedUse;
  licence: string;
  manifest: {
    classes?: { name: string; colour: string }[];
    heatmap_class?: string | null;
    /** Per class, the score (0–1) above which the model calls it. */
    thresholds?: Record<string, number>;
    resolution?: number;
    unit?: string;
    patch_size?: number;
    authors?: string[];
    description?: string;
    [key: string]: unknown;
  };
  created_at: string;
}

/** As exchange/core/statuses.py JobState names them. */
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled" | (string & {});
/** States that end by themselves: the panel polls the hub while a job has one. */
export const ACTIVE_JOB_STATES: readonly JobState[] = ["queued", "running"];

/** A level-0 rectangle of the slide, in pixels. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The figures a job's worker reports: beside an inference job's heatmap
 * (inference/pipeline.py class_summary), or about a training job's model
 * (inference/training.py: its patches per label, held-out accuracy, durations).
 */
export interface JobSummary {
  /** Inference: how many patches were analysed; training: how many per label. */
  patches?: number | Record<string, number>;
  tissue_area_mm2?: number | null;
  classes?: Record<string, { patches: number; area_mm2: number | null }>;
  held_out_patches?: number;
  /** 0–1; null when no patch could be held out. */
  held_out_accuracy?: number | null;
  epochs?: number;
  read_s?: number;
  train_s?: number;
  /** The model the training job registered. */
  model_id?: string;
}

/** Where a result came from (inference/worker.py `_provenance`). */
export interface JobProvenance {
  model_sha256?: string;
  model?: string;
  slide_content_hash?: string;
  code_version?: string;
  device?: string;
  worker?: string;
  attempt?: number;
  patches?: number;
  durations_s?: Record<string, number>;
  [key: string]: unknown;
}

/** As exchange/core/statuses.py JobKind names them. */
export type JobKind = "inference" | "training" | (string & {});

export interface ModelRef {
  id: string;
  name: string;
  version: string;
}

/**
 * A job, as the hub sends it: an inference job (one model version over one slide), or a
 * training job (a model made from one slide's annotations; `model` null, `result_model`
 * the model once made).
 */
export interface InferenceJob {
  id: string;
  kind: JobKind;
  /** The model run (inference); null once removed, and for a training job. */
  model: ModelRef | null;
  /** The model made (training), once it is. */
  result_model: ModelRef | null;
  /** The slide, as its requester addressed it. */
  slide: string;
  state: JobState;
  attempt: number;
  percent: number;
  patches_done: number;
  patches_total: number;
  eta_s: number | null;
  error: string | null;
  /** `region`: [x, y, width, height] in level-0 pixels, or null for the whole slide;
   * a training job's: the model's name and version, its labels, patches and epochs. */
  params: {
    region?: [number, number, number, number] | null;
    tissue_only?: boolean;
    name?: string;
    version?: string;
    labels?: string[] | null;
    resolution?: number;
    patch_size?: number;
    epochs?: number;
    run_after?: boolean;
  };
  overlay_ids: string[];
  summary: JobSummary | null;
  provenance: JobProvenance | null;
  mine: boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface JobRequest {
  model_id: string;
  slides: string[];
  region?: Region;
  tissue_only?: boolean;
  force?: boolean;
}

/** POST /api/models/train: a model from the slide's labelled area annotations. */
export interface TrainRequest {
  slide: string;
  /** Lower-case letters, digits, '.', '_' and '-'. */
  name: string;
  /** The labels to learn (at least two); all the slide's, when left out. */
  labels?: string[];
  /** µm per pixel the patches are read at (the hub's default 1). */
  resolution?: number;
  patch_size?: number;
  epochs?: number;
  /** Once trained, run it over the slide. */
  run_after?: boolean;
}

export interface JobQuery {
  slide?: string;
  model?: string;
  state?: JobState;
  /** Only the user's own jobs (else their centre's too). */
  mine?: boolean;
  limit?: number;
}

/** The models the user may run; rejects with a 404 ApiError when their role may run none. */
export function listModels(): Promise<AiModel[]> {
  return apiRequest<AiModel[]>("GET", "/api/models");
}

/** Queues one job per slide; `created` counts the new ones (the others were already queued,
 * running or done with the same model and parameters, and come back as they are). */
export function createJobs(request: JobRequest): Promise<{ jobs: InferenceJob[]; created: number }> {
  return apiRequest<{ jobs: InferenceJob[]; created: number }>("POST", "/api/inference/jobs", request);
}

/** Newest first. */
export function listJobs(query: JobQuery = {}): Promise<InferenceJob[]> {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) {
      params.set(name, String(value));
    }
  }
  const text = params.toString();
  return apiRequest<InferenceJob[]>("GET", `/api/inference/jobs${text ? `?${text}` : ""}`);
}

/** Queues a training job; rejects with the hub's reason (fewer than two labels, a bad name…). */
export function trainModel(request: TrainRequest): Promise<InferenceJob> {
  return apiRequest<InferenceJob>("POST", "/api/models/train", request);
}

export function cancelJob(id: string): Promise<InferenceJob> {
  return apiRequest<InferenceJob>("POST", `/api/inference/jobs/${encodeURIComponent(id)}/cancel`);
}

export function retryJob(id: string): Promise<InferenceJob> {
  return apiRequest<InferenceJob>("POST", `/api/inference/jobs/${encodeURIComponent(id)}/retry`);
}
