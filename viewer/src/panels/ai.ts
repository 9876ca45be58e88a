/**
 * AI assistance on the slide page: the models the user may run (with what they may be used
 * for), a run over the whole slide or over a rectangle drawn on it, and the jobs — followed
 * live, cancelled, retried; a job's result is its heatmap (switched on in the layers panel,
 * which has its legend, opacity and threshold), its summary figures and its provenance.
 *
 * A model can also be trained here from the slide's labelled area annotations (POST
 * /api/models/train, then run over the slide): the training job is listed with the others,
 * with its held-out accuracy once done, and the run it asked for has its heatmap switched on
 * as any run of this page has.
 *
 * The hub decides everything (exchange/web/jobs.py): who may run, which jobs one sees, who
 * may cancel. The panel only hides what the hub would refuse anyway, and shows any refusal
 * with the hub's reason. While a job of the list is queued or running, the panel asks the
 * hub for the list again every POLL_MS.
 */

import {
  ACTIVE_JOB_STATES,
  cancelJob,
  createJobs,
  getMe,
  getSlide,
  listJobs,
  listModels,
  retryJob,
  trainModel,
  type AiModel,
  type InferenceJob,
  type IntendedUse,
  type JobQuery,
  type Region,
  type SlideDetail,
} from "../lib/api";
import { h } from "../lib/dom";
import { ApiError, errorText } from "../lib/errors";
import {
  formatArea,
  formatDateTime,
  formatDecimal,
  formatInteger,
  formatMpp,
  formatPercent,
  formatSeconds,
} from "../lib/format";
import { bounds, type Feature, type Geometry } from "../lib/geometry";
import { viewerUrl } from "../lib/routes";
import { t } from "../lib/strings";
import type { Annotations } from "./annotate";
import { intendedUseBadge, intendedUseNotice } from "./intended-use";
import type { Overlays } from "./overlays";

/** How often the list is asked for again while a job is queued or running. */
const POLL_MS = 1500;
/** After a failed poll, a little longer. */
const POLL_RETRY_MS = 4000;
const JOBS_LIMIT = 50;
/** After a training job that asked for a run, the list is asked for this many more times at
 * most, until the run shows (the hub queues it as the training job completes). */
const FOLLOW_POLLS = 8;
/** A model's name as the hub takes it (exchange/jobs/manifest.py _NAME). */
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;
/** Roles that may cancel or retry any job of their centre (exchange/jobs/queue.py MANAGE_ROLES). */
const MANAGE_ROLES = ["ai_engineer", "centre_admin", "hub_admin"];

export type JobScope = "slide" | "mine" | "centre";
const SCOPES: readonly JobScope[] = ["slide", "mine", "centre"];

/** What the page wires in once its viewer exists. */
export interface AiDependencies {
  overlays: Overlays;
  annotations: Annotations;
}

export interface AiPanel {
  /** The header's "AI" button; hidden when the user's role may run no model (the hub
   * answers 404 to /api/models). */
  readonly button: HTMLButtonElement;
  readonly panel: HTMLElement;
  /** The models as last listed (empty until they are). */
  readonly models: readonly AiModel[];
  /** The jobs the panel lists now, newest first. */
  readonly jobs: readonly InferenceJob[];
  /** True while the panel is asking the hub again and again (a job is queued or running). */
  readonly polling: boolean;
  /** Settled once the models and the first list of jobs are in (or failed). */
  readonly ready: Promise<void>;
  connect(dependencies: AiDependencies): void;
  setOpen(open: boolean): void;
  setScope(scope: JobScope): Promise<void>;
}

const isActive = (job: InferenceJob): boolean => ACTIVE_JOB_STATES.includes(job.state);

