"""Generated overlays, for the demo, the tests and the benchmarks: a smooth "tumour
probability" field of a few blobs, and cell-like detections clustered under it."""

from __future__ import annotations

from typing import Any

import numpy as np

# What the generated detections are, as a cell classifier would say, and their colours.
CLASS_COLOURS = {"tumour": "#d7191c", "lymphocyte": "#2c7bb6", "stroma": "#1a9641"}
CLASSES = tuple(CLASS_COLOURS)


def _blobs(seed: int) -> list[tuple[float, float, float, float]]:
    """(cx, cy, sigma, peak) in fractions of the slide."""
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(5):
        cx, cy = rng.uniform(0.15, 0.85, 2)
        blobs.append((float(cx), float(cy), float(rng.uniform(0.05, 0.12)), 1.0))
    return blobs


def blob_heatmap(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A (height, width) float array in [0, 1]: Gaussian blobs, exactly 0 far from them."""
    y, x = np.mgrid[0:height, 0:width]
    u, v = (x + 0.5) / width, (y + 0.5) / height
    field = np.zeros((height, width))
    aspect = width / height
    for cx, cy, sigma, peak in _blobs(seed):
        d2 = ((u - cx) * aspect) ** 2 + (v - cy) ** 2
        field = np.maximum(field, peak * np.exp(-d2 / (2 * sigma**2)))
    # Below 5 % is "nothing found": transparent, as a real model's output thresholded.
    field[field < 0.05] = 0.0
    return field


def cell_features(
    slide_width: int, slide_height: int, count: int = 10_000, seed: int = 7
) -> list[dict[str, Any]]:
    """`count` cell outlines (12-vertex polygons, 8-16 px radius at level 0) in level-0
    pixels: most clustered in the heatmap's blobs (tumour), the rest scattered."""
    rng = np.random.default_rng(seed + 1)
    blobs = _blobs(seed)
    features: list[dict[str, Any]] = []
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for i in range(count):
        if rng.random() < 0.7:
            cx, cy, sigma, _ = blobs[int(rng.integers(len(blobs)))]
            x = (cx + rng.normal(0, sigma * 0.8) * slide_height / slide_width) * slide_width
            y = (cy + rng.normal(0, sigma * 0.8)) * slide_height
            cls = CLASSES[0] if rng.random() < 0.8 else CLASSES[1]
        else:
            x, y = rng.uniform(0, slide_width), rng.uniform(0, slide_height)
            cls = CLASSES[1] if rng.random() < 0.5 else CLASSES[2]
        radius = rng.uniform(8, 16)
        squash = rng.uniform(0.6, 1.0)
        turn = rng.uniform(0, np.pi)
        r = radius * (1 + 0.12 * rng.standard_normal(12))
        px = x + r * (np.cos(angles) * np.cos(turn) - squash * np.sin(angles) * np.sin(turn))
        py = y + r * (np.cos(angles) * np.sin(turn) + squash * np.sin(angles) * np.cos(turn))
        px = np.clip(px, 0, slide_width)
        py = np.clip(py, 0, slide_height)
        ring = [[round(float(a), 1), round(float(b), 1)] for a, b in zip(px, py, strict=True)]
        ring.append(ring[0])
        features.append(
            {
                "type": "Feature",
                "id": i,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "class": cls,
                    "score": round(float(rng.uniform(0.5, 1.0)), 3),
                },
            }
        )
    return features
