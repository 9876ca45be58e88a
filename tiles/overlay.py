"""Heatmap overlays served like slides: DeepZoom tiles at the slide's level-0 size.

A heatmap is stored as a single-band uint8 pyramidal TIFF (0 = nothing, 1..255 = the
probability scaled) at whatever resolution it was computed; it is read through the same
ReaderPool as slides and resampled onto the slide's DeepZoom grid, so the viewer can lay
it exactly over the slide. Tiles are colour-mapped on the way out to palette PNGs whose
index 0 is fully transparent. No exchange import here: the hub hands a HeatmapLocation."""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np
import pyvips
from PIL import Image

from tiles.cache import TileCache
from tiles.errors import InvalidRequest
from tiles.formats import ReaderKind
from tiles.geometry import DeepZoom, Region, Size, choose_level
from tiles.location import SlideLocation
from tiles.pool import ReaderPool
from tiles.service import Rendered

# Bump when heatmap rendering changes, so clients and caches drop old tiles.
OVERLAY_RENDER_VERSION = "1"

# Colour maps as a few (position, #rrggbb) stops, interpolated linearly in sRGB.
COLOUR_MAPS: dict[str, tuple[tuple[float, str], ...]] = {
    "viridis": ((0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"),
                (1.0, "#fde725")),
    "inferno": ((0.0, "#000004"), (0.25, "#57106e"), (0.5, "#bc3754"), (0.75, "#f98e09"),
                (1.0, "#fcffa4")),
    "turbo": ((0.0, "#30123b"), (0.2, "#4686fb"), (0.4, "#1ae4b6"), (0.6, "#a2fc3c"),
              (0.8, "#fb8022"), (1.0, "#7a0403")),
    "reds": ((0.0, "#fee0d2"), (0.5, "#fb6a4a"), (1.0, "#a50f15")),
}  # fmt: skip
# Low values fade in over this fraction of the range, so a heatmap's edge is not a hard line.
FADE_IN = 0.15
# A heatmap finer than the slide itself is refused: it would only cost storage.
MAX_HEATMAP_SIDE = 65536


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def colour_lut(name: str) -> np.ndarray:
    """256 RGBA entries: entry 0 is transparent, alpha ramps up over the first FADE_IN."""
    stops = COLOUR_MAPS.get(name)
    if stops is None:
        raise InvalidRequest(f"unknown colour map {name!r} (known: {', '.join(COLOUR_MAPS)})")
    positions = np.array([p for p, _ in stops])
    rgb = np.array([_hex(c) for _, c in stops], dtype=np.float64)
    t = np.arange(256) / 255.0
    lut = np.zeros((256, 4), np.uint8)
    for channel in range(3):
        lut[:, channel] = np.round(np.interp(t, positions, rgb[:, channel]))
    lut[:, 3] = np.round(np.clip(t / FADE_IN, 0.0, 1.0) * 255)
    lut[0, 3] = 0
    return lut


def quantise(probabilities: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """A 2-D array of values in [vmin, vmax] to uint8 (NaN, and vmin or below, become 0)."""
    if probabilities.ndim != 2 or min(probabilities.shape) < 1:
        raise InvalidRequest(f"a heatmap is a non-empty 2-D array, not shape {probabilities.shape}")
    if max(probabilities.shape) > MAX_HEATMAP_SIDE:
        raise InvalidRequest(f"a heatmap side is at most {MAX_HEATMAP_SIDE} values")
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InvalidRequest("the heatmap range needs finite vmin < vmax")
    values = np.asarray(probabilities, dtype=np.float64)
    scaled = np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0)
    return np.round(np.nan_to_num(scaled, nan=0.0) * 255).astype(np.uint8)


def pyramid_tiff(values: np.ndarray, tile_size: int = 256) -> bytes:
    """A tiled, deflate-compressed, pyramidal TIFF of a 2-D uint8 array."""
    height, width = values.shape
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(values).tobytes(), width, height, 1, "uchar"
    )
    data: bytes = image.tiffsave_buffer(
        tile=True,
        tile_width=tile_size,
        tile_height=tile_size,
        pyramid=True,
        compression="deflate",
        predictor="horizontal",
    )
    return data


@dataclass(frozen=True)
class HeatmapLocation:
    """Where a heatmap's pyramid is, and what it covers."""

    overlay_id: str
    key: str
    size: int
    # The heatmap covers exactly the slide's level 0.
    slide_l0: Size
    colour_map: str

    def as_slide(self) -> SlideLocation:
        """The pyramid as the ReaderPool sees it (its reader is keyed by this id)."""
        return SlideLocation(
            slide_id=f"overlay-{self.overlay_id}",
            kind=ReaderKind.TIFF,
            main_key=self.key,
            main_size=self.size,
            keys=(self.key,),
            index_key=None,
            content_hash=self.overlay_id,
            # Not the pyramid's own sizes: the pool's TIFF reader reads those from the file.
            l_sizes=(self.slide_l0,),
        )


