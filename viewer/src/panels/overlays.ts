/**
 * Overlays on the slide page: layers computed over a slide (AI heatmaps, detections) and
 * the panel that shows, hides and fades them, with their legends.
 *
 * A heatmap is one more OpenSeadragon tiled image, laid over the slide (the hub serves it
 * at the slide's size). Features, tens of thousands of them, are drawn on a canvas per layer
 * above OpenSeadragon's, culled to the view and redrawn on every viewport change: SVG or HTML
 * nodes would cost one DOM node each. A layer's opacity is its canvas's CSS opacity: the
 * browser fades the layer as a whole (overlapping shapes do not darken), without a redraw. Tiny features (a cell when the whole slide is in
 * view) become dots, so a zoomed-out view costs a rectangle per feature, not a polygon.
 *
 * A heatmap's threshold (percent of its legend's range: below it, clear) is the hub's to
 * apply: its tiles are asked for with `?threshold=N` (exchange/web/overlays.py). A new
 * threshold is a new tiled image (OpenSeadragon keeps a tile's address for the tile's life:
 * resetting the old image would ask for the same addresses again), laid just above the old
 * one, which is removed once the new one has every tile of the view: no blank frame between.
 */

import OpenSeadragon from "openseadragon";
import {
  getOverlayFeatures,
  listOverlays,
  type AiModel,
  type ClassesLegend,
  type OverlayFeature,
  type OverlayInfo,
  type RampLegend,
  type SlideDetail,
} from "../lib/api";
import { h } from "../lib/dom";
import { errorText } from "../lib/errors";
import { rings } from "../lib/geometry";
import { t } from "../lib/strings";
import { intendedUseBadge } from "./intended-use";
import {
  imageToScreenMatrix,
  matrixScale,
  screenBoxToImage,
  slideImage,
  type Affine,
} from "../lib/transform";

/** Dispatched on `document` by the `o` key (navigation.ts). */
export const TOGGLE_OVERLAYS_EVENT = "iain:toggle-overlays";

const DEFAULT_OPACITY: Record<OverlayInfo["kind"], number> = { heatmap: 0.6, features: 1 };
/** The threshold slider asks for new tiles once it has stood still this long (ms). */
const THRESHOLD_DEBOUNCE_MS = 150;
/** A new threshold's image replaces the old one when fully loaded, or after this (ms). */
const SWAP_AFTER_MS = 4000;
/** Features smaller than this on screen (CSS px) are drawn as a dot of DOT px. */
const DOT_BELOW = 4;
const DOT = 2;
const POINT_RADIUS = 4;
const FILL_ALPHA = 0.22;
/** Below this size on screen (CSS px), a polygon keeps about 6 of its vertices... */
const SIMPLIFY_BELOW = 12;
/** ...and below this one it is outlined only: filling thousands of small shapes is slow. */
const FILL_ABOVE = 24;
/**
 * Features are drawn over the view plus this fraction of its size on each side; while the
 * view only moves (no zoom, no turn) by less than that, the drawn canvas is moved instead
 * (a CSS transform: no drawing at all), so panning costs nothing per frame.
 */
const PAN_MARGIN = 0.25;

export interface OverlayLayer {
  readonly info: OverlayInfo;
  visible: boolean;
  opacity: number;
  /** A heatmap's: percent (0–100) of its legend's range below which it is clear; 0 none. */
  threshold: number;
}

export interface Overlays {
  readonly layers: OverlayLayer[];
  /** Resolves once the list and every feature set are loaded (or failed). */
  readonly ready: Promise<void>;
  /**
   * Lists the slide's overlays again and adds those not shown yet (a job's new results):
   * those in `show` are switched on, any other new one follows the default (a model's first
   * result on, its others off). Resolves to the layers it added.
   */
  refresh(show?: readonly string[]): Promise<OverlayLayer[]>;
  setVisible(id: string, visible: boolean): void;
  setOpacity(id: string, opacity: number): void;
  /** A heatmap's threshold, percent of its legend's range (its tiles are asked for again). */
  setThreshold(id: string, percent: number): void;
  /**
   * The registered models: a heatmap of a model whose manifest has a threshold for the
   * class it shows starts at that threshold (unless the user has moved its slider).
   */
  useModels(models: readonly AiModel[]): void;
  /** Hides every layer, or shows again those that were shown. */
  toggleAll(): void;
  /** The last features draw: how many features it drew and how long it took. */
  readonly stats: { drawn: number; drawMs: number; draws: number };
}

