/**
 * The annotations drawn over the slide: an SVG layer inside OpenSeadragon's canvas element.
 *
 * Shapes are kept in level-0 pixel coordinates under one SVG transform (image → screen) that is
 * recomputed every frame (lib/transform.ts, flip included), so they follow zoom, pan,
 * rotation (any angle) and flip; strokes keep their width (non-scaling-stroke). Points, labels
 * and edit handles are placed in screen pixels, so they keep their size.
 *
 * Pointer input: with a drawing tool chosen, a transparent rectangle takes the pointer (the
 * wheel still zooms: it is not stopped); in pan mode OpenSeadragon has the pointer, except on
 * the selected annotation's body and handles, which drag it.
 */

import type OpenSeadragon from "openseadragon";
import type { AnnotationStore } from "../../lib/annotations";
import type { SlideDetail } from "../../lib/api";
import { formatArea, formatMeasuredLength } from "../../lib/format";
import {
  areaMm2,
  bounds,
  closedRing,
  ellipse,
  handles,
  hits,
  isClosed,
  lengthUm,
  moveHandle,
  rectangle,
  rings,
  translate,
  type Draft,
  type Feature,
  type Geometry,
  type Box,
  type Kind,
  type Pt,
} from "../../lib/geometry";
import * as transform from "../../lib/transform";

export type Tool = "pan" | Kind;

const SVG_NS = "http://www.w3.org/2000/svg";
/** Screen pixels within which a click picks a point or a line, or closes a polygon. */
const PICK_PX = 8;
/** Two clicks this close in time and place end a polygon (a double click). */
const DOUBLE_CLICK_MS = 400;
/** A drag shorter than this (screen px) draws nothing: it was a click. */
const MIN_DRAG_PX = 3;
/** Freehand keeps a vertex every this many screen pixels. */
const FREEHAND_STEP_PX = 3;
/** Above this many vertices a polygon shows no vertex handles (it can still be moved). */
const MAX_HANDLES = 300;
/** A caption shows once its shape is this big on screen: a thousand labelled cells seen whole
 * would be a thousand overlapping words (and slow every frame). */
const MIN_CAPTION_PX = 40;
/** Screen elements this far off the view still follow it (a caption's width, roughly). */
const OFF_VIEW_PX = 200;

interface Drawing {
  tool: Kind;
  points: Pt[];
  /** Where the pointer is (the polygon's rubber band, the drag's far corner). */
  pointer: Pt | null;
  pointerId: number | null;
  lastDown: { time: number; screen: Pt } | null;
}

/** A screen-space element (point, caption, handle) at a level-0 point, plus an offset in px. */
interface Anchored {
  element: SVGGraphicsElement;
  at: Pt;
  dx: number;
  dy: number;
  /** Shown only when its shape is at least MIN_CAPTION_PX on screen (0: always). */
  size: number;
  shown: boolean;
  /** Part of the selected annotation (redrawn alone while it is dragged). */
  selection: boolean;
}

interface Drag {
  id: string;
  handle: number | null;
  start: Pt;
  original: Geometry;
  current: Geometry;
  moved: boolean;
  startScreen: Pt;
}

export interface LayerEvents {
  select(id: string | null): void;
  /** A shape was drawn: the caller saves it. */
  drawn(draft: Pick<Draft, "kind" | "geometry">): void;
  /** A shape was moved or reshaped: the caller saves it. */
  edited(id: string, geometry: Geometry): Promise<void>;
  toolChanged(tool: Tool): void;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number> = {}) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  return element;
}

function pathData(geometry: Geometry): string {
  return rings(geometry)
    .map((ring) => {
      const d = ring.map((p, i) => `${i === 0 ? "M" : "L"}${p[0]} ${p[1]}`).join("");
      return isClosed(geometry) ? `${d}Z` : d;
    })
    .join("");
}

