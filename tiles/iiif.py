"""IIIF Image API 3.0: parsing of the request path into a region and an output size.

https://iiif.io/api/image/3.0/ — region/size/rotation/quality.format. Pure code."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tiles.errors import InvalidRequest
from tiles.geometry import Region, Size

QUALITIES = ("default", "color", "gray", "bitonal")
FORMATS = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
FEATURES = (
    "mirroring",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationBy90s",
    "sizeByConfinedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
    "sizeUpscaling",
)

_INT = r"(\d{1,9})"
_NUM = r"(\d{1,9}(?:\.\d{1,12})?)"
_REGION_PX = re.compile(rf"{_INT},{_INT},{_INT},{_INT}")
_REGION_PCT = re.compile(rf"pct:{_NUM},{_NUM},{_NUM},{_NUM}")
_SIZE_WH = re.compile(rf"(\^?)(!?){_INT}?,{_INT}?")
_SIZE_PCT = re.compile(rf"(\^?)pct:{_NUM}")
_ROTATION = re.compile(r"(!?)(\d{1,3}(?:\.\d+)?)")


@dataclass(frozen=True)
class Limits:
    max_width: int
    max_height: int
    max_area: int


@dataclass(frozen=True)
class ImageRequest:
    l0_region: Region
    size: Size  # output size before rotation
    mirror: bool
    rotation: int
    quality: str
    format: str


def parse_region(image: Size, text: str) -> Region:
    if text == "full":
        return Region(0, 0, image.width, image.height)
    if text == "square":
        side = min(image.width, image.height)
        return Region((image.width - side) // 2, (image.height - side) // 2, side, side)
    if m := _REGION_PX.fullmatch(text):
        x, y, w, h = (int(g) for g in m.groups())
    elif m := _REGION_PCT.fullmatch(text):
        px, py, pw, ph = (float(g) for g in m.groups())
        x, y = round(px * image.width / 100), round(py * image.height / 100)
        w, h = round(pw * image.width / 100), round(ph * image.height / 100)
    else:
        raise InvalidRequest(f"invalid IIIF region {text!r}")
    if w <= 0 or h <= 0:
        raise InvalidRequest(f"IIIF region {text!r} is empty")
    if x >= image.width or y >= image.height:
        raise InvalidRequest(f"IIIF region {text!r} lies outside the image")
    # A region reaching past the edge is cropped to the image, as the spec asks.
    return Region(x, y, min(w, image.width - x), min(h, image.height - y))


def parse_size(region: Region, text: str, limits: Limits) -> Size:
    upscale = text.startswith("^")
    body = text.removeprefix("^")
    rw, rh = region.width, region.height
    if body == "max":
        w, h = rw, rh
        if upscale:
            # ^max: as large as the limits allow, keeping the aspect ratio.
            scale = min(limits.max_width / rw, limits.max_height / rh)
            scale = min(scale, math.sqrt(limits.max_area / (rw * rh)))
            w, h = max(1, math.floor(rw * scale)), max(1, math.floor(rh * scale))
        else:
            scale = min(1.0, limits.max_width / rw, limits.max_height / rh)
            scale = min(scale, math.sqrt(limits.max_area / (rw * rh)))
            w, h = max(1, math.floor(rw * scale)), max(1, math.floor(rh * scale))
        return Size(w, h)
    if m := _SIZE_PCT.fullmatch(text):
        pct = float(m.group(2))
        if pct <= 0 or (pct > 100 and not m.group(1)):
            raise InvalidRequest(f"invalid IIIF size {text!r}")
        w, h = round(rw * pct / 100), round(rh * pct / 100)
    elif (m := _SIZE_WH.fullmatch(text)) and (m.group(3) or m.group(4)):
        confined = m.group(2) == "!"
        tw = int(m.group(3)) if m.group(3) else None
        th = int(m.group(4)) if m.group(4) else None
        if confined:
            if tw is None or th is None:
                raise InvalidRequest(f"IIIF size {text!r}: '!w,h' needs both w and h")
            scale = min(tw / rw, th / rh)
            w, h = max(1, math.floor(rw * scale)), max(1, math.floor(rh * scale))
        elif tw is not None and th is not None:
            w, h = tw, th
        elif tw is not None:
            w, h = tw, max(1, round(rh * tw / rw))
        else:
            assert th is not None
            w, h = max(1, round(rw * th / rh)), th
    else:
        raise InvalidRequest(f"invalid IIIF size {text!r}")
    if w <= 0 or h <= 0:
        raise InvalidRequest(f"IIIF size {text!r} is empty")
    if not upscale and (w > rw or h > rh):
        raise InvalidRequest(f"IIIF size {text!r} is larger than the region; use '^' to upscale")
    if w > limits.max_width or h > limits.max_height or w * h > limits.max_area:
        raise InvalidRequest(
            f"IIIF size {w}x{h} exceeds this server's limits "
            f"({limits.max_width}x{limits.max_height}, {limits.max_area} pixels)"
        )
    return Size(w, h)


def parse_rotation(text: str) -> tuple[bool, int]:
    m = _ROTATION.fullmatch(text)
    if not m:
        raise InvalidRequest(f"invalid IIIF rotation {text!r}")
    degrees = float(m.group(2))
    if degrees not in (0, 90, 180, 270):
        raise InvalidRequest(f"IIIF rotation {text!r}: only 0, 90, 180 and 270 are supported")
    return m.group(1) == "!", int(degrees)


def parse_request(
    image: Size, region: str, size: str, rotation: str, quality_format: str, limits: Limits
) -> ImageRequest:
    quality, _, fmt = quality_format.rpartition(".")
    if quality not in QUALITIES:
        raise InvalidRequest(f"invalid IIIF quality {quality!r} (one of {', '.join(QUALITIES)})")
    if fmt not in FORMATS:
        raise InvalidRequest(f"unsupported IIIF format {fmt!r} (one of {', '.join(FORMATS)})")
    l0_region = parse_region(image, region)
    out = parse_size(l0_region, size, limits)
    mirror, degrees = parse_rotation(rotation)
    return ImageRequest(l0_region, out, mirror, degrees, quality, fmt)
