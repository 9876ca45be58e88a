"""The inference worker: pulls jobs from a source (the hub over HTTPS), runs them, sends
the results — `iain worker --hub URL --token T`.

One job at a time per worker (a GPU is one device: more workers, more devices). While a
job runs, a heartbeat thread extends its lease every few seconds and learns of a cancel;
the job loop checks between batches, so a cancelled or lost job stops within a batch and
a heartbeat. SIGTERM hands the running job back at once (`release`), so a restarted node
loses no time to the lease. A job that cannot succeed (corrupt artefact, manifest that
lies, NaN outputs, a slide without a resolution) is failed with its reason; a lost lease
is simply dropped: the hub gives the job to another attempt."""

from __future__ import annotations

import io
import logging
import math
import platform
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from inference.artefacts import cached_artefact, load_model
from inference.pipeline import (
    THUMBNAIL_SIZE,
    Device,
    Plan,
    Pyramid,
    Runner,
    TileReader,
    class_summary,
    detection_summary,
    plan_patches,
    run,
    run_detection,
    tissue_of,
)
from inference.protocol import Claim, JobFailure, JobSource, LeaseLost, Stopping, TrainingSpec
from inference.training import LabelledRegion, TrainingConfig, grid_spec, train

log = logging.getLogger("iain.worker")
HEARTBEAT_S = 2.0
TISSUE_RESULT = "tissue"
HEATMAP_RESULT = "heatmap"
DETECTIONS_RESULT = "detections"


def code_version() -> str:
    try:
        from importlib.metadata import version

        return f"iain {version('iain')}, torch {torch.__version__}"
    except Exception:
        return f"torch {torch.__version__}"


@dataclass
class WorkerConfig:
    name: str = field(default_factory=lambda: f"{platform.node()}-{threading.get_native_id()}")
    device: str = "cpu"
    cache_dir: Path = Path(".iain/worker")
    burst: bool = False  # drain the queue, then return
    max_jobs: int | None = None
    wait_s: float = 20.0
    tile_threads: int = 8


class _Lease:
    """The running job's lease, kept alive by a thread; its flags stop the job loop."""

    def __init__(self, source: JobSource, claim: Claim, interval_s: float) -> None:
        self.source = source
        self.claim = claim
        self.capability = claim.capability
        self.interval_s = interval_s
        self.done = 0
        self.total = 0
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                beat = self.source.heartbeat(self.claim, self.done, self.total)
            except LeaseLost:
                self.lost.set()
                return
            except Exception:
                log.warning("heartbeat failed for job %s", self.claim.job_id, exc_info=True)
                continue
            if beat.cancel:
                self.cancelled.set()
                return
            if beat.capability:
                self.capability = beat.capability