/** A feature set packed for drawing: flat coordinates, bounding boxes, per-colour buckets. */
interface PackedFeatures {
  /** x0, y0, x1, y1 per feature, level-0 px. */
  boxes: Float64Array;
  /** Every position, x then y. */
  coords: Float64Array;
  /** Per feature: its parts (rings, lines, points) as [start, end) into coords/2. */
  parts: Uint32Array[];
  /** Per feature: 0 polygon, 1 line, 2 point(s). */
  shapes: Uint8Array;
  /** Colour → indices of its features. */
  buckets: Map<string, Uint32Array>;
}

interface FeatureLayer extends OverlayLayer {
  packed: PackedFeatures | null;
  canvas: HTMLCanvasElement;
  /** What the canvas holds: drawn for this transform and viewer size, with this many features. */
  drawnAt: { m: Affine; width: number; height: number; drawn: number } | null;
}

interface HeatmapLayer extends OverlayLayer {
  /** The image shown; `next`, the image of a new threshold while its tiles load. */
  item: OpenSeadragon.TiledImage | null;
  next: OpenSeadragon.TiledImage | null;
  /** Counts the images asked for: an answer for an older one is dropped. */
  generation: number;
  /** The user moved the threshold slider: a model's default no longer applies. */
  thresholdSet: boolean;
}

