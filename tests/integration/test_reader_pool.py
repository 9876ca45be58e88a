"""Readers are shared across requests; one that failed is evicted and reopened."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage import LocalStore
from tests.testdata import sample
from tiles.errors import CorruptSlide
from tiles.formats import collect
from tiles.geometry import Region
from tiles.ingest import Inspection, open_local, store_original
from tiles.pool import ReaderPool


def stored(store: LocalStore, slide_id: str, path: Path):
    """Stores a slide without the ingest probe (which would refuse a corrupt one)."""
    files = collect(path)
    reader, index = open_local(files)
    inspection = Inspection(files=files, properties=reader.properties, index=index)
    reader.close()
    return store_original(store, slide_id, inspection)


def test_one_reader_is_shared_by_concurrent_requests(tmp_path):
    store = LocalStore(tmp_path / "store")
    loc = stored(store, "shared", sample("aperio/CMU-1-Small-Region.svs"))
    pool = ReaderPool(store, tmp_path / "cache")
    with ThreadPoolExecutor(8) as ex:
        readers = list(ex.map(lambda _: pool.get(loc), range(32)))
    assert all(r is readers[0] for r in readers)


def test_a_reader_that_failed_is_evicted_and_reopened(tmp_path):
    store = LocalStore(tmp_path / "store")
    # unreadable.svs is small.svs with corrupt JPEG data: it opens, then fails to decode.
    loc = stored(store, "flaky", sample("broken/unreadable.svs"))
    pool = ReaderPool(store, tmp_path / "cache")
    first = pool.get(loc)
    with pytest.raises(CorruptSlide):
        pool.run(loc, lambda r: r.read_region(0, Region(0, 0, 16, 16)))
    # Repaired in storage (same layout, good pixels): the next request reopens and works.
    store.put_bytes(loc.main_key, sample("aperio/small.svs").read_bytes())
    pixels = pool.run(loc, lambda r: r.read_region(0, Region(0, 0, 16, 16)))
    assert pixels.shape == (16, 16, 3)
    assert pool.get(loc) is not first
