"""The hub's one GeoJSON geometry check (annotations, overlays): what each caller's rules
accept, the geometry as it is stored ([x, y] floats, optionally rounded), and a clear
InvalidGeometry (400) for anything else."""

from __future__ import annotations

import math
from typing import Any

import pytest

from exchange.core.geojson import GeometryRules, InvalidGeometry, check_geometry, positions

RULES = GeometryRules(width=1000, height=500)


def ring(x: float, y: float, side: float) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]


VALID: dict[str, Any] = {
    "Point": [10, 20],
    "MultiPoint": [[10, 20], [30, 40]],
    "LineString": [[0, 0], [100, 50]],
    "MultiLineString": [[[0, 0], [100, 50]], [[5, 5], [6, 6]]],
    "Polygon": [ring(0, 0, 100), ring(10, 10, 20)],
    "MultiPolygon": [[ring(0, 0, 100)], [ring(200, 200, 50)]],
}


def refused(value: Any, rules: GeometryRules = RULES) -> str:
    with pytest.raises(InvalidGeometry) as error:
        check_geometry(value, rules)
    assert error.value.http_status == 400
    return error.value.message


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_geojson_type_is_stored_as_float_positions(kind: str) -> None:
    stored = check_geometry({"type": kind, "coordinates": VALID[kind], "bbox": [0, 0]}, RULES)
    assert stored == {"type": kind, "coordinates": VALID[kind]}  # 10 == 10.0; bbox dropped
    assert all(type(v) is float for p in positions(stored) for v in p)


def test_a_third_coordinate_is_dropped() -> None:
    stored = check_geometry({"type": "LineString", "coordinates": [[1, 2, 3], [4, 5, 6]]}, RULES)
    assert stored["coordinates"] == [[1.0, 2.0], [4.0, 5.0]]


def test_only_the_callers_types_are_accepted() -> None:
    rules = GeometryRules(1000, 500, types=frozenset({"Polygon", "MultiPolygon"}))
    assert check_geometry({"type": "Polygon", "coordinates": VALID["Polygon"]}, rules)
    message = refused({"type": "Point", "coordinates": [1, 2]}, rules)
    assert message == "geometry type must be one of Polygon, MultiPolygon, not 'Point'"
    # Not GeoJSON types the check knows, whatever the rules say.
    rules = GeometryRules(1000, 500, types=frozenset({"Point", "GeometryCollection"}))
    assert "not 'GeometryCollection'" in refused({"type": "GeometryCollection"}, rules)
    assert "not 'point'" in refused({"type": "point", "coordinates": [1, 2]})
    assert "not None" in refused({"coordinates": [1, 2]})


@pytest.mark.parametrize(("decimals", "expected"), [(None, [1.23456, 7.891]), (2, [1.23, 7.89])])
def test_positions_are_rounded_when_the_caller_asks(decimals: int | None, expected: Any) -> None:
    rules = GeometryRules(1000, 500, decimals=decimals)
    assert check_geometry({"type": "Point", "coordinates": [1.23456, 7.891]}, rules) == {
        "type": "Point",
        "coordinates": expected,
    }


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y]}


def test_without_a_margin_a_position_lies_on_the_image() -> None:
    for x, y in [(0.0, 0.0), (1000.0, 500.0)]:
        check_geometry(point(x, y), RULES)
    for x, y in [(-0.01, 0.0), (1000.01, 0.0), (0.0, -0.01), (0.0, 500.01)]:
        assert refused(point(x, y)).endswith("lies outside the slide (1000×500 px at level 0)")
    assert refused(point(-3, 600)).startswith("position (-3, 600) lies outside")


def test_the_margin_is_a_fraction_of_each_side() -> None:
    rules = GeometryRules(1000, 500, margin_fraction=0.01)  # 10 px along x, 5 px along y
    for x, y in [(-10.0, 0.0), (1010.0, 0.0), (0.0, -5.0), (0.0, 505.0)]:
        check_geometry(point(x, y), rules)
    for x, y in [(-10.5, 0.0), (1010.5, 0.0), (0.0, -5.5), (0.0, 505.5), (0.0, -8.0)]:
        refused(point(x, y), rules)


def test_the_margin_is_at_least_margin_px() -> None:
    rules = GeometryRules(1000, 500, margin_fraction=0.01, margin_px=16)
    assert rules.margin(1000) == 16 and rules.margin(500) == 16
    assert rules.margin(100_000) == 1000  # the fraction, where it is more
    check_geometry(point(-16, 516), rules)
    refused(point(-16.5, 0), rules)


