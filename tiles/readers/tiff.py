"""TIFF-family slides (Aperio SVS, NDPI, generic pyramidal TIFF...) read in place.

tiffslide parses the structure and metadata through a RangeFile; pixels of simple tiled
levels are then fetched straight from storage by byte range (coalescing neighbouring
tiles into one request) and decoded with tifffile's codec for that page. This path needs
no file handle, so concurrent requests do not queue behind one another. Anything unusual
falls back to tiffslide's own read_region."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile
import tiffslide
from PIL import Image

from storage.rangefile import RangeFile
from tiles.errors import CorruptSlide, UnsupportedSlide
from tiles.geometry import Region, Size
from tiles.readers.base import SlideProperties, check_region, parse_float, to_rgb

Fetch = Callable[[int, int], bytes]

JPEG = 7  # TIFF compression code
# Aperio JPEG 2000 whose codestream holds YCbCr components without the multi-component
# transform: the decoder hands back YCbCr, which must be converted to RGB here.
APERIO_JP2K_YCBCR = 33003
# APP14 "Adobe" marker with transform 0: the components are RGB, not YCbCr.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"

# Neighbouring tiles closer than this are fetched in one request.
_COALESCE_GAP = 64 * 1024
_COALESCE_SPAN = 8 * 1024 * 1024


@dataclass(frozen=True)
class _TiledLevel:
    width: int
    height: int
    tile_w: int
    tile_h: int
    cols: int
    offsets: np.ndarray
    counts: np.ndarray
    decode: Any
    jpegtables: bytes | None
    jpegheader: bytes | None
    # Stored tiles are complete baseline JPEGs once the tables are spliced in.
    jpeg_passthrough: bool
    # RGB (not YCbCr) JPEG, as Aperio writes: needs an Adobe marker to display right.
    jpeg_rgb: bool
    # Decoded tiles are YCbCr (Aperio JPEG 2000, compression 33003).
    ycbcr: bool


@dataclass(frozen=True)
class StoredSpan:
    """A stored JPEG tile's bytes in the file, and the head that makes them standalone."""

    offset: int
    length: int
    # SOI + the level's shared tables (+ the Adobe marker of RGB JPEG), replacing the SOI.
    head: bytes
    level: int
    index: int

    def jpeg(self, data: bytes) -> bytes:
        if not data.startswith(b"\xff\xd8"):
            raise CorruptSlide(f"stored tile {self.index} of level {self.level} is not a JPEG")
        return self.head + data[2:]


