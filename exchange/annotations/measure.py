"""Measurements of drawn shapes, from level-0 pixel coordinates and the slide's pixel size.

Pure functions: positions are (x, y) pairs in level-0 pixels, mpp_x/mpp_y are micrometres per
pixel along each axis (they may differ on some scanners). 1 mm = 1000 µm, 1 mm² = 10⁶ µm²."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

Position = Sequence[float]
Ring = Sequence[Position]

UM_PER_MM = 1000.0
UM2_PER_MM2 = 1_000_000.0


def ring_area_px(ring: Ring) -> float:
    """Unsigned area of one ring (shoelace formula); closed or not, the result is the same."""
    n = len(ring)
    if n < 3:
        return 0.0
    twice = 0.0
    for i in range(n):
        x0, y0 = ring[i][0], ring[i][1]
        x1, y1 = ring[(i + 1) % n][0], ring[(i + 1) % n][1]
        twice += x0 * y1 - x1 * y0
    return abs(twice) / 2.0


def polygon_area_px(rings: Sequence[Ring]) -> float:
    """Area of a polygon in px²: its outer ring less its holes (GeoJSON Polygon coordinates)."""
    if not rings:
        return 0.0
    return max(0.0, ring_area_px(rings[0]) - sum(ring_area_px(r) for r in rings[1:]))


def polygon_area_mm2(rings: Sequence[Ring], mpp_x: float, mpp_y: float) -> float:
    """Area of a polygon (GeoJSON Polygon coordinates, level-0 px) in mm²."""
    return polygon_area_px(rings) * mpp_x * mpp_y / UM2_PER_MM2


def line_length_um(line: Sequence[Position], mpp_x: float, mpp_y: float) -> float:
    """Length of a polyline (GeoJSON LineString coordinates, level-0 px) in µm."""
    total = 0.0
    for a, b in itertools.pairwise(line):
        total += math.hypot((b[0] - a[0]) * mpp_x, (b[1] - a[1]) * mpp_y)
    return total


def line_length_mm(line: Sequence[Position], mpp_x: float, mpp_y: float) -> float:
    """Length of a polyline (GeoJSON LineString coordinates, level-0 px) in mm."""
    return line_length_um(line, mpp_x, mpp_y) / UM_PER_MM


def geometry_area_mm2(geometry: dict[str, Any], mpp_x: float, mpp_y: float) -> float | None:
    """Area of a GeoJSON Polygon or MultiPolygon in mm²; None for other geometry types."""
    coords: Any = geometry.get("coordinates")
    if geometry.get("type") == "Polygon":
        return polygon_area_mm2(coords, mpp_x, mpp_y)
    if geometry.get("type") == "MultiPolygon":
        return math.fsum(polygon_area_mm2(p, mpp_x, mpp_y) for p in coords)
    return None