export function createAiPanel(slide: SlideDetail, container: HTMLElement): AiPanel {
  let deps: AiDependencies | null = null;
  let models: AiModel[] = [];
  let selected: string | null = null;
  let jobs: InferenceJob[] = [];
  let scope: JobScope = "slide";
  let roles: string[] = [];
  let timer: number | null = null;
  let polling = false;
  let busy = false;
  /** Jobs of this slide seen queued or running: their success switches their heatmap on. */
  const watched = new Set<string>();
  /** Models trained from this page with a run to follow: model id → polls left to see it. */
  const followed = new Map<string, number>();
  let training = false;
  /** The model's name was typed by the user: the labels no longer rename it. */
  let nameTyped = false;
  /** Labels the user unticked. */
  const untrained = new Set<string>();
  /** Jobs whose result section the user opened or closed (kept across re-renders). */
  const resultOpen = new Map<string, boolean>();
  const rendered = new Map<string, { key: string; element: HTMLElement }>();
  const slideNames = new Map<string, string>([[slide.id, slide.name]]);

  const button = h(
    "button",
    {
      type: "button",
      class: "ai-button",
      title: t.ai.buttonHint,
      "aria-expanded": "false",
      "aria-controls": "ai-panel",
      hidden: true,
    },
    t.ai.button,
  );

  // ---- the panel ------------------------------------------------------------------------
  const close = h(
    "button",
    { type: "button", class: "ai-close", title: t.ai.close, "aria-label": t.ai.close },
    "×",
  );
  const modelList = h("ul", { class: "ai-model-list" });
  const modelStatus = h("p", { class: "ai-models-status" }, t.ai.loading);
  const runSlide = h(
    "button",
    { type: "button", class: "ai-run-slide", title: t.ai.runSlideHint, disabled: true },
    t.ai.runSlide,
  );
  const runRegion = h(
    "button",
    { type: "button", class: "ai-run-region", title: t.ai.runRegionHint, disabled: true },
    t.ai.runRegion,
  );
  const runActions = h("div", { class: "ai-run", hidden: true }, runSlide, runRegion);
  const message = h("p", { class: "ai-message", role: "status", "aria-live": "polite" });
  const scopeButtons = SCOPES.map((s) => {
    const b = h(
      "button",
      { type: "button", "data-scope": s, "aria-pressed": String(s === scope) },
      t.ai.scopes[s],
    );
    b.addEventListener("click", () => void handle.setScope(s));
    return b;
  });
  const trainLabels = h("ul", { class: "ai-train-labels", "data-testid": "ai-train-labels" });
  const trainWhy = h("p", { class: "ai-train-why", "data-testid": "ai-train-why" }, t.ai.train.loading);
  const trainName = h("input", {
    type: "text",
    class: "ai-train-name",
    name: "ai-train-name",
    maxlength: 100,
    autocomplete: "off",
    spellcheck: "false",
    // MODEL_NAME, as the browser reads `pattern` (the `v` flag: a class's "-" escaped).
    pattern: "[a-z0-9][a-z0-9._\\-]{0,99}",
    title: t.ai.train.nameHint,
  });
  const trainRun = h(
    "button",
    { type: "button", class: "ai-train-run", title: t.ai.train.runHint, disabled: true },
    t.ai.train.run,
  );
  const trainMessage = h("p", {
    class: "ai-train-message",
    role: "status",
    "aria-live": "polite",
  });
  const trainSection = h(
    "details",
    { class: "ai-train", "data-testid": "ai-train" },
    h("summary", {}, t.ai.train.title),
    h("p", { class: "ai-train-intro" }, t.ai.train.intro),
    trainLabels,
    trainWhy,
    h(
      "label",
      { class: "ai-train-field" },
      h("span", {}, t.ai.train.name),
      trainName,
      h("small", {}, t.ai.train.nameHint),
    ),
    h("div", { class: "ai-run" }, trainRun),
    trainMessage,
  );
  const jobList = h("ul", { class: "ai-job-list", "data-testid": "ai-jobs" });
  const jobsStatus = h("p", { class: "ai-jobs-status" }, t.ai.loading);

  const panel = h(
    "aside",
    { class: "ai-panel", id: "ai-panel", "aria-label": t.ai.title, "data-testid": "ai-panel", hidden: true },
    h("header", { class: "ai-header" }, h("h2", {}, t.ai.title), close),
    h(
      "section",
      { class: "ai-models", "aria-label": t.ai.models },
      h("h3", {}, t.ai.models),
      modelStatus,
      modelList,
      runActions,
      message,
    ),
    trainSection,
    h(
      "section",
      { class: "ai-jobs", "aria-label": t.ai.jobs },
      h(
        "div",
        { class: "ai-jobs-head" },
        h("h3", {}, t.ai.jobs),
        h(
          "div",
          { class: "ai-scope", role: "group", "aria-label": t.ai.jobs, title: t.ai.scopeHint },
          ...scopeButtons,
        ),
      ),
      jobsStatus,
      jobList,
    ),
  );
  container.append(panel);

  const say = (text: string, isError = false): void => {
    message.textContent = text;
    message.classList.toggle("error", isError);
  };
  const sayTrain = (text: string, isError = false): void => {
    trainMessage.textContent = text;
    trainMessage.classList.toggle("error", isError);
  };

  const setOpen = (open: boolean): void => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) renderJobs(); // a layer switched in the layers panel meanwhile
  };
  button.addEventListener("click", () => setOpen(panel.hidden));
  close.addEventListener("click", () => setOpen(false));

  // ---- models ---------------------------------------------------------------------------
  const modelById = (id: string | undefined): AiModel | undefined => models.find((m) => m.id === id);

  const showModels = (): void => {
    modelStatus.hidden = models.length > 0;
    if (models.length === 0) modelStatus.textContent = t.ai.noModels;
    runActions.hidden = models.length === 0;
    if (!selected || !modelById(selected)) selected = models[0]?.id ?? null;
    modelList.replaceChildren(...models.map((model) => modelItem(model)));
    updateRunButtons();
    deps?.overlays.useModels(models);
  };

  const modelItem = (model: AiModel): HTMLElement => {
    const radio = h("input", {
      type: "radio",
      name: "ai-model",
      value: model.id,
      "aria-label": t.ai.pick(`${model.name} ${model.version}`),
    });
    radio.checked = model.id === selected;
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      selected = model.id;
      for (const item of modelList.querySelectorAll<HTMLElement>(".ai-model")) {
        item.classList.toggle("selected", item.dataset.modelId === selected);
      }
    });
    const manifest = model.manifest;
    const facts: string[] = [t.ai.licence(model.licence)];
    if (manifest.patch_size && manifest.resolution) {
      const resolution =
        manifest.unit === "px" ? `${formatDecimal(manifest.resolution)} px` : formatMpp(manifest.resolution);
      facts.push(t.ai.patches(manifest.patch_size, resolution));
    }
    const classes = manifest.classes ?? [];
    return h(
      "li",
      { class: model.id === selected ? "ai-model selected" : "ai-model", "data-model-id": model.id },
      h(
        "label",
        { class: "ai-model-head" },
        radio,
        h("span", { class: "ai-model-name" }, model.name),
        h("span", { class: "ai-model-version" }, model.version),
        intendedUseBadge(model.intended_use),
      ),
      h("p", { class: "ai-model-facts" }, facts.join(" · ")),
      classes.length > 0
        ? h(
            "p",
            { class: "ai-model-classes" },
            ...classes.flatMap((c, i) => [i > 0 ? ", " : "", swatch(c.colour), c.name]),
          )
        : null,
      manifest.description ? h("p", { class: "ai-model-description" }, manifest.description) : null,
    );
  };

  const updateRunButtons = (): void => {
    const off = busy || !selected;
    runSlide.disabled = off;
    runRegion.disabled = off || !deps;
  };

  // ---- training -------------------------------------------------------------------------
  /** The labels to learn: those with area annotations, less those the user unticked. */
  const chosenLabels = (areas: LabelledAreas[]): string[] =>
    areas.filter((a) => !untrained.has(a.label)).map((a) => a.label);

  const renderTraining = (): void => {
    const store = deps?.annotations.store;
    if (!store) return;
    const areas = labelledAreas(store.features);
    trainLabels.replaceChildren(
      ...areas.map((area) => {
        const box = h("input", {
          type: "checkbox",
          value: area.label,
          "aria-label": t.ai.train.learn(area.label),
        });
        box.checked = !untrained.has(area.label);
        box.addEventListener("change", () => {
          if (box.checked) untrained.delete(area.label);
          else untrained.add(area.label);
          renderTraining();
        });
        return h(
          "li",
          { "data-label": area.label },
          h(
            "label",
            {},
            box,
            swatch(area.colour),
            h("span", { class: "ai-train-label" }, area.label),
            h("span", { class: "ai-train-count" }, t.ai.train.areas(area.count)),
          ),
        );
      }),
    );
    const chosen = chosenLabels(areas);
    if (!nameTyped) trainName.value = modelNameFor(chosen.length > 0 ? chosen : areas.map((a) => a.label));
    const why =
      areas.length === 0
        ? t.ai.train.noAreas
        : areas.length === 1
          ? t.ai.train.oneLabel(areas[0]?.label ?? "")
          : chosen.length < 2
            ? t.ai.train.pickTwo
            : "";
    trainWhy.textContent = why;
    trainWhy.hidden = why === "";
    trainRun.disabled = training || chosen.length < 2;
  };

  trainName.addEventListener("input", () => {
    nameTyped = trainName.value !== "";
    if (!nameTyped) renderTraining();
  });

  const train = async (): Promise<void> => {
    const store = deps?.annotations.store;
    if (!store) return;
    const labels = chosenLabels(labelledAreas(store.features));
    training = true;
    renderTraining();
    sayTrain(t.ai.train.queuing);
    try {
      const job = await trainModel({
        slide: slide.id,
        name: trainName.value.trim(),
        labels,
        run_after: true,
      });
      watched.add(job.id);
      sayTrain(t.ai.train.queued);
      if (scope !== "centre" || job.mine) jobs = [job, ...jobs.filter((j) => j.id !== job.id)];
      resultOpen.set(job.id, true);
      renderJobs();
      rendered.get(job.id)?.element.scrollIntoView({ block: "nearest" });
      schedule();
    } catch (error) {
      sayTrain(t.ai.train.failed(errorText(error)), true);
    } finally {
      training = false;
      renderTraining();
    }
  };
  trainRun.addEventListener("click", () => void train());

  /** A training job of this page is done: its model is listed, and the run it asked for is
   * followed (its heatmap switched on once done). */
  const trained = async (job: InferenceJob): Promise<void> => {
    sayTrain("");
    resultOpen.set(job.id, true);
    if (job.result_model && job.params.run_after) followed.set(job.result_model.id, FOLLOW_POLLS);
    try {
      models = await listModels();
      showModels();
    } catch {
      // The list stays as it was; the job says what it made.
    }
  };

  // ---- running --------------------------------------------------------------------------
  const run = async (region: Region | null): Promise<void> => {
    if (!selected) return;
    busy = true;
    updateRunButtons();
    say(t.ai.queuing);
    try {
      const answer = await createJobs({
        model_id: selected,
        slides: [slide.id],
        ...(region ? { region } : {}),
      });
      const job = answer.jobs[0];
      if (!job) return;
      if (answer.created > 0) say(t.ai.queued);
      else if (job.state === "succeeded") say(t.ai.already);
      else say(t.ai.alreadyRunning);
      if (isActive(job)) watched.add(job.id);
      if (job.state === "succeeded") void showResult(job, true);
      resultOpen.set(job.id, true);
      if (scope !== "slide") await handle.setScope("slide");
      else await refreshJobs();
    } catch (error) {
      say(t.ai.runFailed(errorText(error)), true);
    } finally {
      busy = false;
      updateRunButtons();
    }
  };

  runSlide.addEventListener("click", () => void run(null));
  let picks = 0;
  runRegion.addEventListener("click", () => {
    if (!deps) return;
    const pick = ++picks;
    say(t.ai.drawRegion);
    runRegion.setAttribute("aria-pressed", "true");
    void deps.annotations.pickRectangle().then((geometry) => {
      if (pick !== picks) return; // a second click started another pick
      runRegion.setAttribute("aria-pressed", "false");
      if (!geometry) {
        say(t.ai.regionCancelled);
        return;
      }
      const region = regionOf(geometry, slide);
      if (!region) {
        say(t.ai.regionOutside, true);
        return;
      }
      void run(region);
    });
  });

  // ---- results --------------------------------------------------------------------------
  /** Switches a job's heatmap on (its first result); its other results stay as they are. */
  const showResult = async (job: InferenceJob, on: boolean): Promise<void> => {
    const overlays = deps?.overlays;
    const first = job.overlay_ids[0];
    if (!overlays || !first) return;
    if (!overlays.layers.some((l) => l.info.id === first)) {
      try {
        await overlays.refresh([first]);
      } catch (error) {
        say(t.ai.pollFailed(errorText(error)), true);
        return;
      }
    }
    overlays.setVisible(first, on);
    renderJobs();
  };

  const overlayShown = (job: InferenceJob): boolean | null => {
    const first = job.overlay_ids[0];
    const layer = first ? deps?.overlays.layers.find((l) => l.info.id === first) : undefined;
    return layer ? layer.visible : null;
  };

  // ---- jobs -----------------------------------------------------------------------------
  const canManage = (job: InferenceJob): boolean => job.mine || roles.some((r) => MANAGE_ROLES.includes(r));

  const act = async (job: InferenceJob, action: (id: string) => Promise<InferenceJob>): Promise<void> => {
    try {
      const changed = await action(job.id);
      if (isActive(changed)) watched.add(changed.id);
      else watched.delete(changed.id);
      jobs = jobs.map((j) => (j.id === changed.id ? changed : j));
      renderJobs();
      schedule();
      await refreshJobs();
    } catch (error) {
      say(t.ai.actionFailed(errorText(error)), true);
    }
  };

  const jobItem = (job: InferenceJob): HTMLElement => {
    if (job.kind === "training") return trainingItem(job);
    const model = modelById(job.model?.id);
    const modelName = job.model ? `${job.model.name} ${job.model.version}` : t.ai.unknownModel;
    const use: IntendedUse | undefined = model?.intended_use ?? overlayUse(job);
    const region = job.params.region;
    const where = region ? t.ai.region(formatInteger(region[2]), formatInteger(region[3])) : t.ai.wholeSlide;
    const meta: (Node | string)[] = [
      where,
      " · ",
      t.ai.requested(formatDateTime(job.created_at), job.mine ? t.ai.byYou : t.ai.byColleague),
    ];
    const elsewhere = job.slide !== slide.id;

    const item = h(
      "li",
      { class: `ai-job state-${job.state}`, "data-job-id": job.id, "data-state": job.state },
      h(
        "div",
        { class: "ai-job-head" },
        h("span", { class: "ai-job-model", title: modelName }, modelName),
        h(
          "span",
          { class: `ai-state state-${job.state}`, "data-testid": "ai-job-state" },
          t.ai.states[job.state] ?? job.state,
        ),
      ),
      h("p", { class: "ai-job-meta" }, ...meta, use ? " " : null, use ? intendedUseBadge(use) : null),
      elsewhere
        ? h(
            "p",
            { class: "ai-job-slide" },
            h("a", { href: viewerUrl(job.slide) }, t.ai.otherSlide(slideNames.get(job.slide) ?? job.slide)),
          )
        : null,
    );

    if (job.state === "queued") {
      item.append(
        h(
          "p",
          { class: "ai-job-progress" },
          t.ai.waiting,
          job.attempt > 0 ? ` (${t.ai.attempt(job.attempt + 1)})` : "",
        ),
      );
    } else if (job.state === "running") {
      const bar = h("progress", { class: "ai-progress", max: 100, value: job.percent });
      const parts = [job.patches_total > 0 ? t.ai.progress(formatPercent(job.percent)) : t.ai.starting];
      if (job.patches_total > 0) {
        parts.push(t.ai.patchesDone(formatInteger(job.patches_done), formatInteger(job.patches_total)));
      }
      if (job.eta_s !== null) parts.push(t.ai.eta(formatSeconds(job.eta_s)));
      item.append(
        bar,
        h("p", { class: "ai-job-progress", "data-testid": "ai-job-progress" }, parts.join(" · ")),
      );
    } else if (job.state === "failed" && job.error) {
      item.append(h("p", { class: "ai-job-error", role: "alert" }, job.error));
    } else if (job.state === "succeeded") {
      item.append(resultSection(job, use, elsewhere));
    }

    jobActions(item, job, models.length > 0);
    return item;
  };

  /** Cancel (queued or running) and retry (failed or cancelled), for those who may. */
  const jobActions = (item: HTMLElement, job: InferenceJob, retryable: boolean): void => {
    const actions: HTMLElement[] = [];
    if (isActive(job) && canManage(job)) {
      const b = h("button", { type: "button", class: "ai-cancel" }, t.ai.cancel);
      b.addEventListener("click", () => {
        b.disabled = true;
        void act(job, cancelJob);
      });
      actions.push(b);
    }
    if ((job.state === "failed" || job.state === "cancelled") && canManage(job) && retryable) {
      const b = h("button", { type: "button", class: "ai-retry" }, t.ai.retry);
      b.addEventListener("click", () => {
        b.disabled = true;
        void act(job, retryJob);
      });
      actions.push(b);
    }
    if (actions.length > 0) item.append(h("div", { class: "ai-job-actions" }, ...actions));
  };

  /** A training job: what it learns, its progress, then the model it made and how well. */
  const trainingItem = (job: InferenceJob): HTMLElement => {
    const params = job.params;
    const name = job.result_model?.name ?? params.name ?? "";
    const title = t.ai.trainingOf(name);
    const labels = params.labels ?? [];
    const elsewhere = job.slide !== slide.id;
    const item = h(
      "li",
      {
        class: `ai-job ai-training state-${job.state}`,
        "data-job-id": job.id,
        "data-state": job.state,
        "data-kind": "training",
      },
      h(
        "div",
        { class: "ai-job-head" },
        h("span", { class: "ai-job-model", title }, title),
        h(
          "span",
          { class: `ai-state state-${job.state}`, "data-testid": "ai-job-state" },
          t.ai.states[job.state] ?? job.state,
        ),
      ),
      h(
        "p",
        { class: "ai-job-meta" },
        labels.length > 0 ? `${t.ai.learns(labels.join(", "))} · ` : "",
        t.ai.requested(formatDateTime(job.created_at), job.mine ? t.ai.byYou : t.ai.byColleague),
      ),
      elsewhere
        ? h(
            "p",
            { class: "ai-job-slide" },
            h("a", { href: viewerUrl(job.slide) }, t.ai.otherSlide(slideNames.get(job.slide) ?? job.slide)),
          )
        : null,
    );
    if (job.state === "queued") {
      item.append(
        h(
          "p",
          { class: "ai-job-progress" },
          t.ai.waiting,
          job.attempt > 0 ? ` (${t.ai.attempt(job.attempt + 1)})` : "",
        ),
      );
    } else if (job.state === "running") {
      const reading = job.patches_total === 0;
      const bar = h("progress", {
        class: "ai-progress",
        max: 100,
        ...(reading ? {} : { value: job.percent }),
      });
      const parts = reading
        ? [t.ai.reading]
        : [
            t.ai.progress(formatPercent(job.percent)),
            t.ai.steps(formatInteger(job.patches_done), formatInteger(job.patches_total)),
          ];
      if (job.eta_s !== null) parts.push(t.ai.eta(formatSeconds(job.eta_s)));
      item.append(
        bar,
        h("p", { class: "ai-job-progress", "data-testid": "ai-job-progress" }, parts.join(" · ")),
      );
    } else if (job.state === "failed" && job.error) {
      item.append(h("p", { class: "ai-job-error", role: "alert" }, job.error));
    } else if (job.state === "succeeded") {
      item.append(trainingResult(job));
    }
    jobActions(item, job, true);
    return item;
  };

  const trainingResult = (job: InferenceJob): HTMLElement => {
    const summary = job.summary ?? {};
    const made = job.result_model;
    const accuracy = summary.held_out_accuracy;
    const held = summary.held_out_patches;
    const perLabel = typeof summary.patches === "object" ? Object.entries(summary.patches) : [];
    const durations = [
      typeof summary.read_s === "number"
        ? `${t.ai.durationNames.read_s} ${formatSeconds(summary.read_s)}`
        : "",
      typeof summary.train_s === "number"
        ? `${t.ai.durationNames.train_s} ${formatSeconds(summary.train_s)}`
        : "",
    ]
      .filter(Boolean)
      .join(" · ");
    const figures = h(
      "dl",
      { class: "ai-figures" },
      ...definition(t.ai.newModel, made ? `${made.name} ${made.version}` : t.ai.none, "model"),
      ...definition(
        t.ai.accuracy,
        typeof accuracy === "number"
          ? t.ai.accuracyOf(formatPercent(accuracy * 100), formatInteger(held ?? 0))
          : t.ai.noAccuracy,
        "accuracy",
      ),
      ...definition(
        t.ai.epochs,
        typeof summary.epochs === "number" ? formatInteger(summary.epochs) : t.ai.none,
      ),
      ...definition(t.ai.durations, durations || t.ai.none, "durations"),
    );
    const table =
      perLabel.length > 0
        ? h(
            "table",
            { class: "ai-classes ai-train-patches" },
            h("thead", {}, h("tr", {}, h("th", {}, t.ai.label), h("th", {}, t.ai.patchCount))),
            h(
              "tbody",
              {},
              ...perLabel.map(([label, count]) =>
                h("tr", { "data-label": label }, h("td", {}, label), h("td", {}, formatInteger(count))),
              ),
            ),
          )
        : null;
    const open = resultOpen.get(job.id) ?? false;
    const section = h(
      "details",
      { class: "ai-result", open },
      h("summary", {}, t.ai.trainedResult),
      intendedUseNotice("research use only"),
      figures,
      table,
      job.params.run_after ? h("p", { class: "ai-then-runs" }, t.ai.thenRuns) : null,
    );
    section.addEventListener("toggle", () => resultOpen.set(job.id, section.open));
    return section;
  };

  /** The intended use the hub recorded with a job's result, when its model is not listed. */
  const overlayUse = (job: InferenceJob): IntendedUse | undefined => {
    const first = job.overlay_ids[0];
    const layer = first ? deps?.overlays.layers.find((l) => l.info.id === first) : undefined;
    return layer?.info.info?.model?.intended_use;
  };

  const resultSection = (
    job: InferenceJob,
    use: IntendedUse | undefined,
    elsewhere: boolean,
  ): HTMLElement => {
    const model = modelById(job.model?.id);
    const colours = new Map((model?.manifest.classes ?? []).map((c) => [c.name, c.colour]));
    const summary = job.summary ?? {};
    const provenance = job.provenance ?? {};
    const open = resultOpen.get(job.id) ?? job.id === jobs.find((j) => j.state === "succeeded")?.id;

    const figures = h(
      "dl",
      { class: "ai-figures" },
      ...definition(
        t.ai.tissueArea,
        typeof summary.tissue_area_mm2 === "number" ? formatArea(summary.tissue_area_mm2) : t.ai.none,
        "tissue-area",
      ),
      ...definition(
        t.ai.patchesAnalysed,
        typeof summary.patches === "number" ? formatInteger(summary.patches) : t.ai.none,
        "patches",
      ),
    );
    const classes = Object.entries(summary.classes ?? {});
    const table =
      classes.length > 0
        ? h(
            "table",
            { class: "ai-classes" },
            h(
              "thead",
              {},
              h("tr", {}, h("th", {}, t.ai.class), h("th", {}, t.ai.area), h("th", {}, t.ai.patchCount)),
            ),
            h(
              "tbody",
              {},
              ...classes.map(([name, figures]) =>
                h(
                  "tr",
                  { "data-class": name },
                  h("td", {}, colours.has(name) ? swatch(colours.get(name) ?? "") : null, name),
                  h("td", {}, figures.area_mm2 === null ? t.ai.none : formatArea(figures.area_mm2)),
                  h("td", {}, formatInteger(figures.patches)),
                ),
              ),
            ),
          )
        : null;

    const durations = Object.entries(provenance.durations_s ?? {})
      .map(([name, seconds]) => `${t.ai.durationNames[name] ?? name} ${formatSeconds(seconds)}`)
      .join(" · ");
    const sha = provenance.model_sha256 ?? "";
    const hash = provenance.slide_content_hash ?? "";
    const details = h(
      "dl",
      { class: "ai-provenance" },
      ...definition(
        t.ai.model,
        provenance.model ?? (job.model ? `${job.model.name} ${job.model.version}` : t.ai.none),
      ),
      ...definition(t.ai.sha256, sha ? short(sha) : t.ai.none, "sha256", sha),
      ...definition(t.ai.device, provenance.device ?? t.ai.none, "device"),
      ...definition(t.ai.durations, durations || t.ai.none, "durations"),
      ...definition(t.ai.code, provenance.code_version ?? t.ai.none, "code"),
      ...definition(t.ai.slideHash, hash ? short(hash) : t.ai.none, "slide-hash", hash),
      ...(provenance.worker ? definition(t.ai.worker, provenance.worker) : []),
    );

    const shown = overlayShown(job);
    let toggle: HTMLElement | null = null;
    if (!elsewhere) {
      if (job.overlay_ids.length === 0) {
        toggle = h("p", { class: "ai-no-overlay" }, t.ai.noOverlay);
      } else {
        const b = h(
          "button",
          { type: "button", class: "ai-show", title: t.ai.showHint, "aria-pressed": String(shown === true) },
          shown ? t.ai.shown : t.ai.show,
        );
        b.addEventListener("click", () => void showResult(job, !(overlayShown(job) ?? false)));
        toggle = b;
      }
    }

    const section = h(
      "details",
      { class: "ai-result", open: open },
      h("summary", {}, t.ai.result),
      use ? intendedUseNotice(use) : null,
      toggle,
      figures,
      table,
      h("h4", {}, t.ai.provenance),
      details,
    );
    section.addEventListener("toggle", () => resultOpen.set(job.id, section.open));
    return section;
  };

  /**
   * The list, item by item: an item is rebuilt only when its job (or its layer) changed, so
   * a poll does not close what the user opened, nor take the focus from a button.
   */
  const renderJobs = (): void => {
    jobsStatus.hidden = jobs.length > 0;
    if (jobs.length === 0) jobsStatus.textContent = t.ai.noJobs;
    const elements = jobs.map((job) => {
      const key = JSON.stringify([job, overlayShown(job), models.length]);
      const known = rendered.get(job.id);
      if (known && known.key === key) return known.element;
      const element = jobItem(job);
      if (known) known.element.replaceWith(element);
      rendered.set(job.id, { key, element });
      return element;
    });
    for (const id of [...rendered.keys()]) if (!jobs.some((j) => j.id === id)) rendered.delete(id);
    const current = [...jobList.children];
    if (current.length !== elements.length || current.some((e, i) => e !== elements[i])) {
      jobList.replaceChildren(...elements);
    }
  };

  const query = (): JobQuery =>
    scope === "slide"
      ? { slide: slide.id, limit: JOBS_LIMIT }
      : { mine: scope === "mine", limit: JOBS_LIMIT };

  /**
   * Notes the jobs of this slide that started or ended: a watched run that succeeded has its
   * heatmap shown, a watched training its model listed and its run followed. Oldest first:
   * a training job before the run it asked for, which may be in the same list.
   */
  const settle = async (list: readonly InferenceJob[]): Promise<void> => {
    for (const job of [...list].reverse()) {
      if (job.slide !== slide.id) continue;
      const followUp = job.kind !== "training" && job.model !== null && followed.delete(job.model.id);
      if (isActive(job)) {
        watched.add(job.id);
        continue;
      }
      if (!watched.delete(job.id) && !followUp) continue;
      say(""); // "Queued…" is over: the job says how it ended
      if (job.state !== "succeeded") continue;
      if (job.kind === "training") {
        await trained(job);
      } else {
        resultOpen.set(job.id, true);
        await showResult(job, true);
      }
    }
    // A run still to show up: a few more polls at most.
    for (const [id, left] of followed) {
      if (left <= 1) followed.delete(id);
      else followed.set(id, left - 1);
    }
  };

  /** Asks for the list; a watched job of this slide that is now done has its heatmap shown. */
  const refreshJobs = async (): Promise<void> => {
    const asked = scope;
    const listed = await listJobs(query());
    if (asked !== scope) return; // the user switched lists meanwhile
    jobs = listed;
    await settle(jobs);
    await nameSlides(jobs);
    renderJobs();
    schedule();
  };

  /** Jobs on other slides are named by their slide's name (asked once per slide). */
  const nameSlides = async (list: InferenceJob[]): Promise<void> => {
    const unknown = [...new Set(list.map((j) => j.slide))].filter((id) => !slideNames.has(id));
    await Promise.all(
      unknown.map(async (id) => {
        try {
          slideNames.set(id, (await getSlide(id)).name);
        } catch {
          slideNames.set(id, id);
        }
      }),
    );
  };

  const schedule = (delay = POLL_MS): void => {
    const active = jobs.some(isActive) || watched.size > 0 || followed.size > 0;
    polling = active;
    if (!active || timer !== null) return;
    timer = window.setTimeout(() => {
      timer = null;
      watchedStillActive()
        .then(refreshJobs)
        .catch((error: unknown) => {
          jobsStatus.hidden = false;
          jobsStatus.textContent = t.ai.pollFailed(errorText(error));
          schedule(POLL_RETRY_MS);
        });
    }, delay);
  };

  // Watched jobs on this slide: a poll of another list must still see them end.
  const watchedStillActive = async (): Promise<void> => {
    if (scope === "slide" || (watched.size === 0 && followed.size === 0)) return;
    await settle(await listJobs({ slide: slide.id, limit: JOBS_LIMIT }));
  };

  const load = async (): Promise<void> => {
    getMe().then(
      (me) => {
        roles = me.user.roles;
      },
      () => undefined,
    );
    try {
      models = await listModels();
      showModels();
      // No model yet: the panel still trains one from the slide's annotations.
      trainSection.open = models.length === 0;
    } catch (error) {
      if (error instanceof ApiError && error.notFound) {
        // The user's role may run no model: no button (the layers panel still shows results).
        modelStatus.textContent = t.ai.notAllowed;
        return;
      }
      modelStatus.textContent = t.ai.modelsFailed(errorText(error));
    }
    button.hidden = false; // the hub lets this user run models (or the panel says why not)
    try {
      await refreshJobs();
    } catch (error) {
      jobsStatus.textContent = t.ai.jobsFailed(errorText(error));
    }
  };

  const handle: AiPanel = {
    button,
    panel,
    get models() {
      return models;
    },
    get jobs() {
      return jobs;
    },
    get polling() {
      return polling;
    },
    ready: load(),
    connect(dependencies) {
      deps = dependencies;
      updateRunButtons();
      if (models.length > 0) dependencies.overlays.useModels(models);
      // Results listed before the layers were: their buttons now know the layer.
      void dependencies.overlays.ready.then(() => renderJobs());
      // The labels to train from follow the annotations as they are drawn and named.
      const store = dependencies.annotations.store;
      store.onChange(renderTraining);
      void dependencies.annotations.loaded.then(renderTraining, () => {
        trainWhy.textContent = t.ai.train.noAnnotations;
      });
    },
    setOpen,
    async setScope(next) {
      scope = next;
      for (const b of scopeButtons) b.setAttribute("aria-pressed", String(b.dataset.scope === next));
      jobsStatus.hidden = false;
      jobsStatus.textContent = t.ai.loading;
      jobs = [];
      renderJobs();
      jobsStatus.hidden = false;
      try {
        await watchedStillActive();
        await refreshJobs();
      } catch (error) {
        jobsStatus.hidden = false;
        jobsStatus.textContent = t.ai.jobsFailed(errorText(error));
      }
    },
  };
  return handle;
}

