"""What every slide reader offers: level geometry, metadata, regions, associated images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from tiles.geometry import Region, Size

# A single region read larger than this is refused: it would hold too much memory.
MAX_REGION_PIXELS = 64 * 1024 * 1024
# Associated image names offered to clients, in OpenSlide's vocabulary.
ASSOCIATED_NAMES = ("label", "macro", "thumbnail")


@dataclass(frozen=True)
class SlideProperties:
    """What a reader learns from a slide's own metadata."""

    vendor: str
    l_sizes: tuple[Size, ...]
    mpp_x: float | None = None
    mpp_y: float | None = None
    objective_power: float | None = None
    associated: tuple[str, ...] = ()
    # Raw vendor metadata (may hold identifiers: never sent on a de-identified view).
    vendor_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def l0_size(self) -> Size:
        return self.l_sizes[0]

    @property
    def l_downsamples(self) -> tuple[float, ...]:
        l0 = self.l0_size
        return tuple(max(l0.width / s.width, l0.height / s.height) for s in self.l_sizes)


class SlideReader(Protocol):
    @property
    def properties(self) -> SlideProperties: ...

    def read_region(self, level: int, l_region: Region) -> np.ndarray:
        """RGB uint8 pixels (height x width x 3) of a level; areas outside are white."""
        ...

    def stored_jpeg(self, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        """The stored tile (col, row) of a level as JPEG bytes, served without decoding,
        if the level is stored as tile_size x tile_size JPEG tiles; else None."""
        ...

    def associated_image(self, name: str) -> Image.Image:
        """An RGB associated image (label, macro, thumbnail); KeyError if absent."""
        ...

    def close(self) -> None: ...


def check_region(props: SlideProperties, level: int, l_region: Region) -> None:
    from tiles.errors import InvalidRequest

    if not 0 <= level < len(props.l_sizes):
        raise InvalidRequest(f"level {level} is outside 0..{len(props.l_sizes) - 1}")
    if l_region.width <= 0 or l_region.height <= 0:
        raise InvalidRequest("empty region")
    if l_region.width * l_region.height > MAX_REGION_PIXELS:
        raise InvalidRequest(
            f"region {l_region.width}x{l_region.height} is larger than {MAX_REGION_PIXELS} pixels"
        )


def parse_float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 and number == number and number != float("inf") else None


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Greyscale or RGBA pixels to RGB (alpha composited over white)."""
    if pixels.dtype != np.uint8:
        from tiles.errors import UnsupportedSlide

        raise UnsupportedSlide(f"pixels of type {pixels.dtype} are not supported (8-bit only)")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 4:
        alpha = pixels[:, :, 3:4].astype(np.uint16)
        rgb = pixels[:, :, :3].astype(np.uint16)
        return ((rgb * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8)
    return pixels[:, :, :3]
