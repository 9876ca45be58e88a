"""An in-memory slide: a pyramid of numpy arrays. Lets tiling maths be tested without files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tiles.geometry import Region, Size
from tiles.readers.base import SlideProperties, check_region


class MemoryReader:
    def __init__(
        self,
        levels: list[np.ndarray],
        *,
        mpp: float | None = None,
        associated: dict[str, Image.Image] | None = None,
    ) -> None:
        self._levels = levels
        self._associated = associated or {}
        self._properties = SlideProperties(
            vendor="memory",
            l_sizes=tuple(Size(a.shape[1], a.shape[0]) for a in levels),
            mpp_x=mpp,
            mpp_y=mpp,
            associated=tuple(sorted(self._associated)),
        )

    @classmethod
    def pyramid(cls, level0: np.ndarray, levels: int, mpp: float | None = None) -> MemoryReader:
        """Builds 2x levels by striding: exact and dependency-free, good enough for tests."""
        arrays = [level0]
        for _ in range(levels - 1):
            arrays.append(np.ascontiguousarray(arrays[-1][::2, ::2]))
        return cls(arrays, mpp=mpp)

    @property
    def properties(self) -> SlideProperties:
        return self._properties

    def read_region(self, level: int, l_region: Region) -> np.ndarray:
        check_region(self._properties, level, l_region)
        src = self._levels[level]
        out = np.full((l_region.height, l_region.width, 3), 255, np.uint8)
        x0, y0 = max(0, l_region.x), max(0, l_region.y)
        x1 = min(src.shape[1], l_region.x + l_region.width)
        y1 = min(src.shape[0], l_region.y + l_region.height)
        if x1 > x0 and y1 > y0:
            out[y0 - l_region.y : y1 - l_region.y, x0 - l_region.x : x1 - l_region.x] = src[
                y0:y1, x0:x1, :3
            ]
        return out

    def stored_jpeg(self, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        return None  # no stored JPEG tiles to pass through

    def associated_image(self, name: str) -> Image.Image:
        return self._associated[name].convert("RGB")

    def close(self) -> None:
        pass