def test_at_most_max_positions_per_feature() -> None:
    rules = GeometryRules(1000, 500, max_positions=10)
    # Two closed rings of 5 positions: 10 in all, holes and polygons counted together.
    check_geometry({"type": "MultiPolygon", "coordinates": VALID["MultiPolygon"]}, rules)
    eleven = {"type": "MultiPoint", "coordinates": [[i, i] for i in range(11)]}
    assert refused(eleven, rules) == "at most 10 positions per feature"


RING_MESSAGE = (
    "a polygon ring must be closed (its last position equals its first) "
    "and have at least 4 positions"
)


@pytest.mark.parametrize(
    "coordinates",
    [
        [ring(0, 0, 100)[:-1]],  # not closed
        [[[0, 0], [10, 0], [0, 0]]],  # closed, 3 positions
        [ring(0, 0, 100), ring(10, 10, 20)[:-1]],  # its hole not closed
    ],
)
def test_polygon_rings_must_be_closed_with_four_positions(coordinates: Any) -> None:
    assert refused({"type": "Polygon", "coordinates": coordinates}) == RING_MESSAGE
    multi = {"type": "MultiPolygon", "coordinates": [[ring(0, 0, 50)], coordinates]}
    assert refused(multi) == RING_MESSAGE


def test_lines_need_two_positions() -> None:
    one = [[1, 2]]
    assert refused({"type": "LineString", "coordinates": one}) == (
        "a LineString needs at least 2 positions"
    )
    assert refused({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], one]}) == (
        "each line of a MultiLineString needs at least 2 positions"
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, False, "1", None, [1]])
def test_coordinates_are_finite_numbers(bad: Any) -> None:
    for position in ([bad, 1], [1, bad]):
        message = refused({"type": "Point", "coordinates": position})
        assert message == "positions must be finite numbers"


WRONG_SHAPES: dict[str, tuple[Any, str]] = {
    "no geometry": (None, "a feature needs a geometry"),
    "a list": ([[1, 2]], "a feature needs a geometry"),
    "a point of one number": ({"type": "Point", "coordinates": [1]}, "a position is [x, y]"),
    "a point of four": ({"type": "Point", "coordinates": [1, 2, 3, 4]}, "a position is [x, y]"),
    "a point as a line": ({"type": "Point", "coordinates": [[1, 2]]}, "a position is [x, y]"),
    "a line as a point": ({"type": "LineString", "coordinates": [1, 2]}, "nested arrays"),
    "a polygon as a line": ({"type": "Polygon", "coordinates": [[1, 2], [3, 4]]}, "nested"),
    "no coordinates": ({"type": "Polygon"}, "coordinates must be nested arrays"),
    "an object": ({"type": "Point", "coordinates": {"x": 1, "y": 2}}, "nested arrays"),
    "an empty line": ({"type": "LineString", "coordinates": []}, "coordinates must not be empty"),
    "an empty ring": ({"type": "Polygon", "coordinates": [[]]}, "coordinates must not be empty"),
    "too deep": ({"type": "MultiPoint", "coordinates": [[[1, 2]]]}, "a position is [x, y]"),
}


@pytest.mark.parametrize("case", sorted(WRONG_SHAPES))
def test_wrong_nesting_is_refused(case: str) -> None:
    value, fragment = WRONG_SHAPES[case]
    assert fragment in refused(value)


def every_message() -> list[str]:
    values = [value for value, _ in WRONG_SHAPES.values()]
    values += [
        {"type": "Circle", "coordinates": [1, 2]},
        point(math.nan, 1),
        point(5000, 1),
        {"type": "Polygon", "coordinates": [ring(0, 0, 10)[:-1]]},
        {"type": "LineString", "coordinates": [[1, 2]]},
        {"type": "MultiPoint", "coordinates": [[1, 1]] * 10_001},
    ]
    return [refused(value) for value in values]


def test_every_message_is_a_short_plain_sentence() -> None:
    for message in every_message():
        # Read after "feature 3: " by the callers: lowercase, one line, no Python internals.
        assert message and message[0].islower() and "\n" not in message, message
        assert len(message) < 200, message
        for internal in ("Traceback", "Error", "NoneType", "<class", "list index"):
            assert internal not in message, message


@pytest.mark.parametrize("kind", [["Point"], {"name": "Point"}])
def test_a_type_that_is_not_a_string_is_refused(kind: Any) -> None:
    refused({"type": kind, "coordinates": [1, 2]})


def test_an_integer_too_large_for_a_float_is_refused() -> None:
    # json.loads gives a Python int for a 400-digit number (a float would be inf).
    assert refused(point(10**400, 1)) == "positions must be finite numbers"