export function attachOverlays(
  viewer: OpenSeadragon.Viewer,
  slide: SlideDetail,
  main: HTMLElement,
): Overlays {
  const heatmaps: HeatmapLayer[] = [];
  const featureLayers: FeatureLayer[] = [];
  const layers: OverlayLayer[] = [];
  const stats = { drawn: 0, drawMs: 0, draws: 0 };
  let hiddenByKey: OverlayLayer[] = [];

  const draw = (): void => {
    const started = performance.now();
    stats.drawn = 0;
    for (const layer of featureLayers) stats.drawn += drawFeatures(viewer, layer);
    stats.drawMs = performance.now() - started;
    stats.draws += 1;
  };
  viewer.addHandler("update-viewport", draw);
  viewer.addHandler("resize", draw);

  /**
   * Adds the layer's image at its threshold: the first one, or one replacing the image
   * shown (just above it, so that the old one shows until the new one has its tiles).
   */
  const addHeatmap = (layer: HeatmapLayer): void => {
    const slideItem = slideImage(viewer);
    if (!slideItem || !layer.info.dzi_url) return;
    const generation = ++layer.generation;
    dropNext(layer);
    const bounds = slideItem.getBounds();
    const shown = layer.item ? viewer.world.getIndexOfItem(layer.item) : -1;
    viewer.addTiledImage({
      // DeepZoom's tile source carries the descriptor's query to every tile's address.
      tileSource: heatmapDescriptor(layer.info.dzi_url, layer.threshold),
      x: bounds.x,
      y: bounds.y,
      width: bounds.width,
      opacity: layer.visible ? layer.opacity : 0,
      ...(shown >= 0 ? { index: shown + 1 } : {}),
      success: (event: unknown) => {
        const item = (event as { item: OpenSeadragon.TiledImage }).item;
        if (generation !== layer.generation) {
          viewer.world.removeItem(item); // a later threshold, or the world reopened, won
          return;
        }
        item.setOpacity(layer.visible ? layer.opacity : 0);
        if (!layer.item || viewer.world.getIndexOfItem(layer.item) < 0) {
          layer.item = item;
          return;
        }
        layer.next = item;
        const swap = (): void => {
          if (layer.next !== item) return;
          window.clearTimeout(timer);
          const old = layer.item;
          layer.item = item;
          layer.next = null;
          if (old) viewer.world.removeItem(old);
        };
        // A hidden image loads no tile (OpenSeadragon's `preload` is off): swap at once.
        const timer = window.setTimeout(swap, layer.visible ? SWAP_AFTER_MS : 0);
        item.whenFullyLoaded(swap);
      },
    });
  };
  const dropNext = (layer: HeatmapLayer): void => {
    if (layer.next) viewer.world.removeItem(layer.next);
    layer.next = null;
  };
  // Opening another tile source (the DeepZoom / IIIF switch) empties the world: add again.
  viewer.addHandler("open", () => {
    for (const layer of heatmaps) {
      layer.item = null;
      layer.next = null;
      addHeatmap(layer);
    }
  });

  /** Thresholds (percent) from the models' manifests, by model id. */
  const modelThresholds = new Map<string, number>();
  const defaultThreshold = (info: OverlayInfo): number => {
    const id = info.info?.model?.id;
    return id ? (modelThresholds.get(id) ?? 0) : 0;
  };

  const apply = (layer: OverlayLayer): void => {
    if (layer.info.kind === "heatmap") {
      const heatmap = layer as HeatmapLayer;
      for (const item of [heatmap.item, heatmap.next]) item?.setOpacity(layer.visible ? layer.opacity : 0);
    } else {
      const canvas = (layer as FeatureLayer).canvas;
      canvas.style.opacity = String(layer.opacity);
      if (canvas.hidden === layer.visible) {
        canvas.hidden = !layer.visible;
        draw();
      }
    }
    const row = panel.querySelector<HTMLElement>(`.overlay-layer[data-layer-id="${layer.info.id}"]`);
    if (row) {
      row.classList.toggle("hidden-layer", !layer.visible);
      const box = row.querySelector<HTMLInputElement>("input[type=checkbox]");
      if (box) box.checked = layer.visible;
      const slider = row.querySelector<HTMLInputElement>("input.overlay-opacity");
      if (slider) slider.value = String(Math.round(layer.opacity * 100));
      const threshold = row.querySelector<HTMLInputElement>("input.overlay-threshold");
      if (threshold && Number(threshold.value) !== layer.threshold) {
        threshold.value = String(layer.threshold);
        showThreshold(row, layer);
      }
    }
  };
  const find = (id: string): OverlayLayer | undefined => layers.find((l) => l.info.id === id);

  const panel = h("section", {
    class: "overlays-panel",
    "aria-label": t.overlays.panelLabel,
    "data-testid": "overlays-panel",
    hidden: true,
  });

  /** A job's first result (its heatmap) is shown; the others (its tissue mask) start off.
   * The hub lists overlays in the order they were made: a job's first result first. */
  const jobsSeen = new Set<string>();
  const shownByDefault = (info: OverlayInfo): boolean => {
    if (!info.job_id) return true;
    if (jobsSeen.has(info.job_id)) return false;
    jobsSeen.add(info.job_id);
    return true;
  };

  const addLayer = (info: OverlayInfo, visible: boolean): OverlayLayer | null => {
    const base = { info, visible, opacity: DEFAULT_OPACITY[info.kind] ?? 1, threshold: 0 };
    if (info.kind === "heatmap") {
      const layer: HeatmapLayer = {
        ...base,
        threshold: defaultThreshold(info),
        item: null,
        next: null,
        generation: 0,
        thresholdSet: false,
      };
      heatmaps.push(layer);
      layers.push(layer);
      if (viewer.world.getItemCount() > 0) addHeatmap(layer);
      return layer;
    }
    if (info.kind === "features") {
      const canvas = h("canvas", { class: "overlay-features", "data-overlay-id": info.id });
      canvas.hidden = !visible;
      // The canvas is larger than the view (see PAN_MARGIN): a clipping box holds it.
      const clip = h("div", { class: "overlay-features-clip" }, canvas);
      // Above the slide, below the annotations' layer.
      (featureLayers.at(-1)?.canvas.parentElement ?? viewer.drawer.canvas).after(clip);
      const layer: FeatureLayer = { ...base, packed: null, canvas, drawnAt: null };
      canvas.style.opacity = String(layer.opacity);
      featureLayers.push(layer);
      layers.push(layer);
      return layer;
    }
    return null;
  };

  const showPanel = (): void => {
    buildPanel(panel, layers, overlays);
    if (!panel.isConnected) main.append(panel);
    panel.hidden = false;
  };

  const loadFeatures = async (added: OverlayLayer[]): Promise<void> => {
    await Promise.all(
      added
        .filter((layer): layer is FeatureLayer => layer.info.kind === "features")
        .map(async (layer) => {
          const row = panel.querySelector<HTMLElement>(
            `.overlay-layer[data-layer-id="${layer.info.id}"] .overlay-status`,
          );
          try {
            const features = await getOverlayFeatures(layer.info.features_url ?? "");
            layer.packed = pack(features, layer.info.legend as ClassesLegend);
            if (row) row.textContent = "";
          } catch (error) {
            if (row) row.textContent = t.overlays.failed(errorText(error));
          }
        }),
    );
    draw();
  };

  const load = async (): Promise<void> => {
    let infos: OverlayInfo[];
    try {
      infos = await listOverlays(slide.id);
    } catch {
      return; // no layers panel: the slide itself still shows
    }
    if (infos.length === 0) return;
    const added = infos.flatMap((info) => addLayer(info, shownByDefault(info)) ?? []);
    showPanel();
    await loadFeatures(added);
  };

  const refresh = async (show?: readonly string[]): Promise<OverlayLayer[]> => {
    const infos = await listOverlays(slide.id);
    const known = new Set(layers.map((l) => l.info.id));
    const added: OverlayLayer[] = [];
    for (const info of infos) {
      if (known.has(info.id)) continue;
      const byDefault = shownByDefault(info);
      const layer = addLayer(info, show ? show.includes(info.id) : byDefault);
      if (layer) added.push(layer);
    }
    if (added.length === 0) return added;
    panel.classList.remove("collapsed"); // a new result: its row in view
    showPanel();
    await loadFeatures(added);
    return added;
  };
  const ready = load();
  // One list at a time: a refresh waits for the first load, and for the refresh before it.
  let queue: Promise<unknown> = ready;

  const overlays: Overlays = {
    layers,
    stats,
    ready,
    refresh(show) {
      const next = queue.then(() => refresh(show));
      queue = next.catch(() => undefined);
      return next;
    },
    setVisible(id, visible) {
      const layer = find(id);
      if (!layer) return;
      layer.visible = visible;
      hiddenByKey = [];
      apply(layer);
    },
    setOpacity(id, opacity) {
      const layer = find(id);
      if (!layer) return;
      layer.opacity = Math.min(1, Math.max(0, opacity));
      apply(layer);
    },
    setThreshold(id, percent) {
      const layer = heatmaps.find((l) => l.info.id === id);
      if (!layer) return;
      layer.thresholdSet = true;
      setThreshold(layer, percent);
    },
    useModels(models) {
      modelThresholds.clear();
      for (const model of models) {
        const { thresholds, heatmap_class: shown, classes } = model.manifest;
        const name = shown ?? classes?.at(-1)?.name;
        const value = name && thresholds ? thresholds[name] : undefined;
        if (typeof value === "number" && value > 0) modelThresholds.set(model.id, value * 100);
      }
      for (const layer of heatmaps) {
        if (!layer.thresholdSet) setThreshold(layer, defaultThreshold(layer.info));
      }
    },
    toggleAll() {
      const shown = layers.filter((l) => l.visible);
      const again = shown.length > 0 ? [] : hiddenByKey.length > 0 ? hiddenByKey : layers;
      for (const layer of shown) layer.visible = false;
      for (const layer of again) layer.visible = true;
      hiddenByKey = shown;
      for (const layer of layers) apply(layer);
    },
  };
  document.addEventListener(TOGGLE_OVERLAYS_EVENT, () => overlays.toggleAll());

  const setThreshold = (layer: HeatmapLayer, percent: number): void => {
    const value = Math.min(100, Math.max(0, Math.round(percent)));
    if (value === layer.threshold) return;
    layer.threshold = value;
    apply(layer);
    if (viewer.world.getItemCount() > 0) addHeatmap(layer);
  };

  return overlays;
}

