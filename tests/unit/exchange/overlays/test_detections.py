"""Packed detections: a million points, answered by viewport from a few range reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exchange.overlays.detections import (
    CELL_PX,
    InvalidDetections,
    PackedSets,
    check_detections,
    pack,
)
from storage import LocalStore
from tiles.geometry import Size

SLIDE = Size(60_000, 40_000)


def _rows(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(0, SLIDE.width, n),
            rng.uniform(0, SLIDE.height, n),
            rng.uniform(2, 8, n),
            rng.integers(0, 3, n),
            rng.uniform(0, 1, n),
        ],
        axis=1,
    ).astype(np.float32)


class CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.ranges = 0
        self.bytes = 0

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self.ranges += 1
        self.bytes += length
        return super().get_range(key, offset, length)


def test_a_viewport_of_a_million_detections_reads_only_its_cells(tmp_path: Path) -> None:
    rows = _rows(1_000_000)
    store = CountingStore(tmp_path)
    store.put_bytes("d.pack", pack(rows, SLIDE, ["tumour", "lymphocyte", "stroma"]))
    packed = PackedSets(store)
    view = (10_000.0, 10_000.0, 12_000.0, 11_200.0)
    answer = json.loads(packed.query("d.pack", view))
    inside = (
        (rows[:, 0] >= view[0]) & (rows[:, 0] <= view[2])
        & (rows[:, 1] >= view[1]) & (rows[:, 1] <= view[3])
    )  # fmt: skip
    assert answer["aggregated"] is False
    assert len(answer["features"]) == int(inside.sum())
    got = sorted(tuple(f["geometry"]["coordinates"]) for f in answer["features"])
    want = sorted((round(float(x), 1), round(float(y), 1)) for x, y in rows[inside][:, :2])
    assert got == want
    # The header once, then one range per grid row met: a small part of the 20 MB.
    assert store.ranges <= 2 + 2 and store.bytes < 1_000_000
    # Zoomed out: the density, per cell and class, adding up to every detection.
    whole = json.loads(packed.query("d.pack", (0.0, 0.0, float(SLIDE.width), float(SLIDE.height))))
    assert whole["aggregated"] is True
    assert sum(f["properties"]["count"] for f in whole["features"]) == 1_000_000
    cell = whole["features"][0]["geometry"]["coordinates"][0]
    assert cell[1][0] - cell[0][0] == CELL_PX


def test_an_empty_set_and_edges(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("e.pack", pack(np.zeros((0, 5), np.float32), SLIDE, ["a"]))
    assert json.loads(PackedSets(store).query("e.pack", (0, 0, 100, 100)))["features"] == []
    edge = np.array([[SLIDE.width - 0.5, SLIDE.height - 0.5, 1, 0, 0.9]], np.float32)
    store.put_bytes("x.pack", pack(edge, SLIDE, ["a"]))
    found = PackedSets(store).query(
        "x.pack", (SLIDE.width - 1, SLIDE.height - 1, SLIDE.width, SLIDE.height)
    )
    assert len(json.loads(found)["features"]) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[:, :4], "(n, 5)"),
        (lambda r: np.where(np.arange(5) == 0, np.nan, r), "NaN"),
        (lambda r: r + np.array([SLIDE.width, 0, 0, 0, 0], np.float32), "outside"),
        (lambda r: r + np.array([0, 0, 0, 7, 0], np.float32), "class"),
        (lambda r: r + np.array([0, 0, 0, 0.5, 0], np.float32), "class"),
        (lambda r: r + np.array([0, 0, 0, 0, 2], np.float32), "score"),
        (lambda r: r + np.array([0, 0, -100, 0, 0], np.float32), "radius"),
    ],
)
def test_bad_detections_are_refused(change: object, message: str) -> None:
    rows = _rows(10)
    with pytest.raises(InvalidDetections, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_detections(change(rows), SLIDE, 3)  # type: ignore[operator]
