"""Tile geometry through the tile service, on in-memory slides (no files): which IIIF
requests are DeepZoom tiles (the fast path's question, tiles.fastpath), and that both
protocols give a tile the pixels of its region."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage import LocalStore
from tiles.cache import TileCache
from tiles.formats import ReaderKind
from tiles.geometry import DeepZoom, Size
from tiles.location import SlideLocation
from tiles.pool import ReaderPool
from tiles.readers.base import SlideReader
from tiles.readers.memory import MemoryReader
from tiles.service import TileService


class MemoryPool(ReaderPool):
    """A reader pool whose slides are in-memory readers, opened by slide id."""

    def __init__(self, root: Path, readers: dict[str, MemoryReader]) -> None:
        super().__init__(LocalStore(root / "store"), root / "cache")
        self.memory = readers

    def _open(self, loc: SlideLocation) -> SlideReader:
        return self.memory[loc.slide_id]


def location(slide_id: str, l_sizes: tuple[Size, ...]) -> SlideLocation:
    return SlideLocation(
        slide_id=slide_id,
        kind=ReaderKind.TIFF,
        main_key=f"slides/{slide_id}/slide.tiff",
        main_size=1,
        keys=(),
        index_key=None,
        content_hash=slide_id * 4,
        l_sizes=l_sizes,
    )


def service_for(tmp_path: Path, readers: dict[str, MemoryReader]) -> TileService:
    return TileService(MemoryPool(tmp_path, readers), TileCache(64 * 1024**2))


def iiif_forms(dz: DeepZoom, z: int, col: int, row: int) -> list[tuple[str, str]]:
    """The region and size strings IIIF viewers send for tile (z, col, row)."""
    r, t = dz.l0_tile(z, col, row), dz.z_tile(z, col, row)
    region = f"{r.x},{r.y},{r.width},{r.height}"
    forms = [(region, f"{t.width},{t.height}"), (region, f"{t.width},")]
    if (r.width, r.height) == (t.width, t.height):
        forms.append((region, "max"))
    return forms


@pytest.mark.parametrize(
    "size",
    [Size(2220, 2967), Size(512, 256), Size(1, 1), Size(1000, 1000), Size(257, 3000)],
    ids=str,
)
def test_every_tile_asked_as_iiif_is_found_as_the_same_deepzoom_tile(tmp_path, size):
    service = service_for(tmp_path, {})
    loc = location("grid", (size,))
    dz = service.deepzoom(loc)
    for z in range(dz.level_count):
        count = dz.t_count(z)
        for col in range(count.width):
            for row in range(count.height):
                dz_etag = service.deepzoom_etag(loc, z, col, row)
                for region, out in iiif_forms(dz, z, col, row):
                    found = service.iiif_grid_tile(loc, region, out)
                    # The fast path and the route agree: same tile, same ETag, same bytes.
                    _req, etag = service.iiif_parse(loc, region, out, "0", "default.jpg")
                    assert (etag == dz_etag) == (found is not None), (z, col, row, region, out)
                    if out.endswith(",") and found is None:
                        # "w," keeps the region's aspect: a tile rounded at the edge may
                        # not be it (2 x 2 pixels for 2220 x 2967 asks 2 x 3).
                        continue
                    assert found == (z, col, row), (region, out)


@pytest.mark.parametrize(
    ("region", "out"),
    [
        ("1,0,256,256", "256,256"),  # off the grid by a pixel
        ("0,0,256,256", "255,256"),  # resized
        ("0,0,256,256", "128,128"),  # a level that is not a tile there
        ("0,0,512,512", "512,512"),  # two tiles' worth at full resolution
        ("0,0,256,255", "256,255"),  # short of the tile (not at the slide's edge)
        ("0,0,300,256", "300,256"),  # wider than a tile
        ("2048,2816,172,151", "173,151"),  # the edge tile, a pixel too wide
        ("4096,0,256,256", "256,256"),  # outside the slide
        ("0,0,0,256", "256,256"),  # empty
    ],
)
def test_requests_that_are_not_a_grid_tile_are_left_to_the_route(tmp_path, region, out):
    service = service_for(tmp_path, {})
    loc = location("grid", (Size(2220, 2967),))
    assert service.iiif_grid_tile(loc, region, out) is None


def test_a_region_past_the_edge_is_cropped_as_the_route_crops_it(tmp_path):
    service = service_for(tmp_path, {})
    loc = location("grid", (Size(2220, 2967),))
    # The last column asked with the full tile span: the spec crops it to the image.
    assert service.iiif_grid_tile(loc, "2048,0,256,256", "172,256") == (12, 8, 0)
    assert service.iiif_grid_tile(loc, "2048,0,256,256", "172,") == (12, 8, 0)
    # "full" is the whole slide: a tile only at the level where the slide fits in one.
    assert service.iiif_grid_tile(loc, "full", "139,186") == (8, 0, 0)
    assert service.iiif_grid_tile(loc, "full", "max") is None


def blocks(width: int, height: int, block: int = 64) -> np.ndarray:
    """A slide of flat coloured squares: each tile's content is known exactly."""
    yy, xx = np.mgrid[0:height, 0:width]
    bx, by = xx // block, yy // block
    image = np.stack([(bx * 53) % 256, (by * 97) % 256, ((bx + by) * 31) % 256], axis=-1).astype(
        np.uint8
    )
    return image


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_deepzoom_and_iiif_tiles_show_the_pixels_of_their_region(tmp_path):
    level0 = blocks(1000, 700)
    reader = MemoryReader.pyramid(level0, 3)
    service = service_for(tmp_path, {"blocks": reader})
    loc = location("blocks", reader.properties.l_sizes)
    dz = service.deepzoom(loc)
    z = dz.z_max
    # An inner tile and the bottom-right edge tile, at full resolution.
    for col, row in [(1, 1), (3, 2)]:
        r = dz.l0_tile(z, col, row)
        tile = decoded(service.deepzoom_tile(loc, z, col, row).data)
        expected = level0[r.y : r.y + r.height, r.x : r.x + r.width].astype(np.int16)
        assert tile.shape == expected.shape
        assert np.abs(tile - expected).mean() < 4  # JPEG's loss only
        req, etag = service.iiif_parse(
            loc, f"{r.x},{r.y},{r.width},{r.height}", "max", "0", "default.jpg"
        )
        assert (
            service.iiif_image(loc, req, etag).data == service.deepzoom_tile(loc, z, col, row).data
        )
    # One level down: a tile covers 512 level-0 pixels, shown at half size.
    half = decoded(service.deepzoom_tile(loc, z - 1, 0, 0).data)
    assert half.shape == (256, 256, 3)
    expected = level0[0:512:2, 0:512:2].astype(np.int16)
    assert np.abs(half - expected).mean() < 8
