"""From a region of a slide to encoded image bytes."""

from __future__ import annotations

import io

from PIL import Image

from tiles.geometry import Region, Size, plan_read
from tiles.readers.base import SlideReader

MEDIA_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def render_region(reader: SlideReader, l0_region: Region, out_size: Size) -> Image.Image:
    """The level-0 region scaled to out_size, read from the best slide level."""
    plan = plan_read(reader.properties.l_sizes, l0_region, out_size)
    pixels = reader.read_region(plan.level, plan.l_region)
    image = Image.fromarray(pixels, "RGB")
    if image.size != (out_size.width, out_size.height):
        # reducing_gap: box-reduce first, then Lanczos; faster, and what OpenSlide does too.
        image = image.resize(
            (out_size.width, out_size.height), Image.Resampling.LANCZOS, reducing_gap=2.0
        )
    return image


def encode(image: Image.Image, fmt: str, jpeg_quality: int) -> bytes:
    out = io.BytesIO()
    if fmt in ("jpeg", "jpg"):
        image.save(out, "JPEG", quality=jpeg_quality)
    elif fmt == "png":
        image.save(out, "PNG", compress_level=3)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=jpeg_quality)
    else:
        raise ValueError(f"unknown format {fmt}")
    return out.getvalue()