export interface LabelledAreas {
  label: string;
  /** How many area annotations (rectangles, ellipses, polygons, freehand) have it. */
  count: number;
  /** The colour of the first of them. */
  colour: string;
}

/**
 * The labels a model can be trained on: those of area annotations (a polygon or a
 * multipolygon: points and lines have no area), in the order they were first used, as the
 * hub counts them (exchange/jobs/queue.py annotated_regions: the label trimmed).
 */
export function labelledAreas(features: readonly Feature[]): LabelledAreas[] {
  const out = new Map<string, LabelledAreas>();
  for (const feature of features) {
    const label = (feature.properties.label ?? "").trim();
    const type = feature.geometry.type;
    if (!label || (type !== "Polygon" && type !== "MultiPolygon")) continue;
    const known = out.get(label);
    if (known) known.count += 1;
    else out.set(label, { label, count: 1, colour: feature.properties.colour });
  }
  return [...out.values()];
}

/**
 * A model's name from the labels it learns, as the hub takes names (lower-case letters,
 * digits, '.', '_', '-'): "tumour-vs-stroma"; accents dropped, other characters as '-'.
 */
export function modelNameFor(labels: readonly string[]): string {
  const words = labels
    .map((label) =>
      label
        .normalize("NFD")
        .replace(/[\u0300-\u036f]/g, "")
        .toLowerCase()
        .replace(/[^a-z0-9._]+/g, "-")
        .replace(/^[-._]+|[-._]+$/g, ""),
    )
    .filter(Boolean);
  const name = (words.length > 0 ? words.join("-vs-") : "model").slice(0, 60).replace(/[-._]+$/, "");
  return MODEL_NAME.test(name) ? name : "model";
}

/** A drawn rectangle as the job's region: whole level-0 pixels, cut to the slide. */
export function regionOf(geometry: Geometry, slide: { width: number; height: number }): Region | null {
  const box = bounds(geometry);
  const x0 = Math.max(0, Math.floor(box.x));
  const y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(slide.width, Math.ceil(box.x + box.width));
  const y1 = Math.min(slide.height, Math.ceil(box.y + box.height));
  if (x1 - x0 < 1 || y1 - y0 < 1) return null;
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

function short(hex: string): string {
  return hex.length > 12 ? `${hex.slice(0, 12)}…` : hex;
}

function swatch(colour: string): HTMLElement {
  const element = h("span", { class: "ai-swatch", "aria-hidden": "true" });
  element.style.background = colour;
  return element;
}

/** A term and its value, for a <dl>; `full` goes to the value's tooltip (a whole digest). */
function definition(term: string, value: string, name?: string, full?: string): HTMLElement[] {
  return [h("dt", {}, term), h("dd", { "data-field": name, title: full }, value)];
}