/** The heatmap's DeepZoom descriptor, with the threshold its tiles are to be cut at. */
function heatmapDescriptor(dziUrl: string, threshold: number): string {
  if (threshold <= 0) return dziUrl;
  return `${dziUrl}${dziUrl.includes("?") ? "&" : "?"}threshold=${threshold}`;
}

// ---- the panel ------------------------------------------------------------------------------

function buildPanel(panel: HTMLElement, layers: OverlayLayer[], overlays: Overlays): void {
  const collapse = h("button", { type: "button", class: "overlays-collapse", "aria-expanded": "true" }, "−");
  collapse.title = t.overlays.collapse;
  collapse.addEventListener("click", () => {
    const collapsed = !panel.classList.contains("collapsed");
    panel.classList.toggle("collapsed", collapsed);
    collapse.setAttribute("aria-expanded", String(!collapsed));
    collapse.textContent = collapsed ? "+" : "−";
    collapse.title = collapsed ? t.overlays.expand : t.overlays.collapse;
  });
  const list = h("ul", { class: "overlays-list" });
  for (const layer of layers) list.append(layerRow(layer, overlays));
  panel.replaceChildren(
    h("header", { class: "overlays-header" }, h("h2", {}, t.overlays.panel), h("kbd", {}, "o"), collapse),
    list,
  );
}

