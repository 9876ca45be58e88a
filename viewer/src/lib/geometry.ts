/**
 * Shapes as the hub stores them (annotations, overlay features): GeoJSON in level-0 pixel
 * coordinates. Pure maths, no DOM and no OpenSeadragon, so the drawing code can stay about
 * pointers and screens.
 */

/** A position: x, y in level-0 pixels. */
export type Pt = [number, number];

/** Every GeoJSON geometry the hub sends (overlay features may be any of them). */
export type GeoJsonGeometry =
  | { type: "Point"; coordinates: Pt }
  | { type: "MultiPoint"; coordinates: Pt[] }
  | { type: "LineString"; coordinates: Pt[] }
  | { type: "MultiLineString"; coordinates: Pt[][] }
  | { type: "Polygon"; coordinates: Pt[][] }
  | { type: "MultiPolygon"; coordinates: Pt[][][] };

export type Kind = "point" | "line" | "rectangle" | "ellipse" | "polygon" | "freehand";
export const KINDS: readonly Kind[] = ["point", "rectangle", "ellipse", "polygon", "freehand", "line"];

/** The geometries of annotations. */
export type Geometry = Extract<
  GeoJsonGeometry,
  { type: "Point" | "LineString" | "Polygon" | "MultiPolygon" }
>;

export interface Measurements {
  area_mm2?: number;
  length_um?: number;
}

export interface AnnotationProperties {
  kind: Kind;
  label: string;
  colour: string;
  comment: string;
  version: number;
  measurements?: Measurements;
}

export interface Feature {
  type: "Feature";
  id: string;
  geometry: Geometry;
  properties: AnnotationProperties;
}

/** What a client sets: everything but the id, version and what the server computes. */
export interface Draft {
  kind: Kind;
  geometry: Geometry;
  label: string;
  colour: string;
  comment: string;
}

export const DEFAULT_COLOUR = "#ffcc00";

/** Vertices an ellipse is stored with (as a polygon, as QuPath stores ellipses). */
const ELLIPSE_VERTICES = 72;

export function rectangle(a: Pt, b: Pt): Geometry {
  const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
  const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
  return {
    type: "Polygon",
    coordinates: [
      [
        [x0, y0],
        [x1, y0],
        [x1, y1],
        [x0, y1],
        [x0, y0],
      ],
    ],
  };
}

/** The ellipse inscribed in the level-0-aligned box with corners a and b. */
export function ellipse(a: Pt, b: Pt): Geometry {
  const cx = (a[0] + b[0]) / 2;
  const cy = (a[1] + b[1]) / 2;
  const rx = Math.abs(b[0] - a[0]) / 2;
  const ry = Math.abs(b[1] - a[1]) / 2;
  const ring: Pt[] = [];
  for (let i = 0; i < ELLIPSE_VERTICES; i++) {
    const angle = (2 * Math.PI * i) / ELLIPSE_VERTICES;
    ring.push([cx + rx * Math.cos(angle), cy + ry * Math.sin(angle)]);
  }
  ring.push([ring[0]![0], ring[0]![1]]);
  return { type: "Polygon", coordinates: [ring] };
}

/** A closed ring through `points` (the first repeated at the end, as GeoJSON wants). */
export function closedRing(points: readonly Pt[]): Pt[] {
  const ring = points.map((p): Pt => [p[0], p[1]]);
  const first = ring[0]!;
  const last = ring[ring.length - 1]!;
  if (first[0] !== last[0] || first[1] !== last[1]) ring.push([first[0], first[1]]);
  return ring;
}

/** Every ring, line or point (a one-vertex list) of a geometry. */
export function rings(geometry: GeoJsonGeometry): Pt[][] {
  switch (geometry.type) {
    case "Point":
      return [[geometry.coordinates]];
    case "MultiPoint":
      return geometry.coordinates.map((p) => [p]);
    case "LineString":
      return [geometry.coordinates];
    case "MultiLineString":
    case "Polygon":
      return geometry.coordinates;
    case "MultiPolygon":
      return geometry.coordinates.flat();
  }
}

