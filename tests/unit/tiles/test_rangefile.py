"""RangeFile: a file over ranged reads, and header packs that spare the reopen."""

import io
from typing import BinaryIO, cast

import tifffile

from storage.rangefile import RangeFile, pack_spans, unpack_spans

DATA = bytes(range(256)) * 1000  # 256,000 bytes


class CountingFetch:
    def __init__(self, data: bytes):
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset : offset + length]


def test_reads_match_the_object_across_block_boundaries():
    fetch = CountingFetch(DATA)
    f = RangeFile(fetch, len(DATA), block_size=4096)
    f.seek(4090)
    assert f.read(20) == DATA[4090:4110]
    assert f.pread(100_000, 9000) == DATA[100_000:109_000]
    f.seek(-10, io.SEEK_END)
    assert f.read() == DATA[-10:]
    assert f.read(5) == b""


def test_one_request_per_miss_and_none_for_cached_blocks():
    fetch = CountingFetch(DATA)
    f = RangeFile(fetch, len(DATA), block_size=4096)
    f.pread(10_000, 10_000)  # blocks 2..4: one request
    assert len(fetch.calls) == 1
    f.pread(12_000, 100)
    assert len(fetch.calls) == 1


def test_primed_spans_need_no_request():
    fetch = CountingFetch(DATA)
    pack = pack_spans([(0, DATA[:5000]), (4000, DATA[4000:9000]), (50_000, DATA[50_000:50_100])])
    spans = unpack_spans(pack)
    assert spans == [(0, DATA[:9000]), (50_000, DATA[50_000:50_100])]
    f = RangeFile(fetch, len(DATA), primed=spans)
    assert f.pread(8000, 1000) == DATA[8000:9000]
    assert f.pread(50_010, 50) == DATA[50_010:50_060]
    assert fetch.calls == []


def test_a_tiff_parsed_at_ingest_reopens_from_its_pack_without_requests(tmp_path):
    import numpy as np

    path = tmp_path / "pyramid.tif"
    image = np.random.default_rng(0).integers(0, 255, (600, 500, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(256, 256), subifds=1)
        tif.write(image[::2, ::2], tile=(256, 256), subfiletype=1)
    data = path.read_bytes()

    first = RangeFile(CountingFetch(data), len(data), block_size=4096)
    with tifffile.TiffFile(cast(BinaryIO, first)) as tif:
        offsets = [list(p.dataoffsets) for p in tif.pages]
    pack = pack_spans(first.fetched)

    fetch = CountingFetch(data)
    again = RangeFile(fetch, len(data), primed=unpack_spans(pack))
    with tifffile.TiffFile(cast(BinaryIO, again)) as tif:
        assert [list(p.dataoffsets) for p in tif.pages] == offsets
    assert fetch.calls == []