/**
 * A layer's row: its name and switch, opacity and legend (the `.overlay-item`), then, for a
 * heatmap, its threshold under the ramp it cuts, and which model made it.
 */
function layerRow(layer: OverlayLayer, overlays: Overlays): HTMLElement {
  const { info } = layer;
  const box = h("input", { type: "checkbox", "aria-label": t.overlays.show(info.name) });
  box.checked = layer.visible;
  box.addEventListener("change", () => overlays.setVisible(info.id, box.checked));
  const slider = h("input", {
    type: "range",
    min: 0,
    max: 100,
    step: 1,
    value: Math.round(layer.opacity * 100),
    "aria-label": t.overlays.opacity(info.name),
    title: t.overlays.opacityLabel,
    class: "overlay-opacity",
  });
  slider.addEventListener("input", () => overlays.setOpacity(info.id, Number(slider.value) / 100));
  const legend = info.legend.type === "ramp" ? rampLegend(info.legend) : classesLegend(info.legend);
  const row = h(
    "li",
    { class: layer.visible ? "overlay-layer" : "overlay-layer hidden-layer", "data-layer-id": info.id },
    h(
      "div",
      { class: `overlay-item kind-${info.kind}`, "data-overlay-id": info.id },
      h(
        "label",
        { class: "overlay-name" },
        box,
        h("span", { title: info.name }, info.name),
        h("span", { class: "overlay-kind" }, t.overlays.kinds[info.kind] ?? info.kind),
      ),
      slider,
      legend,
    ),
    info.kind === "heatmap" ? thresholdControl(layer, overlays) : null,
    modelLine(info),
    h("p", { class: "overlay-status", role: "status" }, info.kind === "features" ? t.overlays.loading : ""),
  );
  showThreshold(row, layer);
  return row;
}

/** The heatmap's threshold: a slider under its ramp, with its value. The tiles are asked
 * for again once the slider stands still (THRESHOLD_DEBOUNCE_MS): dragging it or holding an
 * arrow key asks for the last value only. */
function thresholdControl(layer: OverlayLayer, overlays: Overlays): HTMLElement {
  const { info } = layer;
  const slider = h("input", {
    type: "range",
    min: 0,
    max: 100,
    step: 1,
    value: layer.threshold,
    "aria-label": t.overlays.threshold(info.name),
    class: "overlay-threshold",
  });
  const value = h("output", { class: "overlay-threshold-value", "aria-live": "polite" });
  const control = h(
    "div",
    { class: "overlay-threshold-row", title: t.overlays.thresholdHint },
    h("span", { class: "overlay-threshold-label" }, t.overlays.thresholdLabel),
    value,
    slider,
  );
  let timer: number | null = null;
  const commit = (): void => {
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
    overlays.setThreshold(info.id, Number(slider.value));
  };
  slider.addEventListener("input", () => {
    showThreshold(control, { ...layer, threshold: Number(slider.value) });
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(commit, THRESHOLD_DEBOUNCE_MS);
  });
  return control;
}

/** "≥ 50 %", and the value it stands for in the legend's terms in its tooltip. */
function showThreshold(row: HTMLElement, layer: Pick<OverlayLayer, "info" | "threshold">): void {
  const output = row.querySelector<HTMLElement>(".overlay-threshold-value");
  if (!output) return;
  const percent = layer.threshold;
  output.textContent = percent > 0 ? t.overlays.thresholdValue(String(percent)) : t.overlays.thresholdNone;
  const legend = layer.info.legend;
  output.removeAttribute("title");
  if (legend.type === "ramp" && percent > 0) {
    const cut = legend.min + ((legend.max - legend.min) * percent) / 100;
    output.title = t.overlays.thresholdOf(legend.label || layer.info.name, formatValue(cut));
  }
  row.classList.toggle("thresholded", percent > 0);
}

/** A model's result: which model made it, and what it may be used for. */
function modelLine(info: OverlayInfo): HTMLElement | null {
  const model = info.info?.model;
  if (!model) return null;
  return h(
    "p",
    { class: "overlay-source" },
    h("span", {}, `${model.name} ${model.version}`),
    intendedUseBadge(model.intended_use),
  );
}