class Worker:
    def __init__(self, source: JobSource, config: WorkerConfig) -> None:
        self.source = source
        self.config = config
        self.device = Device.named(config.device)
        self.stopping = threading.Event()
        self.jobs_run = 0
        self._models: dict[str, torch.nn.Module] = {}
        # Where the last job stood (for tests and logs): its state name and reason.
        self.last: tuple[str, str] = ("", "")

    # -- the loop -------------------------------------------------------------------------

    def install_signals(self) -> None:
        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> int:
        """Runs jobs until stopped (or, in burst mode, until the queue is empty): how many."""
        while not self.stopping.is_set():
            if self.config.max_jobs is not None and self.jobs_run >= self.config.max_jobs:
                break
            wait = 0.0 if self.config.burst else self.config.wait_s
            claim = self.source.claim(self.config.name, wait)
            if claim is None:
                if self.config.burst:
                    break
                continue
            self.run_one(claim)
            self.jobs_run += 1
        return self.jobs_run

    def run_one(self, claim: Claim) -> None:
        interval = max(0.5, min(HEARTBEAT_S, claim.lease_s / 4))
        with _Lease(self.source, claim, interval) as lease:
            try:
                self._run(claim, lease)
                self.last = ("succeeded", "")
            except LeaseLost as exc:
                self.last = ("lost", str(exc))
                log.info("job %s: lease lost (%s)", claim.job_id, exc)
            except Stopping:
                if lease.cancelled.is_set():
                    self.last = ("cancelled", "")
                    return
                self.last = ("released", "")
                self._quietly(lambda: self.source.release(claim))
            except JobFailure as exc:
                failure = str(exc)
                self.last = ("failed", failure)
                log.info("job %s failed: %s", claim.job_id, failure)
                self._quietly(lambda: self.source.fail(claim, failure))
            except Exception as exc:
                reason = f"the worker failed: {type(exc).__name__}: {str(exc)[:500]}"
                self.last = ("failed", reason)
                log.exception("job %s", claim.job_id)
                self._quietly(lambda: self.source.fail(claim, reason))

    @staticmethod
    def _quietly(call: Callable[[], None]) -> None:
        try:
            call()
        except LeaseLost:
            pass
        except Exception:
            log.warning("could not report to the hub", exc_info=True)

    # -- one job --------------------------------------------------------------------------

    def _check(self, lease: _Lease) -> None:
        if lease.lost.is_set():
            raise LeaseLost("the hub gave the job to another attempt")
        if lease.cancelled.is_set() or self.stopping.is_set():
            raise Stopping()

    def _model(self, claim: Claim) -> torch.nn.Module:
        spec = claim.spec
        found = self._models.get(spec.sha256)
        if found is None:
            path = cached_artefact(
                spec, self.config.cache_dir / "models", lambda: self.source.model_bytes(claim)
            )
            found = load_model(path, spec, self.device.device)
            self._models = {spec.sha256: found}  # one model on the device at a time
        return found

    def _run(self, claim: Claim, lease: _Lease) -> None:
        if claim.training is not None:
            self._train(claim, claim.training, lease)
            return
        spec, slide = claim.spec, claim.slide
        times: dict[str, float] = {}
        started = time.perf_counter()
        model = self._model(claim)
        times["load_s"] = time.perf_counter() - started
        self._check(lease)

        mark = time.perf_counter()
        pyramid = Pyramid.from_dzi(self.source.dzi(claim, lease.capability))
        thumb = self.source.thumbnail(claim, lease.capability, THUMBNAIL_SIZE)
        mask, _thumb_mpp = tissue_of(thumb, slide, pyramid)
        times["tissue_s"] = time.perf_counter() - mark
        plan = plan_patches(
            spec,
            slide,
            pyramid,
            tissue=mask if claim.tissue_only else None,
            region=claim.region,
        )
        self._check(lease)

        reader = TileReader(
            lambda z, c, r: self.source.tile(claim, lease.capability, z, c, r),
            pyramid,
            plan.z,
            threads=self.config.tile_threads,
            keep=max(256, 4 * math.ceil(pyramid.level_size(plan.z)[0] / pyramid.tile_size)),
        )
        mark = time.perf_counter()
        runner = Runner(model, spec, self.device)
        results = [HEATMAP_RESULT, TISSUE_RESULT]
        try:
            if spec.task == "detection":
                detections, counts = run_detection(
                    runner,
                    plan,
                    reader,
                    thresholds=dict(spec.manifest.get("thresholds") or {}),
                    progress=lease.progress,
                    should_stop=lambda: self._check(lease),
                )
            else:
                probs = run(
                    runner,
                    plan,
                    reader,
                    progress=lease.progress,
                    should_stop=lambda: self._check(lease),
                )
        finally:
            reader.close()
        times["inference_s"] = time.perf_counter() - mark
        self._check(lease)

        if spec.task == "detection":
            summary = detection_summary(detections, plan, spec, slide.mpp, mask, claim.region)
            buffer = io.BytesIO()
            np.save(buffer, detections, allow_pickle=False)
            title = f"{spec.name} {spec.version}: detections"
            self.source.upload(
                claim, DETECTIONS_RESULT, "detections", buffer.getvalue(), {"title": title}
            )
            results.insert(0, DETECTIONS_RESULT)
            peak = float(np.nanmax(counts)) if np.isfinite(counts).any() else 0.0
            self._upload_heatmap(
                claim,
                HEATMAP_RESULT,
                counts / peak if peak else counts,
                title=f"{spec.name} {spec.version}: density",
                colour_map="inferno",
                label="detections per patch (of the most)",
            )
        else:
            summary = class_summary(probs, plan, spec, slide.mpp, mask, claim.region)
            shown = [c.name for c in spec.classes].index(spec.shown_class)
            self._upload_heatmap(
                claim,
                HEATMAP_RESULT,
                probs[..., shown],
                title=f"{spec.name} {spec.version}: {spec.shown_class}",
                colour_map="inferno",
                label=f"P({spec.shown_class})",
            )
        tissue_values = np.where(mask, 1.0, np.nan).astype(np.float32)
        self._upload_heatmap(
            claim,
            TISSUE_RESULT,
            _fit(tissue_values, slide.width, slide.height),
            title=f"Tissue ({spec.name} {spec.version})",
            colour_map="viridis",
            label="tissue",
        )
        times["total_s"] = time.perf_counter() - started
        provenance = self._provenance(claim, plan, times, reader)
        self._check(lease)
        # The last progress, even for a job quicker than a heartbeat's interval.
        self.source.heartbeat(claim, plan.count, plan.count)
        self.source.complete(claim, results, summary, provenance)

    def _train(self, claim: Claim, training: TrainingSpec, lease: _Lease) -> None:
        started = time.perf_counter()
        config = TrainingConfig(
            resolution=training.resolution,
            patch_size=training.patch_size,
            epochs=training.epochs,
        )
        classes = sorted({label for label, _ring in training.regions})
        pyramid = Pyramid.from_dzi(self.source.dzi(claim, lease.capability))
        plan = plan_patches(
            grid_spec(config, classes or ["-", "--"]),
            claim.slide,
            pyramid,
            tissue=None,
            region=None,
        )
        reader = TileReader(
            lambda z, c, r: self.source.tile(claim, lease.capability, z, c, r),
            pyramid,
            plan.z,
            threads=self.config.tile_threads,
        )
        try:
            trained = train(
                plan,
                reader,
                [LabelledRegion(label, ring) for label, ring in training.regions],
                name=training.name,
                version=training.version,
                config=config,
                authors=[f"trained by IAIN job {claim.job_id}"],
                should_stop=lambda: self._check(lease),
                progress=lease.progress,
            )
        finally:
            reader.close()
        self._check(lease)
        self.source.upload_artefact(claim, trained.program)
        provenance = {
            "slide_content_hash": claim.slide.content_hash,
            "code_version": code_version(),
            "device": "cpu (training)",
            "worker": self.config.name,
            "attempt": claim.attempt,
            "durations_s": {"total_s": round(time.perf_counter() - started, 3)},
        }
        self._check(lease)
        self.source.complete(claim, [], trained.summary, provenance, manifest=trained.manifest)

    def _upload_heatmap(
        self,
        claim: Claim,
        name: str,
        values: np.ndarray,
        *,
        title: str,
        colour_map: str,
        label: str,
    ) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(values, dtype=np.float32), allow_pickle=False)
        params = {"title": title[:200], "colour_map": colour_map, "label": label[:200]}
        self.source.upload(claim, name, "heatmap", buffer.getvalue(), params)

    def _provenance(
        self, claim: Claim, plan: Plan, times: dict[str, float], reader: TileReader
    ) -> dict[str, Any]:
        spec = claim.spec
        return {
            "model_sha256": spec.sha256,
            "model": f"{spec.name} {spec.version}",
            "manifest_version": spec.version,
            "slide_content_hash": claim.slide.content_hash,
            "code_version": code_version(),
            "device": self.device.describe(),
            "worker": self.config.name,
            "attempt": claim.attempt,
            "patches": plan.count,
            "grid": [plan.cols, plan.rows],
            "level": plan.z,
            "tiles_fetched": reader.fetched,
            "durations_s": {k: round(v, 3) for k, v in times.items()},
        }


def _fit(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """A heatmap is at most as fine as its slide: a mask larger than it is pooled down."""
    h, w = values.shape
    step = max(1, math.ceil(max(w / width, h / height)))
    return values[::step, ::step] if step > 1 else values