export class AnnotationLayer {
  readonly element: SVGSVGElement;
  tool: Tool = "pan";
  selected: string | null = null;
  visible = true;
  private readonly world: SVGGElement;
  private readonly screen: SVGGElement;
  private readonly capture: SVGRectElement;
  private readonly preview: SVGPathElement;
  private readonly previewText: SVGTextElement;
  /** Screen-space elements and the level-0 point each sits at (plus an offset in px). */
  private anchored: Anchored[] = [];
  /** Each drawn region or line, with its level-0 box: those off the view are not painted. */
  private shapes: { group: SVGGElement; box: Box; shown: boolean; selection: boolean }[] = [];
  private selectionElements: Element[] = [];
  private matrix: transform.Affine = [1, 0, 0, 1, 0, 0];
  private drawing: Drawing | null = null;
  private drag: Drag | null = null;
  private readonly mppX: number | null;
  private readonly mppY: number | null;

  constructor(
    private readonly viewer: OpenSeadragon.Viewer,
    private readonly store: AnnotationStore,
    slide: SlideDetail,
    private readonly events: LayerEvents,
  ) {
    this.mppX = slide.mpp_x ?? slide.mpp;
    this.mppY = slide.mpp_y ?? slide.mpp;
    this.element = svg("svg", { class: "annotation-layer", "data-testid": "annotation-layer" });
    this.capture = svg("rect", { class: "capture", x: 0, y: 0, width: "100%", height: "100%" });
    this.world = svg("g", { class: "world" });
    this.screen = svg("g", { class: "screen" });
    this.preview = svg("path", { class: "preview" });
    this.previewText = svg("text", { class: "preview-text" });
    this.element.append(this.capture, this.world, this.screen);
    viewer.canvas.append(this.element);

    viewer.addHandler("update-viewport", () => this.place());
    viewer.addHandler("open", () => this.render());
    viewer.addHandler("canvas-click", (event) => {
      if (!event.quick || this.tool !== "pan" || !this.visible) return;
      const original = event.originalEvent as MouseEvent;
      this.events.select(this.pick(this.clientToImage(original.clientX, original.clientY)));
    });
    this.element.addEventListener("pointerdown", (e) => this.pointerDown(e));
    this.element.addEventListener("pointermove", (e) => this.pointerMove(e));
    this.element.addEventListener("pointerup", (e) => void this.pointerUp(e));
    this.element.addEventListener("pointercancel", () => this.cancel());
    for (const type of ["click", "dblclick", "contextmenu"] as const) {
      // OpenSeadragon would zoom on a double click that ends a polygon.
      this.element.addEventListener(type, (e) => {
        if (this.tool !== "pan" || this.drag) e.stopPropagation();
      });
    }
    this.setTool("pan");
  }

  // ---- coordinates -------------------------------------------------------------------------

  /** Screen position (px in the viewer element) of a level-0 point, as drawn now. */
  imageToScreen(p: Pt): Pt {
    return transform.imageToScreen(this.viewer, p) ?? [0, 0];
  }

  /** Level-0 point under a position in the viewer element. */
  screenToImage(s: Pt): Pt {
    return transform.screenToImage(this.viewer, s) ?? [0, 0];
  }

  private clientToScreen(clientX: number, clientY: number): Pt {
    return transform.clientToScreen(this.viewer, clientX, clientY);
  }

  private clientToImage(clientX: number, clientY: number): Pt {
    return this.screenToImage(this.clientToScreen(clientX, clientY));
  }

  /** Screen pixels per level-0 pixel now. */
  private scale(): number {
    return transform.matrixScale(this.matrix) || 1;
  }

  // ---- drawing the layer ------------------------------------------------------------------

  /** Rebuilds every shape (after a change of annotations, selection or visibility). */
  render(): void {
    this.world.replaceChildren();
    this.screen.replaceChildren();
    this.anchored = [];
    this.shapes = [];
    this.selectionElements = [];
    this.element.style.display = this.visible ? "" : "none";
    for (const feature of this.store.features) {
      if (feature.id !== this.selected) this.renderFeature(feature, false);
    }
    this.renderSelection();
  }

