/**
 * Annotations on the slide page: the drawing layer, the side panel (tools, list, properties,
 * export/import) and the keys. `attachAnnotations` is the one call the page makes.
 */

import OpenSeadragon from "openseadragon";
import { AnnotationStore } from "../../lib/annotations";
import type { SlideDetail } from "../../lib/api";
import { h, isTyping } from "../../lib/dom";
import { errorText } from "../../lib/errors";
import { formatArea, formatMeasuredLength } from "../../lib/format";
import {
  DEFAULT_COLOUR,
  KINDS,
  type Draft,
  type Feature,
  type Geometry,
  type Kind,
  type Pt,
} from "../../lib/geometry";
import { t } from "../../lib/strings";
import { AnnotationLayer, type Tool } from "./layer";

export interface Annotations {
  readonly store: AnnotationStore;
  readonly layer: AnnotationLayer;
  /** Settled once the slide's annotations are loaded (or failed to). */
  readonly loaded: Promise<void>;
  /** Saves in flight (tests wait for 0). */
  readonly pending: number;
  readonly selected: string | null;
  setTool(tool: Tool): void;
  /**
   * The rectangle tool for one shape that is not saved as an annotation (the AI panel's
   * region): resolves to the rectangle drawn, or to null when another tool is picked first
   * (Esc, the pan tool, hiding the annotations).
   */
  pickRectangle(): Promise<Geometry | null>;
  select(id: string | null): void;
  zoomTo(id: string): void;
  undo(): Promise<void>;
  setVisible(visible: boolean): void;
  imageToScreen(p: Pt): Pt;
  screenToImage(p: Pt): Pt;
}

const TOOL_ICONS: Record<Tool, string> = {
  pan: "↖",
  point: "•",
  rectangle: "▭",
  ellipse: "◯",
  polygon: "⬠",
  freehand: "✎",
  line: "↔",
};