def _tiled_level(page: Any) -> _TiledLevel | None:
    """The fast-path description of a page, or None when the page is not a simple case."""
    if not page.is_tiled or page.planarconfig != 1 or page.dtype != np.uint8:
        return None
    if page.samplesperpixel not in (1, 3, 4) or page.imagedepth != 1:
        return None
    tile_w, tile_h = int(page.tilewidth), int(page.tilelength)
    cols = -(-int(page.imagewidth) // tile_w)
    rows = -(-int(page.imagelength) // tile_h)
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    if len(offsets) != cols * rows or len(counts) != len(offsets):
        return None
    return _TiledLevel(
        width=int(page.imagewidth),
        height=int(page.imagelength),
        tile_w=tile_w,
        tile_h=tile_h,
        cols=cols,
        offsets=offsets,
        counts=counts,
        decode=page.decode,
        jpegtables=getattr(page, "jpegtables", None),
        jpegheader=getattr(page, "jpegheader", None),
        jpeg_passthrough=int(page.compression) == JPEG
        and int(page.photometric) in (2, 6)
        and page.samplesperpixel == 3
        and not getattr(page, "is_ndpi", False),
        jpeg_rgb=int(page.photometric) == 2,
        ycbcr=_decodes_to_ycbcr(page),
    )


def _decodes_to_ycbcr(page: Any) -> bool:
    return int(page.compression) == APERIO_JP2K_YCBCR and page.samplesperpixel == 3


def ycbcr_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Full-range BT.601 (JFIF) YCbCr to RGB, as OpenSlide converts Aperio 33003 tiles."""
    ycc = pixels[..., :3].astype(np.float32)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    out: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def _check_compression(page: Any) -> None:
    try:
        tifffile.COMPRESSION(int(page.compression))
    except ValueError:
        raise UnsupportedSlide(f"unsupported TIFF compression {int(page.compression)}") from None


class TiffReader:
    def __init__(
        self, fetch: Fetch, size: int, *, primed: Sequence[tuple[int, bytes]] = ()
    ) -> None:
        self._fetch = fetch
        self.file = RangeFile(fetch, size, primed=primed)
        # tiffslide and the RangeFile are not safe for concurrent use.
        self._lock = threading.Lock()
        try:
            with warnings.catch_warnings():
                # tiffslide warns that its NDPI metadata parser is partial; what we use is there.
                warnings.simplefilter("ignore", UserWarning)
                self._slide = tiffslide.TiffSlide(self.file)
                self._properties = self._read_properties()
            self._levels = self._read_levels()
        except (CorruptSlide, UnsupportedSlide):
            raise
        except NotImplementedError as exc:
            raise UnsupportedSlide(f"not a pyramidal slide that can be served: {exc}") from exc
        except Exception as exc:
            raise CorruptSlide(f"cannot parse TIFF structure: {exc}") from exc

    def _read_properties(self) -> SlideProperties:
        slide = self._slide
        props = {k: str(v) for k, v in slide.properties.items() if v is not None}
        sizes = tuple(Size(int(w), int(h)) for w, h in slide.level_dimensions)
        if not sizes or any(s.width <= 0 or s.height <= 0 for s in sizes):
            raise CorruptSlide("slide has no level with a positive size")
        return SlideProperties(
            vendor=str(props.get("tiffslide.vendor") or "generic-tiff"),
            l_sizes=sizes,
            mpp_x=parse_float(props.get("tiffslide.mpp-x")),
            mpp_y=parse_float(props.get("tiffslide.mpp-y")),
            objective_power=parse_float(props.get("tiffslide.objective-power")),
            associated=tuple(sorted(slide.associated_images)),
            vendor_metadata=props,
        )

    def _read_levels(self) -> list[_TiledLevel | None]:
        series = self._slide.ts_tifffile.series[0]
        levels: list[_TiledLevel | None] = []
        # Levels whose tiles decode to YCbCr, for the tiffslide fallback path.
        self._ycbcr_levels: set[int] = set()
        for index, size in enumerate(self._properties.l_sizes):
            level = None
            if index < len(series.levels):
                _check_compression(series.levels[index].keyframe)
                if _decodes_to_ycbcr(series.levels[index].keyframe):
                    self._ycbcr_levels.add(index)
            if index < len(series.levels) and len(series.levels[index].pages) == 1:
                level = _tiled_level(series.levels[index].keyframe)
            if level is not None and (level.width, level.height) != (size.width, size.height):
                level = None
            levels.append(level)
        return levels

    @property
    def properties(self) -> SlideProperties:
        return self._properties

    def read_region(self, level: int, l_region: Region) -> np.ndarray:
        check_region(self._properties, level, l_region)
        tiled = self._levels[level]
        try:
            if tiled is None:
                return self._read_with_tiffslide(level, l_region)
            return self._read_tiles(tiled, l_region)
        except (CorruptSlide, UnsupportedSlide):
            raise
        except Exception as exc:
            raise CorruptSlide(f"cannot decode level {level}: {exc}") from exc

    def stored_jpeg(self, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        """The stored tile at (col, row) of `level` as a standalone JPEG, without decoding,
        when the level is tiled in tile_size x tile_size JPEG; otherwise None."""
        span = self.stored_jpeg_span(level, col, row, tile_size)
        if span is None:
            return None
        return span.jpeg(self._fetch(span.offset, span.length))

    def stored_jpeg_span(self, level: int, col: int, row: int, tile_size: int) -> StoredSpan | None:
        """Where the stored tile's bytes are, for a caller that fetches them itself (the
        asynchronous tile path); None when stored_jpeg would return None. No I/O."""
        lvl = self._levels[level] if 0 <= level < len(self._levels) else None
        if lvl is None or not lvl.jpeg_passthrough:
            return None
        if lvl.tile_w != tile_size or lvl.tile_h != tile_size or col >= lvl.cols:
            return None
        index = row * lvl.cols + col
        if index >= len(lvl.offsets) or lvl.counts[index] <= 0:
            return None
        head = b"\xff\xd8"
        if lvl.jpegtables:
            # JPEGTables is a JPEG stream with tables only: SOI, DQT/DHT..., EOI.
            head = lvl.jpegtables[:-2] if lvl.jpegtables.endswith(b"\xff\xd9") else lvl.jpegtables
        if lvl.jpeg_rgb:
            head += _ADOBE_RGB
        return StoredSpan(int(lvl.offsets[index]), int(lvl.counts[index]), head, level, index)

    def _read_tiles(self, lvl: _TiledLevel, r: Region) -> np.ndarray:
        out = np.full((r.height, r.width, 3), 255, np.uint8)
        x0, y0 = max(0, r.x), max(0, r.y)
        x1, y1 = min(lvl.width, r.x + r.width), min(lvl.height, r.y + r.height)
        if x1 <= x0 or y1 <= y0:
            return out
        c0, c1 = x0 // lvl.tile_w, (x1 - 1) // lvl.tile_w
        r0, r1 = y0 // lvl.tile_h, (y1 - 1) // lvl.tile_h
        wanted = [row * lvl.cols + col for row in range(r0, r1 + 1) for col in range(c0, c1 + 1)]
        for index, data in self._fetch_tiles(lvl, wanted).items():
            tile = self._decode(lvl, index, data)
            tx = (index % lvl.cols) * lvl.tile_w
            ty = (index // lvl.cols) * lvl.tile_h
            # Intersection of this tile with the requested region, in level pixels.
            ix0, iy0 = max(tx, x0), max(ty, y0)
            ix1 = min(tx + lvl.tile_w, x1, tx + tile.shape[1])
            iy1 = min(ty + lvl.tile_h, y1, ty + tile.shape[0])
            if ix1 > ix0 and iy1 > iy0:
                out[iy0 - r.y : iy1 - r.y, ix0 - r.x : ix1 - r.x] = tile[
                    iy0 - ty : iy1 - ty, ix0 - tx : ix1 - tx
                ]
        return out

    def _fetch_tiles(self, lvl: _TiledLevel, wanted: list[int]) -> dict[int, bytes]:
        present = sorted(
            (int(lvl.offsets[i]), int(lvl.counts[i]), i) for i in wanted if lvl.counts[i] > 0
        )
        result: dict[int, bytes] = {}
        group: list[tuple[int, int, int]] = []

        def flush() -> None:
            start = group[0][0]
            end = max(off + n for off, n, _ in group)
            blob = self._fetch(start, end - start)
            for off, n, i in group:
                result[i] = blob[off - start : off - start + n]
            group.clear()

        for item in present:
            if group:
                g_start = group[0][0]
                g_end = max(off + n for off, n, _ in group)
                if item[0] - g_end > _COALESCE_GAP or item[0] + item[1] - g_start > _COALESCE_SPAN:
                    flush()
            group.append(item)
        if group:
            flush()
        return result

    def _decode(self, lvl: _TiledLevel, index: int, data: bytes) -> np.ndarray:
        pixels, _indices, _shape = lvl.decode(
            data, index, jpegtables=lvl.jpegtables, jpegheader=lvl.jpegheader
        )
        if pixels is None:
            raise CorruptSlide(f"tile {index} has no data")
        pixels = np.asarray(pixels)
        # tifffile gives (depth, height, width, samples).
        pixels = pixels.reshape(pixels.shape[-3:])
        if lvl.ycbcr:
            return ycbcr_to_rgb(pixels)
        return to_rgb(pixels)

    def _read_with_tiffslide(self, level: int, r: Region) -> np.ndarray:
        downsample = self._properties.l_downsamples[level]
        l0 = (round(r.x * downsample), round(r.y * downsample))
        with self._lock:
            pixels = self._slide.read_region(l0, level, (r.width, r.height), as_array=True)
        rgb = to_rgb(np.asarray(pixels))
        if level in self._ycbcr_levels:
            rgb = ycbcr_to_rgb(rgb)
        # tiffslide fills outside the level with black; the protocol says white.
        size = self._properties.l_sizes[level]
        inside_w = min(r.width, max(0, size.width - r.x))
        inside_h = min(r.height, max(0, size.height - r.y))
        if inside_w < r.width or inside_h < r.height:
            rgb = rgb.copy()
            rgb[inside_h:, :] = 255
            rgb[:, inside_w:] = 255
        return rgb

    def associated_image(self, name: str) -> Image.Image:
        with self._lock:
            try:
                image = self._slide.associated_images[name]
            except KeyError:
                raise
            except Exception as exc:
                raise CorruptSlide(f"cannot decode associated image {name!r}: {exc}") from exc
        return image.convert("RGB")

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._slide.close()
