"""Pure tiling geometry: DeepZoom pyramids and the mapping of a requested region to a
slide level. No I/O here, so every edge case can be tested exactly.

Coordinate-frame prefixes (as in openslide-python): `l0_` level-0 pixels of the slide,
`l_` pixels of a slide level, `z_` pixels of a DeepZoom level, `t_` tile indices."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tiles.errors import TileNotFound


@dataclass(frozen=True)
class Size:
    width: int
    height: int


@dataclass(frozen=True)
class Region:
    """A rectangle in some pixel frame: origin and size."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class LevelRead:
    """Where to read on a slide level, and the size to scale the result to."""

    level: int
    l_region: Region
    out_size: Size


def choose_level(l_sizes: tuple[Size, ...], downsample: float) -> int:
    """The smallest slide level that still has the requested resolution: the last level
    with at least l0 / downsample pixels per axis, give or take the one pixel that
    rounding each halving may cost (a 300-px slide's "8x" level is 37 px, not 37.5)."""
    l0 = l_sizes[0]
    need_w, need_h = l0.width / downsample, l0.height / downsample
    best = 0
    for level, size in enumerate(l_sizes):
        if size.width + 1 >= need_w and size.height + 1 >= need_h:
            best = level
    return best


def plan_read(l_sizes: tuple[Size, ...], l0_region: Region, out_size: Size) -> LevelRead:
    """Maps a level-0 region, to be rendered at `out_size`, onto the best slide level."""
    downsample = min(l0_region.width / out_size.width, l0_region.height / out_size.height)
    level = choose_level(l_sizes, downsample)
    l0, lsize = l_sizes[0], l_sizes[level]
    sx, sy = lsize.width / l0.width, lsize.height / l0.height
    x0 = math.floor(l0_region.x * sx)
    y0 = math.floor(l0_region.y * sy)
    x1 = min(lsize.width, math.ceil((l0_region.x + l0_region.width) * sx))
    y1 = min(lsize.height, math.ceil((l0_region.y + l0_region.height) * sy))
    region = Region(x0, y0, max(1, x1 - x0), max(1, y1 - y0))
    return LevelRead(level, region, out_size)


@dataclass(frozen=True)
class DeepZoom:
    """A DeepZoom pyramid over a slide whose level 0 is `l0_size`: level `z_max` is full
    resolution, each level below halves (rounding up), level 0 is 1x1."""

    l0_size: Size
    tile_size: int = 256
    overlap: int = 0

    @property
    def level_count(self) -> int:
        return math.ceil(math.log2(max(self.l0_size.width, self.l0_size.height, 1))) + 1

    @property
    def z_max(self) -> int:
        return self.level_count - 1

    def z_size(self, z: int) -> Size:
        self._check_level(z)
        scale = 2 ** (self.z_max - z)
        return Size(math.ceil(self.l0_size.width / scale), math.ceil(self.l0_size.height / scale))

    def t_count(self, z: int) -> Size:
        size = self.z_size(z)
        return Size(math.ceil(size.width / self.tile_size), math.ceil(size.height / self.tile_size))

    def z_tile(self, z: int, col: int, row: int) -> Region:
        """The pixels of DeepZoom level `z` covered by tile (col, row), overlap included."""
        count = self.t_count(z)
        if not (0 <= col < count.width and 0 <= row < count.height):
            raise TileNotFound(
                f"tile {col}_{row} is outside level {z} ({count.width}x{count.height} tiles)"
            )
        size = self.z_size(z)
        x0 = col * self.tile_size - (self.overlap if col > 0 else 0)
        y0 = row * self.tile_size - (self.overlap if row > 0 else 0)
        x1 = min(size.width, (col + 1) * self.tile_size + self.overlap)
        y1 = min(size.height, (row + 1) * self.tile_size + self.overlap)
        return Region(x0, y0, x1 - x0, y1 - y0)

    def l0_tile(self, z: int, col: int, row: int) -> Region:
        """The level-0 region a tile shows (clipped to the slide)."""
        tile = self.z_tile(z, col, row)
        scale = 2 ** (self.z_max - z)
        x0, y0 = tile.x * scale, tile.y * scale
        x1 = min(self.l0_size.width, (tile.x + tile.width) * scale)
        y1 = min(self.l0_size.height, (tile.y + tile.height) * scale)
        return Region(x0, y0, x1 - x0, y1 - y0)

    def _check_level(self, z: int) -> None:
        if not 0 <= z <= self.z_max:
            raise TileNotFound(f"level {z} is outside 0..{self.z_max}")

    def tile_of(self, l0_region: Region, z_size: Size) -> tuple[int, int, int] | None:
        """The tile (z, col, row) that shows exactly `l0_region` at `z_size` pixels, if one
        does: an IIIF request on the tile grid is then that DeepZoom tile. Plain integer
        arithmetic, cheap enough for the fast path (tiles.fastpath). Without overlap only."""
        if self.overlap:
            return None
        ts, width, height = self.tile_size, self.l0_size.width, self.l0_size.height
        x, y = l0_region.x, l0_region.y
        z_max = self.z_max
        for k in range(z_max + 1):
            span = ts << k
            if x % span or y % span:
                return None  # the larger spans are multiples of this one: none aligns
            col, row = x // span, y // span
            # Level z_max - k is level 0 halved k times, rounded up.
            z_w, z_h = -(-width >> k), -(-height >> k)
            if col * ts >= z_w or row * ts >= z_h:
                return None
            if (
                l0_region.width == min(span, width - x)
                and l0_region.height == min(span, height - y)
                and z_size.width == min(ts, z_w - col * ts)
                and z_size.height == min(ts, z_h - row * ts)
            ):
                return z_max - k, col, row
        return None
