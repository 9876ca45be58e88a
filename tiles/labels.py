"""Barcodes printed on a slide's glass label, read from its label (or macro) image.

Laboratories print the specimen number on the label as a DataMatrix, a QR code or a Code 128
bar code; reading it at ingest lets the hub match a scanned slide to its case. The image
comes from an untrusted file, so what is read is bounded: the image is downscaled to
MAX_SIDE first (decoding time grows with the pixels), at most MAX_CODES codes of at most
MAX_TEXT characters come back, and a picture zxing cannot make sense of gives ()."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zxingcpp
from PIL import Image

MAX_CODES = 8
MAX_TEXT = 256
# Labels are 400-1000 px, macros (the whole glass) up to ~2000 px wide: codes on them stay
# readable at this size, and decoding takes tens of milliseconds.
MAX_SIDE = 2048
# Beyond this (8192 x 8192), an "image" is no photograph of a label: not even decoded.
MAX_INPUT_PIXELS = 64 * 1024 * 1024

# What laboratory label printers write: 2D codes and the usual industrial linear codes
# (not the retail ones, which no slide label carries: fewer formats, fewer false reads).
FORMATS = zxingcpp.BarcodeFormats(
    [
        zxingcpp.BarcodeFormat.DataMatrix,
        zxingcpp.BarcodeFormat.QRCode,
        zxingcpp.BarcodeFormat.MicroQRCode,
        zxingcpp.BarcodeFormat.Aztec,
        zxingcpp.BarcodeFormat.PDF417,
        zxingcpp.BarcodeFormat.Code128,
        zxingcpp.BarcodeFormat.Code39,
        zxingcpp.BarcodeFormat.Code93,
    ]
)


@dataclass(frozen=True)
class Barcode:
    format: str  # zxing's name: "DataMatrix", "QRCode", "Code128"...
    text: str


@dataclass(frozen=True)
class _Found:
    barcode: Barcode
    top: float
    bottom: float
    left: float


def read_barcodes(image: Image.Image) -> tuple[Barcode, ...]:
    """The codes on a label image, top to bottom then left to right (codes side by side
    count as one row), each (format, text) once; () when there is none, or the image
    cannot be read. Never raises."""
    try:
        grey = _bounded_grey(image)
        if grey is None:
            return ()
        results = zxingcpp.read_barcodes(grey, formats=FORMATS)
        found = [f for r in results if (f := _found(r)) is not None]
    except Exception:
        return ()
    codes: list[Barcode] = []
    for item in _reading_order(found):
        if item.barcode not in codes:
            codes.append(item.barcode)
    return tuple(codes[:MAX_CODES])


def _bounded_grey(image: Image.Image) -> np.ndarray | None:
    """8-bit greyscale pixels of at most MAX_SIDE a side, or None for an image too large
    or empty to be a label."""
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > MAX_INPUT_PIXELS:
        return None
    # A JPEG not decoded yet decodes straight at a fraction of its size.
    if image.format == "JPEG" and max(width, height) > MAX_SIDE:
        image.draft("L", (MAX_SIDE, MAX_SIDE))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas as the white of a label, not the black of zero.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    grey = image.convert("L")
    if max(grey.size) > MAX_SIDE:
        factor = -(-max(grey.size) // MAX_SIDE)
        grey = grey.reduce(factor)  # a box filter: thin bars stay bars
        grey.thumbnail((MAX_SIDE, MAX_SIDE))
    return np.ascontiguousarray(np.asarray(grey, dtype=np.uint8))


def _found(result: zxingcpp.Barcode) -> _Found | None:
    if not result.valid or result.error is not None:
        return None
    text, name = result.text, result.format.name
    if not text or len(text) > MAX_TEXT or not name:
        return None
    p = result.position
    corners = (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
    ys, xs = [c.y for c in corners], [c.x for c in corners]
    return _Found(Barcode(format=name, text=text), min(ys), max(ys), min(xs))


def _reading_order(found: list[_Found]) -> list[_Found]:
    """Rows of codes whose vertical extents overlap, rows top to bottom, each left to right;
    ties broken by the code itself, so the order never depends on zxing's."""
    rows: list[list[_Found]] = []
    for item in sorted(found, key=lambda f: (f.top, f.left, f.barcode.format, f.barcode.text)):
        if rows and item.top <= max(f.bottom for f in rows[-1]):
            rows[-1].append(item)
        else:
            rows.append([item])
    return [
        item
        for row in rows
        for item in sorted(row, key=lambda f: (f.left, f.top, f.barcode.format, f.barcode.text))
    ]
