"""A job's results as a worker uploads them: checked, stored under the attempt's keys, and
turned into overlays when the attempt completes (exchange.jobs.queue.Jobs.complete).

A heatmap arrives as a NumPy `.npy` array (read with allow_pickle=False: a header and raw
numbers, never objects), float values in [0, 1] with NaN where nothing was computed; a
feature set as GeoJSON in level-0 pixels. Each upload also writes a small description the
hub made itself (`.meta.json`), which the completion reads back: nothing the worker says
at completion decides what an overlay is."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from exchange.core.ids import new_id
from exchange.core.models import InferenceJob, Overlay, Slide
from exchange.jobs.queue import JobError, ResultObject, result_prefix
from exchange.overlays.detections import InvalidDetections, check_detections, pack
from exchange.overlays.service import InvalidOverlay, features_overlay, heatmap_overlay
from storage import ObjectNotFound, ObjectStore
from tiles.geometry import Size
from tiles.overlay import COLOUR_MAPS

MAX_HEATMAP_BYTES = 64 * 1024 * 1024
MAX_FEATURES_BYTES = 64 * 1024 * 1024
MAX_DETECTIONS_BYTES = 128 * 1024 * 1024  # 5,000,000 detections of 20 bytes
MAX_RESULTS = 16
_RESULT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class InvalidResult(JobError):
    """A result the hub will not store (the message says why): 400; the job goes on."""


def check_name(name: str) -> str:
    if not _RESULT_NAME.fullmatch(name):
        raise InvalidResult("a result name is 1 to 40 lower-case letters, digits, '_' or '-'")
    return name


def _keys(job: InferenceJob, name: str, suffix: str) -> tuple[str, str]:
    base = result_prefix(job.slide_id, job.id, job.attempt) + name
    return base + suffix, base + ".meta.json"


def read_heatmap(body: bytes) -> np.ndarray:
    """The uploaded array: 2-D, numbers only, finite values in [0, 1] (NaN: no value)."""
    if len(body) > MAX_HEATMAP_BYTES:
        raise InvalidResult(f"a heatmap upload is at most {MAX_HEATMAP_BYTES // 1024**2} MiB")
    try:
        values = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidResult(f"a heatmap is a NumPy .npy array of numbers: {exc}") from None
    if not isinstance(values, np.ndarray) or values.ndim != 2 or values.dtype.kind not in "fiu":
        raise InvalidResult("a heatmap is a 2-D array of numbers")
    values = values.astype(np.float32)
    finite = values[np.isfinite(values)]
    if np.isinf(values).any() or (finite.size and (finite.min() < 0 or finite.max() > 1)):
        raise InvalidResult("heatmap values are probabilities in [0, 1] (NaN where none)")
    return values


def store_heatmap(
    store: ObjectStore,
    job: InferenceJob,
    slide: Slide,
    name: str,
    body: bytes,
    *,
    title: str,
    colour_map: str,
    label: str,
) -> list[str]:
    """Stores an uploaded heatmap for the job's running attempt: the keys it wrote."""
    check_name(name)
    if colour_map not in COLOUR_MAPS:
        raise InvalidResult(f"unknown colour map {colour_map!r} (known: {', '.join(COLOUR_MAPS)})")
    values = read_heatmap(body)
    key, meta_key = _keys(job, name, ".tiff")
    try:
        overlay, data = heatmap_overlay(
            slide, values, overlay_id="pending", key=key, name=title,
            colour_map=colour_map, label=label,
        )  # fmt: skip
    except InvalidOverlay as exc:
        raise InvalidResult(exc.message) from None
    meta = {
        "kind": "heatmap",
        "key": key,
        "name": overlay.name,
        "legend": overlay.legend,
        "size_bytes": len(data),
        "width": overlay.width,
        "height": overlay.height,
        "colour_map": colour_map,
    }
    return _put(store, key, data, meta_key, meta)