  /** Redraws the selected annotation alone, on top: what a drag changes at every move. */
  private renderSelection(): void {
    for (const element of this.selectionElements) element.remove();
    this.selectionElements = [];
    this.anchored = this.anchored.filter((a) => !a.selection);
    this.shapes = this.shapes.filter((s) => !s.selection);
    const selected = this.selected ? this.store.get(this.selected) : undefined;
    if (selected) {
      this.renderFeature(selected, true);
      this.renderHandles(selected);
    }
    this.world.append(this.preview);
    this.screen.append(this.previewText);
    this.renderPreview();
    this.place();
  }

  private renderFeature(feature: Feature, isSelected: boolean): void {
    const { kind, colour } = feature.properties;
    const geometry = this.drag?.id === feature.id ? this.drag.current : feature.geometry;
    const group = svg("g", {
      class: `annotation kind-${kind}${isSelected ? " selected" : ""}`,
      "data-id": feature.id,
    });
    group.style.setProperty("--colour", colour);
    this.world.append(group);
    if (isSelected) this.selectionElements.push(group);
    if (geometry.type === "Point") {
      const dot = svg("circle", { class: "point", r: isSelected ? 7 : 5, "data-id": feature.id });
      dot.style.setProperty("--colour", colour);
      if (isSelected) dot.setAttribute("data-body", "");
      this.screen.append(dot);
      if (isSelected) this.selectionElements.push(dot);
      const at = geometry.coordinates;
      this.anchored.push({ element: dot, at, dx: 0, dy: 0, size: 0, shown: true, selection: isSelected });
    } else {
      const path = svg("path", { class: "shape", d: pathData(geometry) });
      if (isSelected) {
        const hit = svg("path", { class: "hit", d: pathData(geometry), "data-body": "" });
        group.append(path, hit);
      } else {
        group.append(path);
      }
      this.shapes.push({ group, box: bounds(geometry), shown: true, selection: isSelected });
    }
    const text = this.caption(feature, geometry);
    if (text) {
      const caption = svg("text", { class: "caption", "data-id": feature.id });
      caption.textContent = text; // user text: never parsed as markup
      caption.style.setProperty("--colour", colour);
      this.screen.append(caption);
      if (isSelected) this.selectionElements.push(caption);
      const box = bounds(geometry);
      const at: Pt =
        geometry.type === "Point"
          ? geometry.coordinates
          : geometry.type === "LineString"
            ? geometry.coordinates[geometry.coordinates.length - 1]!
            : [box.x + box.width / 2, box.y + box.height / 2];
      this.anchored.push({
        element: caption,
        at,
        dx: geometry.type === "Point" ? 10 : 8,
        dy: -8,
        size: isSelected || geometry.type === "Point" ? 0 : Math.max(box.width, box.height),
        shown: true,
        selection: isSelected,
      });
    }
  }

  private caption(feature: Feature, geometry: Geometry): string {
    const { label, measurements } = feature.properties;
    if (geometry.type !== "LineString") return label;
    const um =
      this.drag?.id === feature.id && this.mppX !== null && this.mppY !== null
        ? lengthUm(geometry.coordinates, this.mppX, this.mppY)
        : measurements?.length_um;
    const length = um === undefined ? "" : formatMeasuredLength(um);
    return [label, length].filter(Boolean).join(" · ");
  }

  private renderHandles(feature: Feature): void {
    const geometry = this.drag?.id === feature.id ? this.drag.current : feature.geometry;
    const points = handles(feature.properties.kind, geometry);
    if (points.length > MAX_HANDLES || geometry.type === "Point") return;
    points.forEach((p, index) => {
      const handle = svg("circle", { class: "handle", r: 6, "data-handle": index });
      handle.style.setProperty("--colour", feature.properties.colour);
      this.screen.append(handle);
      this.selectionElements.push(handle);
      this.anchored.push({ element: handle, at: p, dx: 0, dy: 0, size: 0, shown: true, selection: true });
    });
  }

