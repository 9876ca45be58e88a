"""Formats only OpenSlide reads (DICOM WSI, MRXS, SCN, BIF, Philips...), from a local file."""

from __future__ import annotations

import threading

import numpy as np
import openslide
from PIL import Image

from tiles.errors import CorruptSlide, UnsupportedSlide
from tiles.geometry import Region, Size
from tiles.readers.base import SlideProperties, check_region, parse_float, to_rgb


class OpenSlideReader:
    def __init__(self, path: str) -> None:
        try:
            self._slide = openslide.OpenSlide(path)
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise UnsupportedSlide(f"unsupported slide format: {exc}") from exc
        except openslide.OpenSlideError as exc:
            raise UnsupportedSlide(f"OpenSlide cannot open this slide: {exc}") from exc
        # OpenSlide errors latch: once one occurs the handle is useless, so remember it.
        self.failed = False
        self._lock = threading.Lock()
        props = {str(k): str(v) for k, v in self._slide.properties.items()}
        sizes = tuple(Size(int(w), int(h)) for w, h in self._slide.level_dimensions)
        if not sizes or any(s.width <= 0 or s.height <= 0 for s in sizes):
            raise CorruptSlide("slide has no level with a positive size")
        self._properties = SlideProperties(
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
            l_sizes=sizes,
            mpp_x=parse_float(props.get(openslide.PROPERTY_NAME_MPP_X)),
            mpp_y=parse_float(props.get(openslide.PROPERTY_NAME_MPP_Y)),
            objective_power=parse_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
            associated=tuple(sorted(self._slide.associated_images)),
            vendor_metadata=props,
        )

    @property
    def properties(self) -> SlideProperties:
        return self._properties

    def read_region(self, level: int, l_region: Region) -> np.ndarray:
        check_region(self._properties, level, l_region)
        downsample = self._properties.l_downsamples[level]
        l0 = (round(l_region.x * downsample), round(l_region.y * downsample))
        try:
            image = self._slide.read_region(l0, level, (l_region.width, l_region.height))
        except openslide.OpenSlideError as exc:
            self.failed = True
            raise CorruptSlide(f"cannot decode level {level}: {exc}") from exc
        return to_rgb(np.asarray(image))

    def stored_jpeg(self, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        return None  # no stored JPEG tiles to pass through

    def associated_image(self, name: str) -> Image.Image:
        try:
            image = self._slide.associated_images[name]
        except KeyError:
            raise
        except openslide.OpenSlideError as exc:
            self.failed = True
            raise CorruptSlide(f"cannot decode associated image {name!r}: {exc}") from exc
        return Image.fromarray(to_rgb(np.asarray(image)))

    def close(self) -> None:
        with self._lock:
            self._slide.close()