function rampLegend(legend: RampLegend): HTMLElement {
  const ramp = h("div", { class: "overlay-ramp", "data-testid": "overlay-ramp" });
  ramp.style.background = `linear-gradient(to right, ${legend.colours.join(", ")})`;
  return h(
    "div",
    { class: "overlay-legend ramp" },
    legend.label ? h("span", { class: "overlay-ramp-label" }, legend.label) : null,
    ramp,
    h(
      "div",
      { class: "overlay-ramp-range" },
      h("span", {}, formatValue(legend.min)),
      h("span", {}, formatValue(legend.max)),
    ),
  );
}

function classesLegend(legend: ClassesLegend): HTMLElement {
  return h(
    "ul",
    { class: "overlay-legend classes" },
    ...legend.classes.map((c) => {
      const swatch = h("span", { class: "overlay-swatch" });
      swatch.style.background = c.colour;
      return h(
        "li",
        { title: t.overlays.count(c.count) },
        swatch,
        h("span", { class: "overlay-class" }, c.name),
        h("span", { class: "overlay-count" }, c.count.toLocaleString()),
      );
    }),
  );
}

function formatValue(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(3).replace(/\.?0+$/, "");
}

// ---- packing and drawing features -----------------------------------------------------------

function pack(features: OverlayFeature[], legend: ClassesLegend): PackedFeatures {
  const classColour = new Map(legend.classes.map((c) => [c.name, c.colour]));
  const count = features.length;
  const boxes = new Float64Array(count * 4);
  const shapes = new Uint8Array(count);
  const parts: Uint32Array[] = [];
  const flat: number[] = [];
  const byColour = new Map<string, number[]>();
  features.forEach((feature, i) => {
    const g = feature.geometry;
    const lines = rings(g);
    shapes[i] = g.type === "Point" || g.type === "MultiPoint" ? 2 : g.type.endsWith("LineString") ? 1 : 0;
    const featureParts = new Uint32Array(lines.length * 2);
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    lines.forEach((line, k) => {
      featureParts[2 * k] = flat.length / 2;
      for (const [x, y] of line) {
        flat.push(x, y);
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
      featureParts[2 * k + 1] = flat.length / 2;
    });
    parts.push(featureParts);
    boxes.set([x0, y0, x1, y1], i * 4);
    const cls = feature.properties.class ?? "unclassified";
    const colour = feature.properties.colour ?? classColour.get(cls) ?? "#ffd400";
    const bucket = byColour.get(colour);
    if (bucket) bucket.push(i);
    else byColour.set(colour, [i]);
  });
  const buckets = new Map([...byColour].map(([colour, ids]) => [colour, Uint32Array.from(ids)]));
  return { boxes, coords: Float64Array.from(flat), parts, shapes, buckets };
}

/** Draws a feature layer for the view now; returns how many features it drew. */
function drawFeatures(viewer: OpenSeadragon.Viewer, layer: FeatureLayer): number {
  const canvas = layer.canvas;
  const p = layer.packed;
  const m = imageToScreenMatrix(viewer);
  const ctx = canvas.getContext("2d");
  if (!layer.visible || !p || !m || !ctx) {
    if (layer.drawnAt) ctx?.clearRect(0, 0, canvas.width, canvas.height);
    layer.drawnAt = null;
    return 0;
  }
  const cssWidth = viewer.container.clientWidth;
  const cssHeight = viewer.container.clientHeight;
  const mx = Math.round(cssWidth * PAN_MARGIN);
  const my = Math.round(cssHeight * PAN_MARGIN);
  const last = layer.drawnAt;
  if (last && last.width === cssWidth && last.height === cssHeight && sameLinearPart(last.m, m)) {
    const dx = m[4] - last.m[4];
    const dy = m[5] - last.m[5];
    if (Math.abs(dx) < mx && Math.abs(dy) < my) {
      canvas.style.transform = `translate(${dx}px, ${dy}px)`;
      return last.drawn;
    }
  }
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round((cssWidth + 2 * mx) * ratio);
  const height = Math.round((cssHeight + 2 * my) * ratio);
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  Object.assign(canvas.style, {
    left: `${-mx}px`,
    top: `${-my}px`,
    width: `${cssWidth + 2 * mx}px`,
    height: `${cssHeight + 2 * my}px`,
    transform: "",
  });
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const [a, b, c, d] = m;
  const e = m[4] + mx;
  const f = m[5] + my;
  const scale = matrixScale(m);
  // A margin of a point's radius, so that points at the edge are not cut off.
  const margin = POINT_RADIUS / (scale || 1);
  // What the canvas covers: the view and its margins.
  const [vx0, vy0, vx1, vy1] = screenBoxToImage(m, -mx, -my, cssWidth + mx, cssHeight + my);
  const bx0 = vx0 - margin;
  const by0 = vy0 - margin;
  const bx1 = vx1 + margin;
  const by1 = vy1 + margin;
  const tiny = DOT_BELOW / (scale || 1);
  let drawn = 0;
  const small = SIMPLIFY_BELOW / (scale || 1);
  const large = FILL_ABOVE / (scale || 1);
  ctx.lineWidth = 1.25;
  const { boxes, coords, parts, shapes } = p;
  for (const [colour, ids] of p.buckets) {
    const shapesPath = new Path2D();
    const fillPath = new Path2D();
    const linesPath = new Path2D();
    const dots = new Path2D();
    let hasShapes = false;
    let hasFill = false;
    let hasLines = false;
    let hasDots = false;
    for (let n = 0; n < ids.length; n++) {
      const i = ids[n] as number;
      const o = i * 4;
      const fx0 = boxes[o] as number;
      const fy0 = boxes[o + 1] as number;
      const fx1 = boxes[o + 2] as number;
      const fy1 = boxes[o + 3] as number;
      if (fx1 < bx0 || fx0 > bx1 || fy1 < by0 || fy0 > by1) continue;
      drawn++;
      const shape = shapes[i] as number;
      if (shape !== 2 && fx1 - fx0 < tiny && fy1 - fy0 < tiny) {
        const cx = (fx0 + fx1) / 2;
        const cy = (fy0 + fy1) / 2;
        dots.rect(a * cx + c * cy + e - DOT / 2, b * cx + d * cy + f - DOT / 2, DOT, DOT);
        hasDots = true;
        continue;
      }
      const featureParts = parts[i] as Uint32Array;
      for (let k = 0; k < featureParts.length; k += 2) {
        const start = featureParts[k] as number;
        const end = featureParts[k + 1] as number;
        if (shape === 2) {
          for (let q = start; q < end; q++) {
            const x = coords[2 * q] as number;
            const y = coords[2 * q + 1] as number;
            const sx = a * x + c * y + e;
            const sy = b * x + d * y + f;
            dots.moveTo(sx + POINT_RADIUS, sy);
            dots.arc(sx, sy, POINT_RADIUS, 0, 2 * Math.PI);
          }
          hasDots = true;
          continue;
        }
        const size = Math.max(fx1 - fx0, fy1 - fy0);
        const fill = shape === 0 && size >= large;
        const path = shape !== 0 ? linesPath : fill ? fillPath : shapesPath;
        const every = size < small ? Math.max(1, Math.floor((end - start) / 6)) : 1;
        for (let q = start; q < end; q += every) {
          const x = coords[2 * q] as number;
          const y = coords[2 * q + 1] as number;
          const sx = a * x + c * y + e;
          const sy = b * x + d * y + f;
          if (q === start) path.moveTo(sx, sy);
          else path.lineTo(sx, sy);
        }
        if (shape === 0) {
          path.closePath();
          if (fill) hasFill = true;
          else hasShapes = true;
        } else {
          hasLines = true;
        }
      }
    }
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    if (hasFill) {
      ctx.globalAlpha = FILL_ALPHA;
      ctx.fill(fillPath, "evenodd");
      ctx.globalAlpha = 1;
      ctx.stroke(fillPath);
    }
    if (hasShapes) ctx.stroke(shapesPath);
    if (hasLines) ctx.stroke(linesPath);
    if (hasDots) ctx.fill(dots);
  }
  ctx.globalAlpha = 1;
  layer.drawnAt = { m, width: cssWidth, height: cssHeight, drawn };
  return drawn;
}

/** Same zoom, rotation and flip: the two transforms differ by a translation at most. */
function sameLinearPart(m: Affine, n: Affine): boolean {
  const tolerance = 1e-9 * Math.max(Math.abs(m[0]), Math.abs(m[1]), Math.abs(m[2]), Math.abs(m[3]));
  for (let k = 0; k < 4; k++) if (Math.abs((m[k] as number) - (n[k] as number)) > tolerance) return false;
  return true;
}
