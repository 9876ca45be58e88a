"""Normalised pyramids: any readable slide rewritten as a tiled JPEG TIFF whose levels are
the DeepZoom levels, so that almost every DeepZoom and IIIF tile is a stored tile.

The pyramid is written by libvips (pyvips), streaming: pixels flow from the original to
the output a few tile rows at a time, whatever the slide's size. libvips reads plain
TIFF-family files itself; any other slide (DICOM, MRXS, JPEG 2000 SVS...) is read through
our own readers and handed to libvips as an uncompressed BigTIFF *stream* generated on
demand, a band of rows at a time.

libvips halves each level rounding down, DeepZoom rounds up: the levels differ by at most
one pixel at the right and bottom edges, where DeepZoom tiles are partial anyway. The tile
service serves a stored tile only when it lies entirely inside the stored level."""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyvips

from storage import ObjectStore
from storage.rangefile import pack_spans, unpack_spans
from tiles.errors import CorruptSlide, TilesError
from tiles.formats import ReaderKind, collect
from tiles.geometry import DeepZoom, Region, Size
from tiles.ingest import open_local
from tiles.location import SlideLocation, slide_prefix
from tiles.readers.base import MAX_REGION_PIXELS, SlideReader
from tiles.readers.tiff import TiffReader

Progress = Callable[[float], None]  # percent done, 0..100

# Rows of level 0 read from our readers at a time (the bridge's memory: BAND_ROWS x width x 3
# per band held), in chunks of CHUNK_WIDTH columns decoded in parallel, PREFETCH bands ahead.
BAND_ROWS = 256
CHUNK_WIDTH = 4096
PREFETCH = 2
# Threads for libvips and for our decoders. Bounded: each thread may reserve its own malloc
# arena (64 MiB of address space), and workers run under an address-space limit.
THREADS = min(8, os.cpu_count() or 2)


# Each build gets keys of its own: a hub that still has the previous pyramid's location
# cached keeps serving consistent bytes after a rebuild (by `iain convert` elsewhere).
def pyramid_key(slide_id: str, build: str) -> str:
    return f"{slide_prefix(slide_id)}pyramid-{build}.tiff"


def pyramid_index_key(slide_id: str, build: str) -> str:
    return f"{slide_prefix(slide_id)}pyramid-{build}-index.bin"


# -- when the original is as good ------------------------------------------------------------


def floor_size(l0: Size, k: int) -> Size:
    """Level-0 size halved k times, rounding down (libvips' and most scanners' levels)."""
    return Size(l0.width >> k, l0.height >> k)


def matching_level(l_sizes: tuple[Size, ...], dz: DeepZoom, z: int) -> int | None:
    """The stored level whose pixel grid is DeepZoom level z (rounded up or down), if any."""
    size = dz.z_size(z)
    floor = floor_size(dz.l0_size, dz.z_max - z)
    for level, l_size in enumerate(l_sizes):
        if l_size in (size, floor):
            return level
    return None


def one_tile_reason(tile_size: int) -> str:
    return f"the slide fits in one {tile_size}x{tile_size} tile: served from the original"


def serves_directly(reader: SlideReader, tile_size: int) -> str | None:
    """Why the original serves DeepZoom as well as a pyramid would, or None if it does not.

    The rule: every DeepZoom level larger than one tile is a stored level made of
    tile_size x tile_size JPEG tiles. Then every full tile is served as stored (zero
    transcode) straight from the original, and the few levels that fit in one tile are
    rendered once from a level at most twice their size, then cached."""
    props = reader.properties
    dz = DeepZoom(props.l0_size, tile_size, 0)
    checked = 0
    for z in range(dz.level_count):
        size = dz.z_size(z)
        if size.width <= tile_size and size.height <= tile_size:
            continue
        checked += 1
        level = matching_level(props.l_sizes, dz, z)
        if level is None:
            return None
        if reader.stored_jpeg(level, 0, 0, tile_size) is None:
            return None
    if checked == 0:
        return one_tile_reason(tile_size)
    return (
        f"the original's levels are the DeepZoom levels, stored as {tile_size}x{tile_size} "
        "JPEG tiles: served as it is"
    )


# -- the BigTIFF bridge from our readers to libvips ------------------------------------------