export function isClosed(geometry: GeoJsonGeometry): boolean {
  return geometry.type === "Polygon" || geometry.type === "MultiPolygon";
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export function bounds(geometry: GeoJsonGeometry): Box {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const ring of rings(geometry)) {
    for (const [x, y] of ring) {
      x0 = Math.min(x0, x);
      y0 = Math.min(y0, y);
      x1 = Math.max(x1, x);
      y1 = Math.max(y1, y);
    }
  }
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

export function translate(geometry: Geometry, dx: number, dy: number): Geometry {
  const move = (p: Pt): Pt => [p[0] + dx, p[1] + dy];
  switch (geometry.type) {
    case "Point":
      return { type: "Point", coordinates: move(geometry.coordinates) };
    case "LineString":
      return { type: "LineString", coordinates: geometry.coordinates.map(move) };
    case "Polygon":
      return { type: "Polygon", coordinates: geometry.coordinates.map((r) => r.map(move)) };
    case "MultiPolygon":
      return {
        type: "MultiPolygon",
        coordinates: geometry.coordinates.map((p) => p.map((r) => r.map(move))),
      };
  }
}

/** The vertices a user may drag, of the kinds whose vertices mean something on their own. */
export function handles(kind: Kind, geometry: Geometry): Pt[] {
  if (geometry.type === "Point") return [geometry.coordinates];
  if (geometry.type === "LineString") return geometry.coordinates;
  if (geometry.type === "Polygon" && (kind === "polygon" || kind === "rectangle")) {
    return geometry.coordinates[0]!.slice(0, -1); // the closing vertex is the first one
  }
  return [];
}

/** The geometry with handle `index` (of `handles`) moved to `to`. */
export function moveHandle(kind: Kind, geometry: Geometry, index: number, to: Pt): Geometry {
  if (geometry.type === "Point") return { type: "Point", coordinates: to };
  if (geometry.type === "LineString") {
    return { type: "LineString", coordinates: geometry.coordinates.map((p, i) => (i === index ? to : p)) };
  }
  if (geometry.type !== "Polygon") return geometry;
  const ring = geometry.coordinates[0]!;
  if (kind === "rectangle") {
    // Corners go round: the one opposite the dragged corner stays where it is.
    const opposite = ring[(index + 2) % 4]!;
    return rectangle(opposite, to);
  }
  const moved = ring.slice(0, -1).map((p, i): Pt => (i === index ? to : p));
  return { type: "Polygon", coordinates: [closedRing(moved), ...geometry.coordinates.slice(1)] };
}

// ---- measurements (the server's are the ones kept; these show while drawing) -----------------

export function lengthUm(points: readonly Pt[], mppX: number, mppY: number): number {
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    total += Math.hypot(
      (points[i]![0] - points[i - 1]![0]) * mppX,
      (points[i]![1] - points[i - 1]![1]) * mppY,
    );
  }
  return total;
}

function ringAreaPx(ring: readonly Pt[]): number {
  let twice = 0;
  for (let i = 1; i < ring.length; i++) {
    twice += ring[i - 1]![0] * ring[i]![1] - ring[i]![0] * ring[i - 1]![1];
  }
  return Math.abs(twice) / 2;
}

/** Outer ring minus holes, in mm². */
export function areaMm2(geometry: Geometry, mppX: number, mppY: number): number | null {
  const polygons =
    geometry.type === "Polygon"
      ? [geometry.coordinates]
      : geometry.type === "MultiPolygon"
        ? geometry.coordinates
        : [];
  if (polygons.length === 0) return null;
  let px = 0;
  for (const polygon of polygons) {
    polygon.forEach((ring, i) => (px += (i === 0 ? 1 : -1) * ringAreaPx(ring)));
  }
  return (px * mppX * mppY) / 1e6;
}

// ---- hit testing ---------------------------------------------------------------------------

function insideRing(p: Pt, ring: readonly Pt[]): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i]!;
    const [xj, yj] = ring[j]!;
    if (yi > p[1] !== yj > p[1] && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function segmentDistance(p: Pt, a: Pt, b: Pt): number {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const length2 = dx * dx + dy * dy;
  const t = length2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2));
  return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
}

/** Whether `p` is on the shape: inside a region, or within `tolerance` of a line or point. */
export function hits(geometry: Geometry, p: Pt, tolerance: number): boolean {
  switch (geometry.type) {
    case "Point":
      return Math.hypot(p[0] - geometry.coordinates[0], p[1] - geometry.coordinates[1]) <= tolerance;
    case "LineString":
      return geometry.coordinates.some(
        (a, i) => i > 0 && segmentDistance(p, geometry.coordinates[i - 1]!, a) <= tolerance,
      );
    case "Polygon":
      return geometry.coordinates.filter((ring) => insideRing(p, ring)).length % 2 === 1;
    case "MultiPolygon":
      return geometry.coordinates.some((poly) => poly.filter((ring) => insideRing(p, ring)).length % 2 === 1);
  }
}