class HeatmapTiles:
    def __init__(self, pool: ReaderPool, cache: TileCache, tile_size: int = 256) -> None:
        self.pool = pool
        self.cache = cache
        self.tile_size = tile_size
        self._luts: dict[str, bytes] = {}

    def deepzoom(self, loc: HeatmapLocation) -> DeepZoom:
        return DeepZoom(loc.slide_l0, self.tile_size, 0)

    def dzi(self, loc: HeatmapLocation) -> str:
        size = loc.slide_l0
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="png" Overlap="0" TileSize={quoteattr(str(self.tile_size))}>'
            f'<Size Width="{size.width}" Height="{size.height}"/></Image>'
        )

    def etag(self, loc: HeatmapLocation, z: int, col: int, row: int, threshold: int = 0) -> str:
        request = f"{OVERLAY_RENDER_VERSION}/{self.tile_size}/{loc.colour_map}/{z}/{col}/{row}"
        if threshold:
            request += f"/t{threshold}"
        digest = hashlib.blake2b(
            f"overlay|{loc.overlay_id}|{request}".encode(), digest_size=16
        ).hexdigest()
        return f'"{digest}"'

    def tile(
        self, loc: HeatmapLocation, z: int, col: int, row: int, threshold: int = 0
    ) -> Rendered:
        """A colour-mapped tile; with `threshold` (percent of the range), values below it
        are transparent (the viewer's threshold slider: only the palette changes)."""
        if not 0 <= threshold <= 100:
            raise InvalidRequest("a threshold is a percentage, 0 to 100")
        dz = self.deepzoom(loc)
        l0 = dz.l0_tile(z, col, row)  # raises TileNotFound before any storage access
        out = dz.z_tile(z, col, row)
        etag = self.etag(loc, z, col, row, threshold)
        data = self.cache.get(etag)
        if data is not None:
            return Rendered(data, "image/png", etag)
        started = time.perf_counter()
        values = self.pool.run(
            loc.as_slide(), lambda r: _resample(r.properties.l_sizes, r.read_region, loc, l0, out)
        )
        data = self._encode(values, loc.colour_map, threshold)
        self.cache.put(etag, data)
        return Rendered(data, "image/png", etag, "transcode", (time.perf_counter() - started) * 1e3)

    def _encode(self, values: np.ndarray, colour_map: str, threshold: int = 0) -> bytes:
        palette = self._luts.get(colour_map)
        if palette is None:
            palette = self._luts[colour_map] = colour_lut(colour_map).tobytes()
        lut = np.frombuffer(palette, np.uint8).reshape(256, 4)
        if threshold:
            lut = lut.copy()
            lut[: math.ceil(threshold * 255 / 100), 3] = 0
        height, width = values.shape
        # A palette PNG: one byte per pixel, and the browser does the colour mapping.
        image = Image.frombytes("P", (width, height), np.ascontiguousarray(values).tobytes())
        image.putpalette(lut[:, :3].tobytes())
        out = io.BytesIO()
        image.save(out, "PNG", transparency=lut[:, 3].tobytes(), compress_level=3)
        return out.getvalue()


def _resample(
    l_sizes: tuple[Size, ...],
    read_region: Callable[[int, Region], np.ndarray],
    loc: HeatmapLocation,
    l0: Region,
    out: Region,
) -> np.ndarray:
    """The heatmap values under a slide level-0 region, resampled to the tile's size."""
    h0 = l_sizes[0]
    # Heatmap level-0 values per slide level-0 pixel.
    sx, sy = h0.width / loc.slide_l0.width, h0.height / loc.slide_l0.height
    downsample = (l0.width * sx) / out.width
    level = choose_level(l_sizes, max(downsample, 1.0))
    lsize = l_sizes[level]
    kx, ky = sx * lsize.width / h0.width, sy * lsize.height / h0.height
    # The exact source box, in level pixels (fractional), and a whole-pixel box around it
    # with one pixel of margin so that bilinear filtering has neighbours at the edges.
    fx0, fy0 = l0.x * kx, l0.y * ky
    fx1, fy1 = (l0.x + l0.width) * kx, (l0.y + l0.height) * ky
    x0, y0 = max(0, math.floor(fx0) - 1), max(0, math.floor(fy0) - 1)
    x1 = min(lsize.width, math.ceil(fx1) + 1)
    y1 = min(lsize.height, math.ceil(fy1) + 1)
    # The reader gives (h, w, 3) uint8 with the grey value repeated.
    pixels = read_region(level, Region(x0, y0, x1 - x0, y1 - y0))
    grey = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), "L")
    box = (fx0 - x0, fy0 - y0, fx1 - x0, fy1 - y0)
    resized = grey.resize((out.width, out.height), Image.Resampling.BILINEAR, box=box)
    return np.asarray(resized, dtype=np.uint8)