  private renderPreview(): void {
    const d = this.drawing;
    const geometry = d ? this.previewGeometry(d) : null;
    this.preview.setAttribute("d", geometry ? pathData(geometry) : "");
    this.preview.classList.toggle("open", geometry?.type === "LineString");
    this.previewText.textContent = geometry ? this.measureText(geometry) : "";
  }

  private measureText(geometry: Geometry): string {
    if (this.mppX === null || this.mppY === null) return "";
    if (geometry.type === "LineString") {
      if (this.drawing?.tool === "polygon") return "";
      return formatMeasuredLength(lengthUm(geometry.coordinates, this.mppX, this.mppY));
    }
    const area = areaMm2(geometry, this.mppX, this.mppY);
    return area === null ? "" : formatArea(area);
  }

  /** The shape being drawn, as it would be saved if the pointer stopped here. */
  private previewGeometry(d: Drawing): Geometry | null {
    const first = d.points[0];
    if (!first) return null;
    const to = d.pointer ?? d.points[d.points.length - 1]!;
    switch (d.tool) {
      case "point":
        return null;
      case "line":
        return { type: "LineString", coordinates: [first, to] };
      case "rectangle":
        return rectangle(first, to);
      case "ellipse":
        return ellipse(first, to);
      case "freehand":
        return d.points.length < 3
          ? { type: "LineString", coordinates: d.points }
          : { type: "Polygon", coordinates: [closedRing(d.points)] };
      case "polygon":
        return { type: "LineString", coordinates: d.pointer ? [...d.points, d.pointer] : d.points };
    }
  }

  /** Follows the view: called every frame OpenSeadragon draws. */
  private place(): void {
    const matrix = transform.imageToScreenMatrix(this.viewer);
    if (!matrix) return;
    this.matrix = matrix;
    this.world.setAttribute("transform", `matrix(${this.matrix.join(" ")})`);
    const [a, b, c, d, e, f] = this.matrix;
    const size = this.viewer.viewport.getContainerSize();
    const view = this.viewBox(size.x, size.y);
    for (const shape of this.shapes) {
      const box = shape.box;
      const shown =
        box.x <= view.x + view.width &&
        box.x + box.width >= view.x &&
        box.y <= view.y + view.height &&
        box.y + box.height >= view.y;
      if (shown !== shape.shown) shape.group.style.display = shown ? "" : "none";
      shape.shown = shown;
    }
    const scale = this.scale();
    for (const item of this.anchored) {
      const { element, at, dx, dy } = item;
      const x = a * at[0] + c * at[1] + e + dx;
      const y = b * at[0] + d * at[1] + f + dy;
      const shown =
        (item.size === 0 || item.size * scale >= MIN_CAPTION_PX) &&
        x > -OFF_VIEW_PX &&
        y > -OFF_VIEW_PX &&
        x < size.x + OFF_VIEW_PX &&
        y < size.y + OFF_VIEW_PX;
      if (shown !== item.shown) element.style.display = shown ? "" : "none";
      item.shown = shown;
      if (!shown) continue;
      if (element instanceof SVGCircleElement) {
        element.setAttribute("cx", x.toFixed(1));
        element.setAttribute("cy", y.toFixed(1));
      } else {
        element.setAttribute("x", x.toFixed(1));
        element.setAttribute("y", y.toFixed(1));
      }
    }
    if (this.drawing?.pointer) {
      const [x, y] = this.imageToScreen(this.drawing.pointer);
      this.previewText.setAttribute("x", (x + 14).toFixed(1));
      this.previewText.setAttribute("y", (y + 20).toFixed(1));
    }
  }

