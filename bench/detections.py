"""Viewport queries over a detector's result: 10⁶ points on a 60,000 x 40,000 slide, packed
as the hub packs them (exchange.overlays.detections), from local storage and from S3
(SeaweedFS), side by side with the in-memory GeoJSON path small feature sets take
(exchange.overlays.service.FeatureSet: parse once, filter bounding boxes).

For each: the time to pack (or parse), and per viewport the time to answer as the
features endpoint does (query + JSON encoding), p50 / p95 over random viewports: a 10x
view (1920 x 1080 screen pixels = 7,680 x 4,320 level-0 pixels at 0.25 µm/px), a 40x view
(1,920 x 1,080), and the whole slide (density).

    python bench/detections.py [--count 1000000] [--views 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from exchange.overlays.detections import PackedSets, as_features, pack
from exchange.overlays.service import FeatureSet
from storage import LocalStore, ObjectStore
from storage.s3 import S3Store
from tests.s3server import SeaweedS3
from tiles.geometry import Size

SLIDE = Size(60_000, 40_000)
CLASSES = ["tumour", "lymphocyte", "stroma"]
VIEWS = {"10x view": (7680, 4320), "40x view": (1920, 1080), "whole slide": (60_000, 40_000)}


def detections(count: int, seed: int = 3) -> np.ndarray:
    """Clustered like nuclei in tissue: around a few hundred centres."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform((0, 0), (SLIDE.width, SLIDE.height), (400, 2))
    which = rng.integers(0, len(centres), count)
    xy = centres[which] + rng.normal(0, 1500, (count, 2))
    xy = np.clip(xy, 0, (SLIDE.width - 1, SLIDE.height - 1))
    return np.column_stack(
        [xy, rng.uniform(3, 8, count), rng.integers(0, 3, count), rng.uniform(0.5, 1, count)]
    ).astype(np.float32)


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e3, ordered[int(0.95 * (len(ordered) - 1))] * 1e3


def boxes(
    views: int, size: tuple[int, int], seed: int = 5
) -> list[tuple[float, float, float, float]]:
    rng = np.random.default_rng(seed)
    w, h = min(size[0], SLIDE.width), min(size[1], SLIDE.height)
    out = []
    for _ in range(views):
        x = float(rng.uniform(0, SLIDE.width - w))
        y = float(rng.uniform(0, SLIDE.height - h))
        out.append((x, y, x + w, y + h))
    return out


def packed_run(store: ObjectStore, rows: np.ndarray, views: int) -> dict[str, Any]:
    started = time.perf_counter()
    data = pack(rows, SLIDE, CLASSES)
    store.put_bytes("bench/detections.pack", data)
    result: dict[str, Any] = {"pack_s": time.perf_counter() - started, "bytes": len(data)}
    sets = PackedSets(store)
    sets.get("bench/detections.pack")  # the header, as after a first request
    for name, size in VIEWS.items():
        times, answered = [], []
        # Points at 10x and 40x (as many as in view), the density for the whole slide.
        limit = 1 if name == "whole slide" else 10**9
        for box in boxes(views if name != "whole slide" else 20, size):
            t = time.perf_counter()
            body = sets.query("bench/detections.pack", box, limit)
            times.append(time.perf_counter() - t)
            answered.append(body.count(b'"Feature"'))
        aggregated = b'"aggregated":true' in body
        result[name] = (*percentiles(times), statistics.mean(answered), aggregated)
    return result


def geojson_run(rows: np.ndarray, views: int) -> dict[str, Any]:
    started = time.perf_counter()
    body = json.dumps(
        {"type": "FeatureCollection", "features": as_features(rows, CLASSES)}
    ).encode()
    features = FeatureSet.parse(body)
    result: dict[str, Any] = {"pack_s": time.perf_counter() - started, "bytes": len(body)}
    for name, size in VIEWS.items():
        if name == "whole slide":
            continue
        times, answered = [], []
        for box in boxes(views, size):
            t = time.perf_counter()
            out = features.within(*box)
            times.append(time.perf_counter() - t)
            answered.append(out.count(b'"Feature"'))
        result[name] = (*percentiles(times), statistics.mean(answered), False)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--no-geojson", action="store_true", help="skip the in-memory reference")
    args = parser.parse_args()
    rows = detections(args.count)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["packed, local"] = packed_run(LocalStore(Path(tmp) / "local"), rows, args.views)
        with SeaweedS3(Path(tmp) / "s3") as s3:
            bucket = S3Store(
                s3.endpoint,
                "bench",
                access_key=s3.access_key,
                secret_key=s3.secret_key,
                secure=False,
            )
            results["packed, S3"] = packed_run(bucket, rows, args.views)
    if not args.no_geojson:
        results["GeoJSON in memory"] = geojson_run(rows, args.views)
    print(
        f"{args.count:,} detections on {SLIDE.width} x {SLIDE.height}; {args.views} viewports each"
    )
    print(
        "| store | pack/parse s | MB | "
        + " | ".join(f"{v} p50 / p95 ms (points)" for v in VIEWS)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(VIEWS))
    for name, r in results.items():
        cells = []
        for view in VIEWS:
            if view in r:
                p50, p95, mean, aggregated = r[view]
                what = "density cells" if aggregated else "points"
                cells.append(f"{p50:.1f} / {p95:.1f} ({mean:,.0f} {what})")
            else:
                cells.append("—")
        print(
            f"| {name} | {r['pack_s']:.2f} | {r['bytes'] / 1e6:.1f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