def store_features(
    store: ObjectStore,
    job: InferenceJob,
    slide: Slide,
    name: str,
    body: bytes,
    *,
    title: str,
    class_colours: dict[str, str],
) -> list[str]:
    check_name(name)
    if len(body) > MAX_FEATURES_BYTES:
        raise InvalidResult(f"a feature upload is at most {MAX_FEATURES_BYTES // 1024**2} MiB")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidResult(f"features are a GeoJSON FeatureCollection: {exc}") from None
    key, meta_key = _keys(job, name, ".geojson")
    try:
        overlay, data = features_overlay(
            slide, document, overlay_id="pending", key=key, name=title,
            class_colours=class_colours,
        )  # fmt: skip
    except InvalidOverlay as exc:
        raise InvalidResult(exc.message) from None
    meta = {
        "kind": "features",
        "key": key,
        "name": overlay.name,
        "legend": overlay.legend,
        "size_bytes": len(data),
        "feature_count": overlay.feature_count,
    }
    return _put(store, key, data, meta_key, meta)


def store_detections(
    store: ObjectStore,
    job: InferenceJob,
    slide: Slide,
    name: str,
    body: bytes,
    *,
    title: str,
    classes: list[tuple[str, str]],
) -> list[str]:
    """A detector's result: an (n, 5) .npy array x, y, radius, class index, score in
    level-0 pixels, packed for viewport queries (exchange.overlays.detections)."""
    check_name(name)
    if len(body) > MAX_DETECTIONS_BYTES:
        raise InvalidResult(f"a detection upload is at most {MAX_DETECTIONS_BYTES // 1024**2} MiB")
    try:
        values = np.load(io.BytesIO(body), allow_pickle=False)
        rows = check_detections(values, Size(slide.width, slide.height), len(classes))
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidResult(f"detections are a NumPy .npy array of numbers: {exc}") from None
    except InvalidDetections as exc:
        raise InvalidResult(exc.message) from None
    names = [n for n, _colour in classes]
    key, meta_key = _keys(job, name, ".pack")
    data = pack(rows, Size(slide.width, slide.height), names)
    counts = np.bincount(rows[:, 3].astype(np.int64), minlength=len(names))
    legend = {
        "type": "classes",
        "classes": [
            {"name": n, "colour": colour, "count": int(counts[i])}
            for i, (n, colour) in enumerate(classes)
        ],
    }
    meta = {
        "kind": "features",
        "key": key,
        "name": title[:200] or "Detections",
        "legend": legend,
        "size_bytes": len(data),
        "feature_count": len(rows),
    }
    return _put(store, key, data, meta_key, meta)


def _put(
    store: ObjectStore, key: str, data: bytes, meta_key: str, meta: dict[str, Any]
) -> list[str]:
    store.put_bytes(key, data)
    store.put_bytes(meta_key, json.dumps(meta).encode())
    return [key, meta_key]


def collect(
    store: ObjectStore, job: InferenceJob, names: Sequence[str], info: dict[str, Any]
) -> list[ResultObject]:
    """The overlays the attempt's uploads make (not yet recorded): each named result must
    have been uploaded by this attempt."""
    if len(names) > MAX_RESULTS or len(set(names)) != len(names):
        raise InvalidResult(f"at most {MAX_RESULTS} distinct results per job")
    out: list[ResultObject] = []
    for name in names:
        check_name(name)
        meta_key = result_prefix(job.slide_id, job.id, job.attempt) + name + ".meta.json"
        try:
            meta = json.loads(store.get(meta_key))
        except ObjectNotFound:
            raise InvalidResult(f"no result {name!r} was uploaded by this attempt") from None
        overlay = Overlay(
            id=new_id(),
            slide_id=job.slide_id,
            kind=meta["kind"],
            name=meta["name"],
            legend=meta["legend"],
            storage_key=meta["key"],
            size_bytes=meta["size_bytes"],
            width=meta.get("width"),
            height=meta.get("height"),
            colour_map=meta.get("colour_map"),
            feature_count=meta.get("feature_count"),
            job_id=job.id,
            info=info,
        )
        out.append(ResultObject(overlay, (meta["key"], meta_key)))
    return out