  /** The level-0 box the view (with a margin) covers, whatever its rotation. */
  private viewBox(width: number, height: number): Box {
    const [x0, y0, x1, y1] = transform.screenBoxToImage(
      this.matrix,
      -OFF_VIEW_PX,
      -OFF_VIEW_PX,
      width + OFF_VIEW_PX,
      height + OFF_VIEW_PX,
    );
    return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
  }

  // ---- tools and selection ------------------------------------------------------------------

  setTool(tool: Tool): void {
    this.drawing = null;
    this.tool = tool;
    this.element.classList.toggle("drawing", tool !== "pan");
    this.element.dataset.tool = tool;
    this.renderPreview();
    this.events.toolChanged(tool);
  }

  setVisible(visible: boolean): void {
    this.visible = visible;
    if (!visible && this.tool !== "pan") this.setTool("pan");
    this.render();
  }

  /** The annotation at a level-0 point: points and lines first, then the smallest region. */
  pick(p: Pt): string | null {
    const tolerance = PICK_PX / this.scale();
    const found = this.store.features.filter((f) => hits(f.geometry, p, tolerance));
    const size = (f: Feature): number => {
      if (!isClosed(f.geometry)) return -1;
      const b = bounds(f.geometry);
      return b.width * b.height;
    };
    found.sort((a, b) => size(a) - size(b));
    return found[0]?.id ?? null;
  }

  /** Fits the view to an annotation (with a margin; a point gets a ~300 µm-wide view). */
  zoomTo(id: string): void {
    const feature = this.store.get(id);
    if (!feature) return;
    const box = bounds(feature.geometry);
    const pad = Math.max(box.width, box.height) * 0.3 + 150;
    const rect = transform.imageToViewportRect(
      this.viewer,
      box.x - pad,
      box.y - pad,
      box.width + 2 * pad,
      box.height + 2 * pad,
    );
    if (rect) this.viewer.viewport.fitBounds(rect);
  }

  cancel(): void {
    if (this.drawing) {
      this.drawing = null;
      this.renderPreview();
    }
    if (this.drag) {
      this.drag = null;
      this.render();
    }
  }

  /** Ends the polygon being drawn (Enter, double click, or a click on its first vertex). */
  finishPolygon(): void {
    const d = this.drawing;
    if (!d || d.tool !== "polygon") return;
    this.drawing = null;
    this.renderPreview();
    const distinct = d.points.filter(
      (p, i) => i === 0 || p[0] !== d.points[i - 1]![0] || p[1] !== d.points[i - 1]![1],
    );
    if (distinct.length >= 3)
      this.events.drawn({
        kind: "polygon",
        geometry: { type: "Polygon", coordinates: [closedRing(distinct)] },
      });
  }

  /** Removes the polygon's last vertex while it is drawn; false when there is none. */
  removeLastVertex(): boolean {
    if (this.drawing?.tool !== "polygon" || this.drawing.points.length === 0) return false;
    this.drawing.points.pop();
    if (this.drawing.points.length === 0) this.drawing = null;
    this.renderPreview();
    this.place();
    return true;
  }

  get isDrawing(): boolean {
    return this.drawing !== null;
  }

  // ---- pointer ------------------------------------------------------------------------------

  private pointerDown(e: PointerEvent): void {
    if (e.button !== 0) return;
    const screen = this.clientToScreen(e.clientX, e.clientY);
    const at = this.screenToImage(screen);
    if (this.tool !== "pan") {
      e.stopPropagation();
      e.preventDefault();
      this.drawDown(this.tool, at, screen, e.pointerId);
      return;
    }
    const target = e.target as Element;
    const handle = target.getAttribute("data-handle");
    if (!this.selected || (handle === null && !target.hasAttribute("data-body"))) return;
    const feature = this.store.get(this.selected);
    if (!feature) return;
    e.stopPropagation();
    e.preventDefault();
    this.element.setPointerCapture(e.pointerId);
    this.drag = {
      id: feature.id,
      handle: handle === null ? null : Number(handle),
      start: at,
      original: feature.geometry,
      current: feature.geometry,
      moved: false,
      startScreen: screen,
    };
  }

