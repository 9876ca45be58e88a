/**
 * The slide's annotations as the hub has them, and the changes made from this page: every
 * change goes through the hub's API first and is shown once the hub has it. Undo re-applies
 * the opposite change through the API (so it too is checked against the stored version).
 */

import { apiRequest } from "./api";
import { ApiError } from "./errors";
import type { Draft, Feature } from "./geometry";
import { t } from "./strings";

type Change =
  | { kind: "create"; id: string }
  | { kind: "delete"; before: Feature }
  | { kind: "edit"; id: string; before: Draft };

/** How many changes undo goes back through. */
const UNDO_DEPTH = 50;

export function draftOf(feature: Feature): Draft {
  const { kind, label, colour, comment } = feature.properties;
  return { kind, geometry: feature.geometry, label, colour, comment };
}

export class AnnotationStore {
  /** In the hub's order (creation). */
  features: Feature[] = [];
  private readonly undoStack: Change[] = [];
  private readonly listeners: (() => void)[] = [];

  constructor(readonly slideId: string) {}

  get url(): string {
    return `/api/slides/${encodeURIComponent(this.slideId)}/annotations`;
  }

  /** QuPath's GeoJSON of every annotation (a download link's target). */
  get qupathUrl(): string {
    return `${this.url}?format=qupath`;
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  get(id: string): Feature | undefined {
    return this.features.find((f) => f.id === id);
  }

  async load(): Promise<void> {
    const body = await apiRequest<{ features: Feature[] }>("GET", this.url);
    this.features = body.features;
    this.changed();
  }

  async create(draft: Draft, undoable = true): Promise<Feature> {
    const created = await apiRequest<Feature>("POST", this.url, toFeature(draft));
    this.features.push(created);
    if (undoable) this.remember({ kind: "create", id: created.id });
    this.changed();
    return created;
  }

  /** Replaces what `changes` names, from the version this page has (409 if another changed it). */
  async update(id: string, changes: Partial<Draft>, undoable = true): Promise<Feature> {
    const current = this.need(id);
    const before = draftOf(current);
    const body = toFeature({ ...before, ...changes }, current.properties.version);
    let updated: Feature;
    try {
      updated = await apiRequest<Feature>("PUT", `${this.url}/${encodeURIComponent(id)}`, body);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) await this.load(); // show theirs
      throw error;
    }
    this.features = this.features.map((f) => (f.id === id ? updated : f));
    if (undoable) this.remember({ kind: "edit", id, before });
    this.changed();
    return updated;
  }

  async remove(id: string, undoable = true): Promise<void> {
    const current = this.need(id);
    const query = `?version=${current.properties.version}`;
    try {
      await apiRequest<null>("DELETE", `${this.url}/${encodeURIComponent(id)}${query}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) await this.load();
      throw error;
    }
    this.features = this.features.filter((f) => f.id !== id);
    if (undoable) this.remember({ kind: "delete", before: current });
    this.changed();
  }

  /** Adds a QuPath (or IAIN) GeoJSON export's features; returns how many. */
  async importGeoJson(text: string): Promise<number> {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ApiError(400, t.annotations.notJson);
    }
    const created = await apiRequest<{ features: Feature[] }>("POST", `${this.url}/import`, body);
    this.features.push(...created.features);
    this.changed();
    return created.features.length;
  }

  /** Undoes the last change made on this page; returns what it undid, or null. */
  async undo(): Promise<Change["kind"] | null> {
    const change = this.undoStack.pop();
    if (!change) return null;
    try {
      if (change.kind === "create") {
        if (this.get(change.id)) await this.remove(change.id, false);
      } else if (change.kind === "delete") {
        const again = await this.create(draftOf(change.before), false);
        // Changes remembered before the delete name the old id: they now mean the new one.
        for (const c of this.undoStack) {
          if (c.kind !== "delete" && c.id === change.before.id) c.id = again.id;
        }
      } else {
        await this.update(change.id, change.before, false);
      }
    } catch (error) {
      this.changed();
      throw error;
    }
    return change.kind;
  }

  private remember(change: Change): void {
    this.undoStack.push(change);
    if (this.undoStack.length > UNDO_DEPTH) this.undoStack.shift();
  }

  private need(id: string): Feature {
    const feature = this.get(id);
    if (!feature) throw new ApiError(404, t.annotations.gone);
    return feature;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

function toFeature(draft: Draft, version?: number): unknown {
  const { kind, label, colour, comment, geometry } = draft;
  return { type: "Feature", geometry, properties: { kind, label, colour, comment, version } };
}