class _StripStream:
    """An uncompressed RGB BigTIFF of level 0, generated on demand from a reader.

    libvips reads it sequentially through a pyvips.SourceCustom; only the current band of
    rows is held in memory. Seeks anywhere are answered (our readers are random access)."""

    STRIP_ROWS = 16

    def __init__(self, reader: SlideReader) -> None:
        self.reader = reader
        size = reader.properties.l0_size
        self.width, self.height = size.width, size.height
        self.row_bytes = self.width * 3
        n = -(-self.height // self.STRIP_ROWS)
        arrays_at = 16 + 8 + 10 * 20 + 8
        self.data_at = arrays_at + 2 * 8 * n
        strip = self.STRIP_ROWS * self.row_bytes
        offsets = [self.data_at + i * strip for i in range(n)]
        counts = [
            min(self.STRIP_ROWS, self.height - i * self.STRIP_ROWS) * self.row_bytes
            for i in range(n)
        ]

        def array(values: list[int], at: int) -> tuple[int, int, int]:
            # A LONG8 array: inline in the entry when it fits in 8 bytes.
            return (16, len(values), values[0] if len(values) == 1 else at)

        entries = [
            (256, 16, 1, self.width),
            (257, 16, 1, self.height),
            (258, 3, 3, 8 | 8 << 16 | 8 << 32),
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 2),  # RGB
            (273, *array(offsets, arrays_at)),
            (277, 3, 1, 3),
            (278, 16, 1, self.STRIP_ROWS),
            (279, *array(counts, arrays_at + 8 * n)),
            (284, 3, 1, 1),  # chunky
        ]
        head = b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + struct.pack("<Q", len(entries))
        for tag, typ, count, value in entries:
            head += struct.pack("<HHQQ", tag, typ, count, value)
        head += struct.pack("<Q", 0)
        if n > 1:
            head += struct.pack(f"<{n}Q", *offsets) + struct.pack(f"<{n}Q", *counts)
        else:
            head += b"\0" * 16
        assert len(head) == self.data_at
        self.head = head
        self.total = self.data_at + self.height * self.row_bytes
        self.pos = 0
        self._band_y = -1
        self._band = b""
        self._pool = ThreadPoolExecutor(max_workers=THREADS)
        self._pending: dict[int, list[Future[np.ndarray]]] = {}
        # Why our reader failed: libvips only sees a short read.
        self.error: TilesError | None = None

    def _submit(self, y: int) -> list[Future[np.ndarray]]:
        rows = min(BAND_ROWS, self.height - y)
        step = max(1, min(CHUNK_WIDTH, MAX_REGION_PIXELS // rows))
        return [
            self._pool.submit(
                self.reader.read_region, 0, Region(x, y, min(step, self.width - x), rows)
            )
            for x in range(0, self.width, step)
        ]

    def _read_band(self, y: int) -> None:
        # Column chunks decode in parallel (codecs release the GIL), and the next bands are
        # decoded while libvips encodes this one: memory is (PREFETCH + 1) bands.
        chunks = self._pending.pop(y, None) or self._submit(y)
        for ahead in range(1, PREFETCH + 1):
            next_y = y + ahead * BAND_ROWS
            if next_y < self.height and next_y not in self._pending:
                self._pending[next_y] = self._submit(next_y)
        parts = [chunk.result() for chunk in chunks]
        pixels = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        self._band = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        self._band_y = y

    def close(self) -> None:
        for chunks in self._pending.values():
            for chunk in chunks:
                chunk.cancel()
        self._pool.shutdown(wait=True)

    def read(self, n: int) -> bytes:
        if self.pos >= self.total or n <= 0:
            return b""
        if self.pos < self.data_at:
            out = self.head[self.pos : self.pos + n]
        else:
            offset = self.pos - self.data_at
            row = offset // self.row_bytes
            y = row - row % BAND_ROWS
            if y != self._band_y:
                try:
                    self._read_band(y)
                except TilesError as exc:
                    self.error = exc
                    return b""
            start = offset - y * self.row_bytes
            out = self._band[start : start + n]
        self.pos += len(out)
        return out

    def seek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self.pos, 2: self.total}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def image(self) -> pyvips.Image:
        source = pyvips.SourceCustom()
        source.on_read(self.read)
        source.on_seek(self.seek)
        # The source must outlive the load: keep it on the stream.
        self._source = source
        return pyvips.Image.new_from_source(source, "", access="sequential", fail_on="error")


# -- conversion ------------------------------------------------------------------------------


def _vips_source(main: Path, reader: SlideReader) -> pyvips.Image | None:
    """The slide's level 0 read by libvips itself, when libvips reads this file right."""
    try:
        image = pyvips.Image.tiffload(str(main), page=0, access="sequential", fail_on="error")
    except pyvips.Error:
        return None
    l0 = reader.properties.l0_size
    if (image.width, image.height) != (l0.width, l0.height) or image.format != "uchar":
        return None
    if image.bands not in (3, 4) or image.interpretation != "srgb":
        return None
    if image.bands == 4:
        image = image.flatten(background=[255, 255, 255])
    return image


def _save(
    image: pyvips.Image, out: Path, quality: int, tile_size: int, progress: Progress | None
) -> None:
    if progress is not None:
        image.set_progress(True)

        def on_eval(_image: Any, p: Any) -> None:
            progress(float(p.percent))

        image.signal_connect("eval", on_eval)
    image.tiffsave(
        str(out),
        tile=True,
        tile_width=tile_size,
        tile_height=tile_size,
        pyramid=True,
        compression="jpeg",
        Q=quality,
        bigtiff=image.width * image.height * 3 > 2**31,
        strip=True,
    )


def convert_file(
    main: Path,
    out: Path,
    *,
    quality: int = 80,
    tile_size: int = 256,
    progress: Progress | None = None,
    libvips_first: bool = True,
) -> str:
    """Writes the pyramid of the slide at `main` to `out`; returns which path read the
    pixels ("libvips" or "reader"). Raises a TilesError saying why it cannot.
    `libvips_first=False` always reads through our reader (to measure that path)."""
    pyvips.cache_set_max(0)  # streaming: nothing worth caching, memory stays bounded
    pyvips.concurrency_set(THREADS)
    files = collect(main)
    reader, _index = open_local(files)
    try:
        tiff = files.kind is ReaderKind.TIFF and libvips_first
        source = _vips_source(files.main, reader) if tiff else None
        if source is not None:
            try:
                _save(source, out, quality, tile_size, progress)
                return "libvips"
            except pyvips.Error:
                pass  # libvips cannot decode something our reader may: try the reader
        stream = _StripStream(reader)
        try:
            _save(stream.image(), out, quality, tile_size, progress)
        except pyvips.Error as exc:
            if stream.error is not None:
                raise CorruptSlide(
                    f"{main.name}: cannot be converted: {stream.error.message}"
                ) from exc
            raise CorruptSlide(f"{main.name}: cannot be converted: {_vips_reason(exc)}") from exc
        finally:
            stream.close()
        return "reader"
    finally:
        reader.close()


def _vips_reason(exc: pyvips.Error) -> str:
    detail = " ".join(str(getattr(exc, "detail", "") or exc.message).split())
    return detail[:300] or "libvips failed"


# -- storing the pyramid ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPyramid:
    key: str
    size: int
    index_key: str
    content_hash: str
    l_sizes: tuple[Size, ...]


def store_pyramid(store: ObjectStore, slide_id: str, path: Path) -> StoredPyramid:
    """Uploads a written pyramid and its header pack; checks our reader opens it."""
    fetched: list[tuple[int, bytes]] = []
    with path.open("rb") as f:

        def fetch(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        try:
            reader = TiffReader(fetch, path.stat().st_size)
            l_sizes = reader.properties.l_sizes
            fetched = list(reader.file.fetched)
            reader.close()
        except TilesError as exc:
            raise CorruptSlide(f"the written pyramid cannot be read back: {exc.message}") from exc
    digest = hashlib.sha256()
    build = uuid.uuid4().hex[:12]
    key, idx_key = pyramid_key(slide_id, build), pyramid_index_key(slide_id, build)
    size = path.stat().st_size
    with path.open("rb") as f:
        store.put(key, _Hashing(f, digest), size)  # type: ignore[arg-type]
    store.put_bytes(idx_key, pack_spans(fetched))
    return StoredPyramid(key, size, idx_key, digest.hexdigest(), l_sizes)


class _Hashing:
    def __init__(self, f: BinaryIO, digest: Any) -> None:
        self._f, self._digest = f, digest

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._digest.update(data)
        return data


def pyramid_location(slide_id: str, pyramid: StoredPyramid) -> SlideLocation:
    return SlideLocation(
        slide_id=slide_id,
        kind=ReaderKind.TIFF,
        main_key=pyramid.key,
        main_size=pyramid.size,
        keys=(pyramid.key,),
        index_key=pyramid.index_key,
        content_hash=pyramid.content_hash,
        l_sizes=pyramid.l_sizes,
    )


def open_stored(store: ObjectStore, loc: SlideLocation) -> SlideReader | None:
    """A TIFF-family original opened from storage (a GET or two); None for other kinds."""
    if loc.kind is not ReaderKind.TIFF:
        return None
    primed = unpack_spans(store.get(loc.index_key)) if loc.index_key else []

    def fetch(offset: int, length: int) -> bytes:
        return store.get_range(loc.main_key, offset, length)

    return TiffReader(fetch, loc.main_size, primed=primed)
