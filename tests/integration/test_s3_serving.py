"""Slides served straight from a real S3 server (SeaweedFS): same tiles as from local disk,
and a never-opened slide costs at most 3 GET requests for its first tile."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import LocalStore, S3Store
from tests.testdata import READABLE, sample
from tiles.cache import TileCache
from tiles.ingest import inspect_slide, store_original
from tiles.pool import ReaderPool
from tiles.service import TileService


def service_for(store, cache_dir: Path) -> TileService:
    return TileService(ReaderPool(store, cache_dir), TileCache(0))


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_tiles_from_s3_equal_tiles_from_local_disk(s3_store: S3Store, tmp_path, relative):
    inspection = inspect_slide(sample(relative))
    local = LocalStore(tmp_path / "local")
    loc_s3 = store_original(s3_store, "slide1", inspection)
    loc_local = store_original(local, "slide1", inspection)
    assert loc_s3 == loc_local
    from_s3 = service_for(s3_store, tmp_path / "c1")
    from_disk = service_for(local, tmp_path / "c2")
    dz = from_s3.deepzoom(loc_s3)
    for z in (dz.z_max, dz.z_max - 1, max(0, dz.z_max - 4)):
        count = dz.t_count(z)
        for col, row in {(0, 0), (count.width - 1, count.height - 1)}:
            a = from_s3.deepzoom_tile(loc_s3, z, col, row).data
            assert a == from_disk.deepzoom_tile(loc_local, z, col, row).data


@pytest.mark.parametrize(
    "relative", ["aperio/CMU-1-Small-Region.svs", "hamamatsu/test3-DAPI-2-(387).ndpi"]
)
def test_first_tile_of_a_never_opened_slide_costs_at_most_three_gets(
    s3_store: S3Store, tmp_path, relative
):
    loc = store_original(s3_store, "cold", inspect_slide(sample(relative)))
    service = service_for(s3_store, tmp_path / "cache")
    dz = service.deepzoom(loc)
    before = s3_store.requests.copy()
    service.deepzoom_tile(loc, dz.z_max, 1, 1)
    gets = s3_store.requests["GET"] - before["GET"]
    assert gets <= 3, gets
    assert s3_store.requests["HEAD"] == before["HEAD"]  # no stat on the hot path
    # The next tile of the now-open slide costs one GET for its tile data, no more.
    before = s3_store.requests.copy()
    service.deepzoom_tile(loc, dz.z_max, 2, 2)
    assert s3_store.requests["GET"] - before["GET"] <= 2  # a 256 tile may span two rows of 240