export function attachAnnotations(viewer: OpenSeadragon.Viewer, slide: SlideDetail): Annotations {
  const store = new AnnotationStore(slide.id);
  let pending = 0;
  let colour = DEFAULT_COLOUR;
  /** While pickRectangle waits: its answer. */
  let picking: ((geometry: Geometry | null) => void) | null = null;
  const endPick = (geometry: Geometry | null): void => {
    const done = picking;
    picking = null;
    done?.(geometry);
  };

  // ---- the panel ------------------------------------------------------------------------
  const status = h("p", { class: "ann-status", role: "status" });
  const say = (text: string, isError = false): void => {
    status.textContent = text;
    status.classList.toggle("error", isError);
  };
  const failed = (error: unknown): void => {
    say(t.annotations.failed(errorText(error)), true);
  };
  /** Runs a save, counting it in flight and showing its failure. */
  const saving = async <T>(work: () => Promise<T>): Promise<T | undefined> => {
    pending += 1;
    try {
      return await work();
    } catch (error) {
      failed(error);
      return undefined;
    } finally {
      pending -= 1;
    }
  };

  const toolButtons = (["pan", ...KINDS] as Tool[]).map((tool) => {
    const b = h(
      "button",
      {
        type: "button",
        "data-tool": tool,
        title: t.annotations.toolHints[tool],
        "aria-label": t.annotations.toolNames[tool],
      },
      h("span", { class: "icon", "aria-hidden": "true" }, TOOL_ICONS[tool]),
      h("span", { class: "name" }, t.annotations.toolNames[tool]),
    );
    b.addEventListener("click", () => {
      if (tool !== "pan" && !layer.visible) handle.setVisible(true); // drawing what one sees
      layer.setTool(tool);
    });
    return b;
  });
  const hint = h("p", { class: "ann-hint" });

  const visibility = h("button", { type: "button", class: "ann-visibility", "aria-keyshortcuts": "a" }, "◉");
  const collapse = h("button", { type: "button", class: "ann-collapse" }, "‹");
  const count = h("span", { class: "ann-count" });
  const undoButton = h(
    "button",
    { type: "button", class: "ann-undo", title: t.annotations.undoHint, disabled: true },
    `↶ ${t.annotations.undo}`,
  );
  undoButton.addEventListener("click", () => void handle.undo());
  const exportLink = h(
    "a",
    {
      class: "ann-export",
      href: store.qupathUrl,
      download: `${slide.name}.geojson`,
      title: t.annotations.exportHint,
    },
    t.annotations.exportQupath,
  );
  const fileInput = h("input", {
    type: "file",
    accept: ".geojson,.json,application/geo+json,application/json",
    class: "offscreen",
  });
  const importButton = h(
    "button",
    { type: "button", class: "ann-import", title: t.annotations.importHint },
    t.annotations.import,
  );
  importButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    fileInput.value = "";
    if (!file) return;
    void saving(async () => {
      const n = await store.importGeoJson(await file.text());
      say(t.annotations.imported(n));
    });
  });

  // The selected annotation's properties.
  const labelInput = h("input", {
    type: "text",
    class: "ann-label-input",
    maxlength: 200,
    "aria-label": t.annotations.label,
  });
  const colourInput = h("input", {
    type: "color",
    class: "ann-colour-input",
    "aria-label": t.annotations.colour,
  });
  const commentInput = h("textarea", {
    class: "ann-comment-input",
    rows: 3,
    maxlength: 10000,
    "aria-label": t.annotations.comment,
  });
  const measureOut = h("output", { class: "ann-measure" });
  const kindOut = h("span", { class: "ann-kind" });
  const deleteButton = h(
    "button",
    { type: "button", class: "ann-delete", title: t.annotations.deleteHint },
    t.annotations.delete,
  );
  const editor = h(
    "div",
    { class: "ann-editor", hidden: true },
    h("div", { class: "ann-editor-head" }, kindOut, measureOut),
    h("label", {}, h("span", {}, t.annotations.label), labelInput),
    h("label", { class: "ann-colour" }, h("span", {}, t.annotations.colour), colourInput),
    h("label", {}, h("span", {}, t.annotations.comment), commentInput),
    h("div", { class: "ann-editor-actions" }, deleteButton),
  );
  const edit = (changes: Partial<Draft>): void => {
    const id = layer.selected;
    if (!id) return;
    void saving(async () => {
      await store.update(id, changes);
      say(t.annotations.saved);
    });
  };
  labelInput.addEventListener("change", () => edit({ label: labelInput.value }));
  labelInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") labelInput.blur(); // which fires "change"
  });
  colourInput.addEventListener("change", () => {
    colour = colourInput.value;
    edit({ colour: colourInput.value });
  });
  commentInput.addEventListener("change", () => edit({ comment: commentInput.value }));
  deleteButton.addEventListener("click", () => deleteSelected());

  const list = h("ul", { class: "ann-list" });
  const body = h(
    "div",
    { class: "ann-body" },
    h("div", { class: "ann-tools", role: "toolbar", "aria-label": t.annotations.tools }, ...toolButtons),
    hint,
    h("div", { class: "ann-actions" }, undoButton, exportLink, importButton, fileInput),
    editor,
    list,
    status,
  );
  const panel = h(
    "aside",
    { class: "annotations-panel", "aria-label": t.annotations.panel },
    h("div", { class: "ann-head" }, h("h2", {}, t.annotations.title), count, visibility, collapse),
    body,
  );
  // An OpenSeadragon control, as the view toolbar is: it stays in full-page mode, and it hides
  // with the other controls (tests compare the bare slide with the server's rendering).
  // top/left: OpenSeadragon's ABSOLUTE anchor takes them; its type declarations leave them out.
  const placement = { anchor: OpenSeadragon.ControlAnchor.ABSOLUTE, autoFade: false, top: 52, left: 10 };
  viewer.addControl(h("div", { class: "annotations-control" }, panel), placement);

  const setCollapsed = (collapsed: boolean): void => {
    panel.classList.toggle("collapsed", collapsed);
    body.hidden = collapsed;
    collapse.textContent = collapsed ? "›" : "‹";
    collapse.title = collapsed ? t.annotations.expand : t.annotations.collapse;
    collapse.setAttribute("aria-expanded", String(!collapsed));
  };
  collapse.addEventListener("click", () => setCollapsed(!panel.classList.contains("collapsed")));
  setCollapsed(false);
  visibility.addEventListener("click", () => handle.setVisible(!layer.visible));

  // ---- the layer ------------------------------------------------------------------------
  const layer: AnnotationLayer = new AnnotationLayer(viewer, store, slide, {
    select: (id) => handle.select(id),
    drawn: ({ kind, geometry }) => {
      if (picking && kind === "rectangle") {
        const done = picking;
        picking = null; // before the tool changes: this is an answer, not a cancel
        layer.setTool("pan");
        done(geometry);
        return;
      }
      void saving(async () => {
        const created = await store.create({ kind, geometry, label: "", colour, comment: "" });
        if (kind !== "point") layer.setTool("pan");
        handle.select(created.id);
        if (kind !== "point") labelInput.focus();
      });
    },
    edited: async (id: string, geometry: Geometry) => {
      await saving(() => store.update(id, { geometry }));
    },
    toolChanged: (tool) => {
      if (tool !== "rectangle") endPick(null);
      for (const b of toolButtons) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
      hint.textContent = t.annotations.toolHints[tool] ?? "";
    },
  });

  const measurement = (feature: Feature): string => {
    const m = feature.properties.measurements;
    if (m?.length_um !== undefined) return formatMeasuredLength(m.length_um);
    if (m?.area_mm2 !== undefined) return formatArea(m.area_mm2);
    return "";
  };

  const showEditor = (): void => {
    const feature = layer.selected ? store.get(layer.selected) : undefined;
    editor.hidden = !feature;
    if (!feature) return;
    const p = feature.properties;
    kindOut.textContent = kindName(p.kind);
    const m = measurement(feature);
    const what = p.measurements?.length_um !== undefined ? t.annotations.length : t.annotations.area;
    measureOut.textContent = m
      ? `${what}: ${m}`
      : slide.mpp === null && p.kind !== "point"
        ? t.annotations.noScale
        : "";
    // Not while the user types in it: their text stays theirs until they leave the field.
    if (document.activeElement !== labelInput) labelInput.value = p.label;
    if (document.activeElement !== commentInput) commentInput.value = p.comment;
    colourInput.value = p.colour;
  };

  const showList = (): void => {
    count.textContent = t.annotations.count(store.features.length);
    undoButton.disabled = !store.canUndo;
    if (store.features.length === 0) {
      list.replaceChildren(h("li", { class: "ann-empty" }, t.annotations.empty));
      return;
    }
    list.replaceChildren(
      ...store.features.map((feature) => {
        const p = feature.properties;
        const name = p.label || t.annotations.noLabel;
        const swatch = h("span", { class: "swatch" });
        swatch.style.background = p.colour;
        const item = h(
          "button",
          { type: "button", class: "ann-item", "data-id": feature.id, title: t.annotations.zoomTo(name) },
          swatch,
          h("span", { class: p.label ? "ann-item-label" : "ann-item-label none" }, name),
          h("span", { class: "ann-item-kind" }, kindName(p.kind)),
          h("span", { class: "ann-item-measure" }, measurement(feature)),
        );
        item.addEventListener("click", () => {
          handle.select(feature.id);
          layer.zoomTo(feature.id);
        });
        return h(
          "li",
          { class: feature.id === layer.selected ? "selected" : undefined, "data-id": feature.id },
          item,
        );
      }),
    );
  };

  const showVisibility = (): void => {
    visibility.setAttribute("aria-pressed", String(layer.visible));
    visibility.textContent = layer.visible ? "◉" : "○";
    visibility.title = layer.visible ? t.annotations.hide : t.annotations.show;
    visibility.setAttribute("aria-label", visibility.title);
    panel.classList.toggle("hidden-annotations", !layer.visible);
  };

  const refresh = (): void => {
    if (layer.selected && !store.get(layer.selected)) layer.selected = null;
    layer.render();
    showList();
    showEditor();
    showVisibility();
  };
  store.onChange(refresh);

  const deleteSelected = (): void => {
    const id = layer.selected;
    if (!id) return;
    void saving(async () => {
      await store.remove(id);
      say("");
    });
  };

  // ---- keys -----------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    if (isTyping(event.target)) return;
    if (
      (event.ctrlKey || event.metaKey) &&
      !event.shiftKey &&
      !event.altKey &&
      event.key.toLowerCase() === "z"
    ) {
      event.preventDefault();
      void handle.undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    switch (event.key) {
      case "a":
      case "A":
        handle.setVisible(!layer.visible);
        break;
      case "Escape":
        if (layer.isDrawing) layer.cancel();
        else if (layer.tool !== "pan") layer.setTool("pan");
        else handle.select(null);
        break;
      case "Enter":
        if (!layer.isDrawing) return;
        layer.finishPolygon();
        break;
      case "Delete":
      case "Backspace":
        if (!layer.removeLastVertex()) deleteSelected();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  const handle: Annotations = {
    store,
    layer,
    loaded: store.load().catch((error: unknown) => {
      say(t.annotations.loadFailed(errorText(error)), true);
    }),
    get pending() {
      return pending;
    },
    get selected() {
      return layer.selected;
    },
    setTool: (tool) => layer.setTool(tool),
    pickRectangle() {
      endPick(null);
      if (!layer.visible) handle.setVisible(true); // drawing what one sees
      layer.setTool("rectangle");
      return new Promise((resolve) => {
        picking = resolve;
      });
    },
    select(id) {
      layer.selected = id;
      refresh();
    },
    zoomTo: (id) => layer.zoomTo(id),
    async undo() {
      await saving(async () => {
        if (layer.isDrawing) {
          layer.cancel();
          return;
        }
        if (await store.undo()) say(t.annotations.undone);
      });
    },
    setVisible(visible) {
      layer.setVisible(visible);
      if (!visible) handle.select(null);
      showVisibility();
    },
    imageToScreen: (p) => layer.imageToScreen(p),
    screenToImage: (p) => layer.screenToImage(p),
  };
  refresh();
  return handle;
}

/** An annotation's kind as the language names it ("Rectangle"). */
function kindName(kind: Kind): string {
  return t.annotations.toolNames[kind] ?? kind;
}
