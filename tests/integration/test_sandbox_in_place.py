"""A single-file TIFF-family slide in storage is validated where it lies, by byte ranges
(tiles.sandbox.inspect_stored_in_sandbox): the result and the refusals must be those of the
local-file inspection that `iain ingest` runs, under the same time and memory limits."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import ObjectStore
from tests.integration.test_fuzz_ingest import mutate
from tests.testdata import READABLE, REFUSED, sample
from tiles.errors import CorruptSlide, TilesError
from tiles.ingest import Inspection
from tiles.sandbox import inspect_in_sandbox, inspect_stored_in_sandbox

ROOT = Path("/stored")
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def in_store(store: ObjectStore, path: Path, data: bytes | None = None) -> Inspection | None:
    """The in-place inspection of `path`'s bytes (or `data`) stored in `store`."""
    data = path.read_bytes() if data is None else data
    key = f"slides/x/original/{path.name}"
    store.put_bytes(key, data)
    read = functools.partial(store.get_range, key)
    return inspect_stored_in_sandbox(read, len(data), ROOT / path.name, ROOT)


def outcome(inspect: Callable[[], Inspection | None]) -> object:
    try:
        inspection = inspect()
    except TilesError as exc:
        return f"refused: {exc.message}"
    if inspection is None:
        return None
    # (Not files.vendor: OpenSlide names no vendor for a damaged file, tifffile still does;
    # nothing reads it once the reader kind is chosen.)
    return (inspection.properties, inspection.index, inspection.files.kind)


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_readable_slide_in_storage_is_recorded_as_a_local_ingest_would_record_it(
    s3_store: ObjectStore, relative: str
) -> None:
    path = sample(relative)
    local = inspect_in_sandbox(path)
    stored = in_store(s3_store, path)
    if READABLE[relative][1] != "tiff":
        assert stored is None  # OpenSlide formats: the hub makes a local copy instead
        return
    assert stored is not None
    assert stored.properties == local.properties
    assert stored.index == local.index  # the header pack that serves its first tile
    assert stored.files.kind == local.files.kind and stored.files.vendor == local.files.vendor
    assert stored.total_bytes == local.total_bytes
    assert stored.files.main == ROOT / path.name


@pytest.mark.parametrize("relative", sorted(REFUSED))
def test_refused_file_in_storage_gets_the_reason_a_local_file_gets(
    s3_store: ObjectStore, relative: str
) -> None:
    path = sample(relative)
    with pytest.raises(TilesError) as local:
        inspect_in_sandbox(path)
    try:
        stored = in_store(s3_store, path)
    except TilesError as exc:
        assert exc.message == local.value.message
        assert type(exc) is type(local.value)
    else:
        assert stored is None  # a DICOM file: refused on its local copy, as before


def test_mutated_slides_get_the_same_verdict_in_storage_as_on_disk(
    local_store: ObjectStore, tmp_path: Path
) -> None:
    sources = [sample(rel) for rel in sorted(READABLE) if READABLE[rel][1] == "tiff"]
    rng = random.Random(20261124)
    compared = 0
    for case in range(120):
        source = sources[case % len(sources)]
        _kind, data = mutate(source.read_bytes(), rng)
        path = tmp_path / f"case{case}{source.suffix}"
        path.write_bytes(data)
        stored = outcome(functools.partial(in_store, local_store, path, data))
        if stored is None:
            continue  # no longer a TIFF: goes through the local copy, as before
        on_disk = outcome(functools.partial(inspect_in_sandbox, path))
        assert stored == on_disk, (case, _kind)
        compared += 1
    assert compared > 80


def test_storage_that_stalls_cannot_hold_the_parser_past_its_time_limit() -> None:
    data = sample(NDPI).read_bytes()

    def stalling(offset: int, length: int) -> bytes:
        time.sleep(1.5)
        return data[offset : offset + length]

    started = time.monotonic()
    with pytest.raises(CorruptSlide, match=r"x\.ndpi: parsing took longer than 0\.5 s"):
        inspect_stored_in_sandbox(stalling, len(data), ROOT / "x.ndpi", ROOT, timeout_s=0.5)
    assert time.monotonic() - started < 5


def test_parser_that_needs_more_memory_than_allowed_is_refused_like_on_disk(
    local_store: ObjectStore,
) -> None:
    path = sample(NDPI)
    data = path.read_bytes()
    key = "slides/x/original/x.ndpi"
    local_store.put_bytes(key, data)
    read = functools.partial(local_store.get_range, key)
    limit = 100 * 1024**2
    with pytest.raises(TilesError) as on_disk:
        inspect_in_sandbox(path, memory_bytes=limit)
    with pytest.raises(TilesError) as stored:
        inspect_stored_in_sandbox(read, len(data), ROOT / path.name, ROOT, memory_bytes=limit)
    assert stored.value.message == on_disk.value.message
    # The same file within the default limit is a slide.
    assert inspect_stored_in_sandbox(read, len(data), ROOT / path.name, ROOT) is not None
