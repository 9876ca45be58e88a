"""Large feature sets: a detector's million nuclei on a slide, answered by viewport.

A detection is a point with a radius, a class and a score. They are packed once, when the
result is stored, into one object laid out like a tiled image: a grid of level-0 cells
(CELL_PX a side), each cell's detections contiguous (x, y, radius, class, score as
little-endian float32, 20 bytes each), row after row, behind a JSON header with each cell's
offset and count and its count per class. A viewport query reads the header once (cached)
and then only the byte ranges of the cells it meets — one range read per grid row — like a
tile read; past `max_features` in view it answers the density instead (per cell, per
class), which the viewer draws when zoomed out.

10⁶ detections are 20 MB of storage and a viewport of a few thousand reads a few hundred
kB; nothing is parsed that is not in view."""

from __future__ import annotations

import json
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exchange.core.errors import ExchangeError
from storage import ObjectStore
from tiles.geometry import Size

MAGIC = b"IAINDET1"
CELL_PX = 2048
COLUMNS = 5  # x, y, radius, class, score
MAX_DETECTIONS = 5_000_000
MAX_VIEW = 20_000  # detections answered one by one in a viewport; past it, the density


class InvalidDetections(ExchangeError):
    http_status = 400


def check_detections(values: np.ndarray, slide: Size, classes: int) -> np.ndarray:
    """(n, 5) float32 rows x, y, radius, class index, score; InvalidDetections otherwise."""
    if values.ndim != 2 or values.shape[1] != COLUMNS or values.dtype.kind not in "fiu":
        raise InvalidDetections("detections are an (n, 5) array: x, y, radius, class, score")
    if len(values) > MAX_DETECTIONS:
        raise InvalidDetections(f"at most {MAX_DETECTIONS:,} detections per result")
    rows = values.astype(np.float32)
    if not np.isfinite(rows).all():
        raise InvalidDetections("detections hold NaN or infinite numbers")
    x, y, radius, cls, score = rows.T
    if ((x < 0) | (x >= slide.width) | (y < 0) | (y >= slide.height)).any():
        raise InvalidDetections(f"detections lie outside the {slide.width} x {slide.height} slide")
    if ((radius < 0) | (radius > 4096)).any():
        raise InvalidDetections("a detection's radius is 0 to 4096 level-0 pixels")
    if ((cls < 0) | (cls >= classes) | (cls != np.round(cls))).any():
        raise InvalidDetections(f"a detection's class is an index below {classes}")
    if ((score < 0) | (score > 1)).any():
        raise InvalidDetections("a detection's score lies in [0, 1]")
    return rows


