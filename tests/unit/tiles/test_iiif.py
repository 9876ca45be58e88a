"""IIIF Image API 3.0 request parsing."""

import pytest

from tiles.errors import InvalidRequest
from tiles.geometry import Region, Size
from tiles.iiif import Limits, parse_region, parse_request, parse_rotation, parse_size

IMAGE = Size(2220, 2967)
LIMITS = Limits(4096, 4096, 4096 * 4096)


def test_regions():
    assert parse_region(IMAGE, "full") == Region(0, 0, 2220, 2967)
    assert parse_region(IMAGE, "square") == Region(0, 373, 2220, 2220)
    assert parse_region(IMAGE, "10,20,30,40") == Region(10, 20, 30, 40)
    # A region reaching past the edge is cropped.
    assert parse_region(IMAGE, "2000,2900,1000,1000") == Region(2000, 2900, 220, 67)
    assert parse_region(IMAGE, "pct:50,50,50,50") == Region(1110, 1484, 1110, 1483)


@pytest.mark.parametrize(
    "text", ["", "0,0,0,10", "0,0,10", "-1,0,10,10", "3000,0,10,10", "a,b,c,d", "pct:x", "fulll"]
)
def test_bad_regions(text):
    with pytest.raises(InvalidRequest):
        parse_region(IMAGE, text)


def test_sizes():
    region = Region(0, 0, 1000, 500)
    assert parse_size(region, "max", LIMITS) == Size(1000, 500)
    assert parse_size(region, "500,", LIMITS) == Size(500, 250)
    assert parse_size(region, ",100", LIMITS) == Size(200, 100)
    assert parse_size(region, "pct:10", LIMITS) == Size(100, 50)
    assert parse_size(region, "300,300", LIMITS) == Size(300, 300)
    assert parse_size(region, "!300,300", LIMITS) == Size(300, 150)
    assert parse_size(region, "^2000,", LIMITS) == Size(2000, 1000)
    assert parse_size(region, "^max", LIMITS) == Size(4096, 2048)


def test_max_is_bounded_by_the_limits():
    region = Region(0, 0, 100_000, 50_000)
    assert parse_size(region, "max", LIMITS) == Size(4096, 2048)


@pytest.mark.parametrize(
    "text", ["2000,", ",600", "pct:101", "0,", "!300,", ",", "big", "8000,4000"]
)
def test_bad_sizes(text):
    with pytest.raises(InvalidRequest):
        parse_size(Region(0, 0, 1000, 500), text, LIMITS)


def test_above_limits_even_with_upscaling_is_refused():
    with pytest.raises(InvalidRequest):
        parse_size(Region(0, 0, 1000, 500), "^5000,", LIMITS)


def test_rotation_and_mirroring():
    assert parse_rotation("0") == (False, 0)
    assert parse_rotation("!90") == (True, 90)
    assert parse_rotation("270") == (False, 270)
    for bad in ("45", "360", "-90", "x", "!!90"):
        with pytest.raises(InvalidRequest):
            parse_rotation(bad)


def test_quality_and_format():
    req = parse_request(IMAGE, "full", "256,", "0", "gray.png", LIMITS)
    assert (req.quality, req.format, req.size) == ("gray", "png", Size(256, 342))
    for bad in ("default.gif", "sepia.jpg", "default", "default.jpg.exe"):
        with pytest.raises(InvalidRequest):
            parse_request(IMAGE, "full", "256,", "0", bad, LIMITS)
