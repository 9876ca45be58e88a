"""Every readable sample slide, stored and served through DeepZoom and IIIF, matches what
OpenSlide's own DeepZoom rendering shows, at every level."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from storage import LocalStore
from tests.testdata import READABLE, sample
from tiles.cache import TileCache
from tiles.geometry import Region, Size
from tiles.ingest import inspect_slide, store_original
from tiles.location import SlideLocation
from tiles.pool import ReaderPool
from tiles.render import render_region
from tiles.service import TileService

# Decoders and resampling differ slightly; a wrong tile differs by tens of levels.
MAX_MEAN_ABS_DIFF = 2.5
# Tiles of a few pixels are whole-slide averages, where filters and JPEG chroma
# subsampling of a 2x2 image dominate: only gross errors are caught there.
MAX_MEAN_ABS_DIFF_TINY = 20.0


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.fixture
def served(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    service = TileService(ReaderPool(store, tmp_path / "cache"), TileCache(32 << 20))

    def ingest(relative: str) -> tuple[SlideLocation, Path]:
        path = sample(relative)
        loc = store_original(store, "s" + str(abs(hash(relative)) % 10**8), inspect_slide(path))
        return loc, path

    yield service, ingest
    service.pool.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def _openslide_region(slide: openslide.OpenSlide, l0: Region, out: Region) -> Image.Image:
    level = slide.get_best_level_for_downsample(l0.width / out.width)
    ds = slide.level_downsamples[level]
    size = (max(1, round(l0.width / ds)), max(1, round(l0.height / ds)))
    region = slide.read_region((l0.x, l0.y), level, size).convert("RGB")
    return region.resize((out.width, out.height), Image.Resampling.LANCZOS, reducing_gap=2.0)


def _tiles_to_check(dz, z: int) -> list[tuple[int, int]]:
    count = dz.t_count(z)
    corners = {(0, 0), (count.width - 1, count.height - 1), (count.width // 2, count.height // 2)}
    corners |= {(count.width - 1, 0), (0, count.height - 1)}
    return sorted(corners)


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_deepzoom_tiles_match_openslide_at_every_level(served, relative):
    service, ingest = served
    loc, path = ingest(relative)
    (width, height), kind = READABLE[relative]
    assert (loc.l0_size.width, loc.l0_size.height) == (width, height)
    assert loc.kind.value == kind
    slide = openslide.OpenSlide(str(path))
    reference = DeepZoomGenerator(slide, 256, 0, limit_bounds=False)
    dz = service.deepzoom(loc)
    assert dz.level_count == reference.level_count
    for z in range(dz.level_count):
        assert (dz.z_size(z).width, dz.z_size(z).height) == reference.level_dimensions[z]
        for col, row in _tiles_to_check(dz, z):
            expected = dz.z_tile(z, col, row)
            size = Size(expected.width, expected.height)
            # Our pixels before JPEG encoding, from the reader that serves this slide.
            l0 = dz.l0_tile(z, col, row)
            exact = service.pool.run(loc, lambda r, l0=l0, size=size: render_region(r, l0, size))
            ours = np.asarray(exact, np.int16)
            assert ours.shape == (expected.height, expected.width, 3), (z, col, row)
            their_tile = reference.get_tile(z, (col, row)).convert("RGB")
            if their_tile.size != (expected.width, expected.height):
                # OpenSlide's thumbnail() keeps the aspect ratio of its rounded read, so some
                # edge tiles come out a pixel short of the DeepZoom grid: then compare with
                # OpenSlide's pixels of the same region, scaled to the grid's size.
                assert abs(their_tile.width - expected.width) <= 1, (z, col, row)
                assert abs(their_tile.height - expected.height) <= 1, (z, col, row)
                their_tile = _openslide_region(slide, dz.l0_tile(z, col, row), expected)
            theirs = np.asarray(their_tile, np.int16)
            diff = float(np.abs(ours - theirs).mean())
            tiny = min(expected.width, expected.height) < 32
            limit = MAX_MEAN_ABS_DIFF_TINY if tiny else MAX_MEAN_ABS_DIFF
            assert diff < limit, f"level {z} tile {col}_{row}: mean diff {diff:.1f}"
            # The served tile is that rendering, JPEG-encoded.
            served_tile = _decode(service.deepzoom_tile(loc, z, col, row).data)
            assert served_tile.shape == ours.shape
            # (JPEG Q80 on dense low-resolution content gives 22-26 dB.)
            assert _psnr(served_tile, ours) > (12 if tiny else 20), (z, col, row)


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_iiif_tiles_and_regions_match_openslide(served, relative):
    service, ingest = served
    loc, path = ingest(relative)
    slide = openslide.OpenSlide(str(path))
    w, h = slide.dimensions
    # A tile-aligned IIIF request gives the very bytes of the DeepZoom tile.
    dz = service.deepzoom(loc)
    tile_w, tile_h = min(256, w), min(256, h)
    req, etag = service.iiif_parse(loc, f"0,0,{tile_w},{tile_h}", f"{tile_w},", "0", "default.jpg")
    assert (
        service.iiif_image(loc, req, etag).data == service.deepzoom_tile(loc, dz.z_max, 0, 0).data
    )
    # An arbitrary full-resolution region, as PNG (lossless on our side).
    rw, rh = max(1, w // 3), max(1, h // 4)
    x, y = w // 3, h // 2
    req, etag = service.iiif_parse(loc, f"{x},{y},{rw},{rh}", "max", "0", "default.png")
    ours = _decode(service.iiif_image(loc, req, etag).data)
    theirs = np.asarray(slide.read_region((x, y), 0, (rw, rh)).convert("RGB"), np.int16)
    assert ours.shape == theirs.shape
    # Same decoder on both sides for JPEG slides: near-identical pixels.
    assert float(np.abs(ours - theirs).mean()) < 2.0