def pack(rows: np.ndarray, slide: Size, class_names: Sequence[str]) -> bytes:
    """The packed object: header, then each cell's rows in row-major cell order."""
    cols = max(1, math.ceil(slide.width / CELL_PX))
    grid_rows = max(1, math.ceil(slide.height / CELL_PX))
    cell = (rows[:, 1] // CELL_PX).astype(np.int64) * cols + (rows[:, 0] // CELL_PX).astype(
        np.int64
    )
    order = np.argsort(cell, kind="stable")
    rows, cell = rows[order], cell[order]
    counts = np.bincount(cell, minlength=cols * grid_rows)
    classes = len(class_names)
    density = np.zeros((cols * grid_rows, classes), np.int64)
    np.add.at(density, (cell, rows[:, 3].astype(np.int64)), 1)
    header = {
        "cell": CELL_PX,
        "cols": cols,
        "rows": grid_rows,
        "classes": list(class_names),
        "counts": counts.tolist(),
        "density": density.tolist(),
        "total": len(rows),
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    return MAGIC + struct.pack("<I", len(head)) + head + body


@dataclass(frozen=True)
class Packed:
    """A packed object's header, read once."""

    key: str
    cell: int
    cols: int
    rows: int
    classes: tuple[str, ...]
    counts: np.ndarray  # per cell
    starts: np.ndarray  # per cell: byte offset of its first row in the object
    density: np.ndarray  # (cells, classes)
    total: int

    @classmethod
    def read(cls, store: ObjectStore, key: str) -> Packed:
        start = store.get_range(key, 0, 12)
        if start[:8] != MAGIC:
            raise InvalidDetections("not a packed detection set")
        (length,) = struct.unpack("<I", start[8:12])
        header = json.loads(store.get_range(key, 12, length))
        counts = np.asarray(header["counts"], np.int64)
        first = 12 + length
        starts = first + np.concatenate([[0], np.cumsum(counts)[:-1]]) * COLUMNS * 4
        return cls(
            key=key,
            cell=int(header["cell"]),
            cols=int(header["cols"]),
            rows=int(header["rows"]),
            classes=tuple(header["classes"]),
            counts=counts,
            starts=starts.astype(np.int64),
            density=np.asarray(header["density"], np.int64).reshape(len(counts), -1),
            total=int(header["total"]),
        )

    def cells_of(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = box
        c0 = max(0, int(x0 // self.cell))
        r0 = max(0, int(y0 // self.cell))
        c1 = min(self.cols - 1, int(x1 // self.cell))
        r1 = min(self.rows - 1, int(y1 // self.cell))
        return c0, r0, c1, r1

    def in_view(self, box: tuple[float, float, float, float]) -> int:
        c0, r0, c1, r1 = self.cells_of(box)
        if c1 < c0 or r1 < r0:
            return 0
        grid = self.counts.reshape(self.rows, self.cols)
        return int(grid[r0 : r1 + 1, c0 : c1 + 1].sum())

    def within(self, store: ObjectStore, box: tuple[float, float, float, float]) -> np.ndarray:
        """The rows inside the box: one range read per grid row the box meets."""
        c0, r0, c1, r1 = self.cells_of(box)
        parts = []
        for r in range(r0, r1 + 1):
            first, last = r * self.cols + c0, r * self.cols + c1
            n = int(self.counts[first : last + 1].sum())
            if n == 0:
                continue
            data = store.get_range(self.key, int(self.starts[first]), n * COLUMNS * 4)
            parts.append(np.frombuffer(data, "<f4").reshape(n, COLUMNS))
        if not parts:
            return np.zeros((0, COLUMNS), np.float32)
        rows = np.concatenate(parts)
        x0, y0, x1, y1 = box
        inside = (rows[:, 0] >= x0) & (rows[:, 0] <= x1) & (rows[:, 1] >= y0) & (rows[:, 1] <= y1)
        return rows[inside]

    def density_features(self, box: tuple[float, float, float, float]) -> list[dict[str, Any]]:
        """The cells the box meets, as squares with their counts (zoomed out)."""
        c0, r0, c1, r1 = self.cells_of(box)
        out = []
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                index = r * self.cols + c
                count = int(self.counts[index])
                if count == 0:
                    continue
                per_class = {
                    name: int(n)
                    for name, n in zip(self.classes, self.density[index], strict=True)
                    if n
                }
                x, y, s = c * self.cell, r * self.cell, self.cell
                out.append(
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
                            ],
                        },
                        "properties": {
                            "aggregate": True,
                            "count": count,
                            "class": max(per_class, key=lambda k: per_class[k]),
                            "classes": per_class,
                        },
                    }
                )
        return out


def as_features(rows: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as GeoJSON points (QuPath reads them), with class, score and radius."""
    return [json.loads(piece) for piece in _encoded(rows, classes)]


def _encoded(rows: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Each row's GeoJSON Feature, formatted directly (a viewport's thousands of points are
    the hot path: no dict per point)."""
    names = [json.dumps(c) for c in classes]
    return [
        f'{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{x:.1f},{y:.1f}]}},'
        f'"properties":{{"class":{names[int(c)]},"score":{s:.3f},"radius":{r:.1f}}}}}'
        for x, y, r, c, s in rows.tolist()
    ]


class PackedSets:
    """Headers of packed sets, the most recently used kept."""

    def __init__(self, store: ObjectStore, keep: int = 64) -> None:
        self.store = store
        self.keep = keep
        self._headers: OrderedDict[str, Packed] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Packed:
        with self._lock:
            found = self._headers.get(key)
            if found is not None:
                self._headers.move_to_end(key)
                return found
        packed = Packed.read(self.store, key)
        with self._lock:
            self._headers[key] = packed
            while len(self._headers) > self.keep:
                self._headers.popitem(last=False)
        return packed

    def query(
        self, key: str, box: tuple[float, float, float, float], max_features: int = MAX_VIEW
    ) -> bytes:
        """A GeoJSON FeatureCollection of the detections in view, or of the density when
        more than `max_features` are (then `aggregated` is true)."""
        packed = self.get(key)
        if packed.in_view(box) > max_features:
            features = packed.density_features(box)
            answer = {"type": "FeatureCollection", "aggregated": True, "features": features}
            return json.dumps(answer, separators=(",", ":")).encode()
        pieces = _encoded(packed.within(self.store, box), packed.classes)
        return (
            '{"type":"FeatureCollection","aggregated":false,"features":[' + ",".join(pieces) + "]}"
        ).encode()
