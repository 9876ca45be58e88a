"""Areas and lengths of drawn shapes, as a pathologist reads them: mm² and µm from level-0
pixels and the slide's pixel size (which may differ along x and y). Expected values are
worked out by hand in each test."""

from __future__ import annotations

import pytest

from exchange.annotations.measure import (
    geometry_area_mm2,
    line_length_mm,
    line_length_um,
    polygon_area_mm2,
    polygon_area_px,
    ring_area_px,
)
from exchange.annotations.service import measure
from exchange.core.models import Slide


def rectangle(x: float, y: float, w: float, h: float) -> list[list[float]]:
    """A closed GeoJSON ring, counter-clockwise as drawn on screen (y down)."""
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]


def test_a_rectangle_in_px_and_mm2() -> None:
    ring = rectangle(0, 0, 1000, 2000)
    assert ring_area_px(ring) == 2_000_000
    # 1000 px x 0.25 µm = 250 µm, 2000 px x 0.25 µm = 500 µm: 125,000 µm² = 0.125 mm².
    assert polygon_area_mm2([ring], 0.25, 0.25) == pytest.approx(0.125)


def test_the_area_does_not_depend_on_closing_the_ring_nor_its_direction() -> None:
    triangle = [[0, 0], [4, 0], [0, 3]]  # half of 4 x 3
    assert ring_area_px(triangle) == 6
    assert ring_area_px([*triangle, triangle[0]]) == 6
    assert ring_area_px(triangle[::-1]) == 6
    assert ring_area_px(rectangle(500, 700, 10, 20)) == 200  # away from the origin too


def test_fewer_than_three_positions_have_no_area() -> None:
    assert ring_area_px([]) == 0
    assert ring_area_px([[0, 0], [10, 10]]) == 0
    assert polygon_area_px([]) == 0


def test_holes_are_taken_off_the_outer_ring() -> None:
    outer = rectangle(0, 0, 1000, 1000)
    holes = [rectangle(100, 100, 200, 300), rectangle(600, 600, 100, 100)]
    # 1,000,000 - 60,000 - 10,000 px²; at 1 µm/px that is 930,000 µm² = 0.93 mm².
    assert polygon_area_px([outer, *holes]) == 930_000
    assert polygon_area_mm2([outer, *holes], 1.0, 1.0) == pytest.approx(0.93)


def test_a_hole_larger_than_its_polygon_leaves_no_negative_area() -> None:
    assert polygon_area_px([rectangle(0, 0, 10, 10), rectangle(0, 0, 20, 20)]) == 0


def test_anisotropic_pixels() -> None:
    ring = rectangle(0, 0, 1000, 2000)
    # 1000 px x 0.5 µm = 500 µm wide, 2000 px x 0.25 µm = 500 µm high: 0.25 mm².
    assert polygon_area_mm2([ring], 0.5, 0.25) == pytest.approx(0.25)
    # A line 300 px right and 100 px down, at 1 µm/px in x and 4 µm/px in y: a 300-400-500
    # triangle in µm.
    assert line_length_um([[0, 0], [300, 100]], 1.0, 4.0) == pytest.approx(500)


def test_line_lengths_in_um_and_mm() -> None:
    assert line_length_um([[0, 0], [3000, 4000]], 1.0, 1.0) == pytest.approx(5000)
    assert line_length_mm([[0, 0], [3000, 4000]], 1.0, 1.0) == pytest.approx(5)
    # A polyline adds its segments: 100 px + 100 px at 0.5 µm/px.
    assert line_length_um([[0, 0], [100, 0], [100, 100]], 0.5, 0.5) == pytest.approx(100)
    assert line_length_um([[7, 7]], 0.5, 0.5) == 0
    assert line_length_um([], 0.5, 0.5) == 0


def test_geometry_areas_by_type() -> None:
    square = rectangle(0, 0, 1000, 1000)  # 1 mm² at 1 µm/px
    assert geometry_area_mm2({"type": "Polygon", "coordinates": [square]}, 1, 1) == 1
    multi = {"type": "MultiPolygon", "coordinates": [[square], [rectangle(2000, 0, 500, 1000)]]}
    assert geometry_area_mm2(multi, 1, 1) == pytest.approx(1.5)
    for other in ({"type": "Point", "coordinates": [1, 2]}, {"type": "LineString"}):
        assert geometry_area_mm2(other, 1, 1) is None


def slide(mpp_x: float | None, mpp_y: float | None) -> Slide:
    return Slide(id="s1", width=10_000, height=10_000, mpp_x=mpp_x, mpp_y=mpp_y)


def test_what_an_annotation_shows_depends_on_the_known_pixel_size() -> None:
    region = {"type": "Polygon", "coordinates": [rectangle(0, 0, 1000, 2000)]}
    line = {"type": "LineString", "coordinates": [[0, 0], [3000, 4000]]}
    assert measure(region, slide(0.25, 0.25)) == {"area_mm2": pytest.approx(0.125)}
    assert measure(line, slide(0.5, 0.5)) == {"length_um": pytest.approx(2500)}
    # One axis known: the pixel is taken as square.
    assert measure(region, slide(0.25, None)) == {"area_mm2": pytest.approx(0.125)}
    assert measure(region, slide(None, 0.25)) == {"area_mm2": pytest.approx(0.125)}
    # Unknown pixel size, or a point: nothing to show.
    assert measure(region, slide(None, None)) == {}
    assert measure({"type": "Point", "coordinates": [1, 2]}, slide(0.25, 0.25)) == {}
