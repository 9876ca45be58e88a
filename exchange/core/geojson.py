"""The one GeoJSON geometry check of the hub, for every feature drawn on a slide
(annotations, overlays, and the inference results and teaching material to come).

Coordinates are level-0 pixels of the slide. Each caller says its rules (which geometry
types, how many positions, how far off the image a position may lie) and gets the geometry
back as stored: positions cut to [x, y] floats, optionally rounded. Anything else is an
InvalidGeometry (400) whose message says what and where."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.core.errors import ExchangeError

# How deep each type's coordinates nest down to a position.
DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


class InvalidGeometry(ExchangeError):
    http_status = 400


@dataclass(frozen=True)
class GeometryRules:
    width: int  # the slide's level 0
    height: int
    types: frozenset[str] = frozenset(DEPTH)
    max_positions: int = 10_000
    # How far off the image a position may lie (a click on the very edge, a rounding):
    # this fraction of the slide's side, and at least `margin_px` pixels.
    margin_fraction: float = 0.0
    margin_px: float = 0.0
    decimals: int | None = None  # round positions to this many decimals

    def margin(self, side: int) -> float:
        return max(self.margin_px, self.margin_fraction * side)


def check_geometry(value: Any, rules: GeometryRules) -> dict[str, Any]:
    """The geometry as stored, or InvalidGeometry."""
    if not isinstance(value, Mapping):
        raise InvalidGeometry("a feature needs a geometry")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in rules.types or kind not in DEPTH:
        known = ", ".join(t for t in DEPTH if t in rules.types)
        given = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
        raise InvalidGeometry(f"geometry type must be one of {known}, not {given}")
    counter = [0]
    coords = _coords(value.get("coordinates"), DEPTH[kind], rules, counter)
    if kind == "Polygon":
        _rings(coords)
    elif kind == "MultiPolygon":
        for polygon in coords:
            _rings(polygon)
    elif kind == "LineString" and len(coords) < 2:
        raise InvalidGeometry("a LineString needs at least 2 positions")
    elif kind == "MultiLineString" and any(len(line) < 2 for line in coords):
        raise InvalidGeometry("each line of a MultiLineString needs at least 2 positions")
    return {"type": kind, "coordinates": coords}


def positions(geometry: Mapping[str, Any]) -> Iterator[Sequence[float]]:
    """Every position of a checked geometry."""

    def walk(value: Any, depth: int) -> Iterator[Sequence[float]]:
        if depth == 0:
            yield value
        else:
            for item in value:
                yield from walk(item, depth - 1)

    yield from walk(geometry["coordinates"], DEPTH[geometry["type"]])


def _coords(value: Any, depth: int, rules: GeometryRules, counter: list[int]) -> Any:
    if not isinstance(value, list):
        raise InvalidGeometry("coordinates must be nested arrays")
    if depth == 0:
        return _position(value, rules, counter)
    if not value:
        raise InvalidGeometry("coordinates must not be empty")
    return [_coords(v, depth - 1, rules, counter) for v in value]


def _position(value: list[Any], rules: GeometryRules, counter: list[int]) -> list[float]:
    if len(value) not in (2, 3):
        raise InvalidGeometry("a position is [x, y]")
    x, y = value[0], value[1]
    for v in (x, y):
        if isinstance(v, bool) or not isinstance(v, int | float) or not _finite(v):
            raise InvalidGeometry("positions must be finite numbers")
    mx, my = rules.margin(rules.width), rules.margin(rules.height)
    if not (-mx <= x <= rules.width + mx and -my <= y <= rules.height + my):
        raise InvalidGeometry(
            f"position ({x:g}, {y:g}) lies outside the slide "
            f"({rules.width}×{rules.height} px at level 0)"
        )
    counter[0] += 1
    if counter[0] > rules.max_positions:
        raise InvalidGeometry(f"at most {rules.max_positions} positions per feature")
    if rules.decimals is not None:
        return [round(float(x), rules.decimals), round(float(y), rules.decimals)]
    return [float(x), float(y)]


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer of hundreds of digits (JSON allows it)
        return False


def _rings(polygon: list[list[list[float]]]) -> None:
    for ring in polygon:
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise InvalidGeometry(
                "a polygon ring must be closed (its last position equals its first) "
                "and have at least 4 positions"
            )