  private drawDown(tool: Kind, at: Pt, screen: Pt, pointerId: number): void {
    if (tool === "point") {
      this.events.drawn({ kind: "point", geometry: { type: "Point", coordinates: at } });
      return;
    }
    if (tool === "polygon") {
      const d = (this.drawing ??= { tool, points: [], pointer: null, pointerId: null, lastDown: null });
      const now = performance.now();
      const first = d.points[0];
      const closesOnFirst =
        first && d.points.length >= 3 && this.screenDistance(this.imageToScreen(first), screen) <= PICK_PX;
      const isDouble =
        d.lastDown !== null &&
        now - d.lastDown.time < DOUBLE_CLICK_MS &&
        this.screenDistance(d.lastDown.screen, screen) <= PICK_PX;
      if (closesOnFirst || isDouble) {
        this.finishPolygon();
        return;
      }
      d.points.push(at);
      d.pointer = at;
      d.lastDown = { time: now, screen };
      this.renderPreview();
      this.place();
      return;
    }
    this.element.setPointerCapture(pointerId);
    this.drawing = {
      tool,
      points: [at],
      pointer: at,
      pointerId,
      lastDown: { time: performance.now(), screen },
    };
    this.renderPreview();
    this.place();
  }

  private screenDistance(a: Pt, b: Pt): number {
    return Math.hypot(a[0] - b[0], a[1] - b[1]);
  }

  private pointerMove(e: PointerEvent): void {
    const d = this.drawing;
    const drag = this.drag;
    if (!d && !drag) return;
    e.stopPropagation();
    const screen = this.clientToScreen(e.clientX, e.clientY);
    const at = this.screenToImage(screen);
    if (d) {
      if (d.tool === "freehand" && d.pointerId !== null) {
        const last = d.points[d.points.length - 1]!;
        if (this.screenDistance(this.imageToScreen(last), screen) >= FREEHAND_STEP_PX) d.points.push(at);
      }
      d.pointer = at;
      this.renderPreview();
      this.place();
      return;
    }
    if (!drag) return;
    const feature = this.store.get(drag.id);
    if (!feature) return;
    if (!drag.moved && this.screenDistance(drag.startScreen, screen) < MIN_DRAG_PX) return;
    drag.moved = true;
    drag.current =
      drag.handle === null
        ? translate(drag.original, at[0] - drag.start[0], at[1] - drag.start[1])
        : moveHandle(feature.properties.kind, drag.original, drag.handle, at);
    this.renderSelection();
  }

  private async pointerUp(e: PointerEvent): Promise<void> {
    const d = this.drawing;
    const drag = this.drag;
    if (d && d.tool !== "polygon" && d.pointerId === e.pointerId) {
      e.stopPropagation();
      this.drawing = null;
      this.renderPreview();
      const screen = this.clientToScreen(e.clientX, e.clientY);
      const start = d.lastDown?.screen ?? screen;
      d.pointer = this.screenToImage(screen);
      if (d.tool === "freehand") d.points.push(d.pointer);
      if (this.screenDistance(start, screen) < MIN_DRAG_PX && d.tool !== "freehand") return;
      const geometry = this.previewGeometry(d);
      if (!geometry || (d.tool === "freehand" && geometry.type !== "Polygon")) return;
      this.events.drawn({ kind: d.tool, geometry });
      return;
    }
    if (!drag) return;
    e.stopPropagation();
    if (!drag.moved) {
      this.drag = null;
      return;
    }
    try {
      await this.events.edited(drag.id, drag.current);
    } finally {
      this.drag = null;
      this.render();
    }
  }
}
