/** The hub's HTTP API, typed as the server sends it. The viewer talks to the hub only here. */

import { t } from "./strings";

/** "ready" is viewable; the hub may add others (e.g. "processing", "failed"). */
export type SlideStatus = "ready" | "processing" | "failed" | (string & {});

export interface SlideSummary {
  id: string;
  name: string;
  centre: string;
  status: SlideStatus;
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
}

export interface Centre {
  code: string;
  name: string;
  city: string;
}

/** A refusal by the hub (`status` ≥ 400, `detail` its message) or, with status 0, no answer. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = "ApiError";
  }

  get notFound(): boolean {
    return this.status === 404;
  }
}

async function getJson<T>(url: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
  } catch {
    throw new ApiError(0, t.errors.network);
  }
  if (!response.ok) {
    let detail = t.errors.http(response.status);
    try {
      const body: unknown = await response.json();
      if (body && typeof body === "object" && "detail" in body && typeof body.detail === "string") {
        detail = body.detail;
      }
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(response.status, detail);
  }
  return (await response.json()) as T;
}

export function listSlides(): Promise<SlideSummary[]> {
  return getJson<SlideSummary[]>("/api/slides");
}

export function getSlide(id: string): Promise<SlideDetail> {
  return getJson<SlideDetail>(`/api/slides/${encodeURIComponent(id)}`);
}

export function listCentres(): Promise<Centre[]> {
  return getJson<Centre[]>("/api/centres");
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
}

export type Position = [number, number];

/** GeoJSON as the hub stores overlay features: level-0 pixel coordinates. */
export type OverlayGeometry =
  | { type: "Point"; coordinates: Position }
  | { type: "MultiPoint"; coordinates: Position[] }
  | { type: "LineString"; coordinates: Position[] }
  | { type: "MultiLineString"; coordinates: Position[][] }
  | { type: "Polygon"; coordinates: Position[][] }
  | { type: "MultiPolygon"; coordinates: Position[][][] };

export interface OverlayFeature {
  type: "Feature";
  id?: string | number;
  geometry: OverlayGeometry;
  properties: { class?: string; score?: number; colour?: string; [key: string]: unknown };
}

export function listOverlays(slideId: string): Promise<OverlayInfo[]> {
  return getJson<OverlayInfo[]>(`/api/slides/${encodeURIComponent(slideId)}/overlays`);
}

export async function getOverlayFeatures(url: string): Promise<OverlayFeature[]> {
  return (await getJson<{ features: OverlayFeature[] }>(url)).features;
}
