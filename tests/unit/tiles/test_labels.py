"""The barcode on a slide's glass label names the specimen: tiles.labels must read it
exactly, find nothing where there is nothing (a scratched code, a handwritten label), and
stay bounded on whatever image a crafted slide holds."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import zxingcpp
from PIL import Image

from iain.synthetic import LABEL_PAPER, label_image
from tests.vendor_samples import barcode_label
from tiles.ingest import label_barcodes
from tiles.labels import MAX_CODES, MAX_INPUT_PIXELS, MAX_TEXT, Barcode, read_barcodes
from tiles.readers.memory import MemoryReader

SPECIMEN = "S26-01234 A1"
KINDS = {
    "DataMatrix": "S26-01234 A1 HES",
    "QRCode": "https://lims.example.org/specimen/S26-01234?block=A1",
    "Code128": "S26-01234-A1",
}


def code(text: str, fmt: str = "DataMatrix", scale: int = 6) -> np.ndarray:
    """A code's pixels (black on white, with its quiet zone)."""
    options = {"forceSquare": True} if fmt == "DataMatrix" else {}
    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat[fmt], **options)
    pixels: np.ndarray = np.asarray(barcode.to_image(scale=scale), dtype=np.uint8)
    return pixels


def sheet(size: tuple[int, int], *placed: tuple[np.ndarray, int, int]) -> Image.Image:
    """A white label (width, height) with codes pasted at (x, y)."""
    width, height = size
    pixels = np.full((height, width), 250, np.uint8)
    for pixels_of_code, x, y in placed:
        h, w = pixels_of_code.shape
        pixels[y : y + h, x : x + w] = pixels_of_code
    return Image.fromarray(pixels)


@pytest.mark.parametrize("fmt", sorted(KINDS))
def test_each_kind_of_label_code_reads_to_its_exact_text(fmt: str) -> None:
    text = KINDS[fmt]
    label = label_image([SPECIMEN, "HES"], barcode_text=text, barcode_format=fmt)
    assert read_barcodes(Image.fromarray(label)) == (Barcode(fmt, text),)


@pytest.mark.parametrize("fmt", sorted(KINDS))
def test_a_scratched_code_reads_as_no_code(fmt: str) -> None:
    damaged = barcode_label(fmt, KINDS[fmt], (SPECIMEN,), damaged=True)
    assert read_barcodes(Image.fromarray(damaged)) == ()
    # The same label unscratched does read: the damage is what hides it.
    whole = barcode_label(fmt, KINDS[fmt], (SPECIMEN,))
    assert read_barcodes(Image.fromarray(whole)) == (Barcode(fmt, KINDS[fmt]),)


def test_a_label_with_only_printed_text_has_no_code() -> None:
    label = label_image([SPECIMEN, "HES", "CHU Nantes", "2026-03-14"])
    assert read_barcodes(Image.fromarray(label)) == ()
    assert read_barcodes(Image.new("RGB", (400, 300), LABEL_PAPER)) == ()


def test_codes_come_back_top_to_bottom_then_left_to_right() -> None:
    # Placed in no particular order: a row of two codes at the top (the left one a little
    # lower), one linear code below them.
    top_right = code("TOP-RIGHT", "QRCode", 4)
    top_left = code("TOP-LEFT", "DataMatrix", 6)
    bottom = code("BOTTOM", "Code128", 3)
    label = sheet((900, 600), (bottom, 60, 380), (top_right, 500, 30), (top_left, 60, 50))
    assert read_barcodes(label) == (
        Barcode("DataMatrix", "TOP-LEFT"),
        Barcode("QRCode", "TOP-RIGHT"),
        Barcode("Code128", "BOTTOM"),
    )
    # The order is the label's, not the decoder's: the same codes mirrored across the label
    # swap places in the row.
    mirrored = sheet((900, 600), (bottom, 60, 380), (top_right, 60, 30), (top_left, 500, 50))
    assert [b.text for b in read_barcodes(mirrored)] == ["TOP-RIGHT", "TOP-LEFT", "BOTTOM"]


def test_a_code_printed_twice_comes_back_once() -> None:
    twice = code(SPECIMEN, "DataMatrix")
    label = sheet((700, 300), (twice, 20, 40), (twice, 400, 40))
    assert read_barcodes(label) == (Barcode("DataMatrix", SPECIMEN),)


def test_an_over_long_text_is_dropped_and_the_others_kept() -> None:
    long = code("X" * (MAX_TEXT + 1), "QRCode", 3)
    short = code(SPECIMEN, "DataMatrix", 6)
    label = sheet((long.shape[1] + short.shape[1] + 60, long.shape[0] + 40), (long, 20, 20))
    assert read_barcodes(label) == ()
    both = sheet((long.shape[1] + short.shape[1] + 60, long.shape[0] + 40), (long, 20, 20))
    both.paste(Image.fromarray(short), (long.shape[1] + 40, 20))
    assert read_barcodes(both) == (Barcode("DataMatrix", SPECIMEN),)
    # At the limit itself, the text is kept whole.
    exact = "Y" * MAX_TEXT
    assert read_barcodes(Image.fromarray(code(exact, "QRCode", 3))) == (Barcode("QRCode", exact),)


def test_at_most_max_codes_come_back() -> None:
    placed = [
        (code(f"S26-{i:05d}", "DataMatrix", 5), 20 + (i % 4) * 160, 20 + (i // 4) * 160)
        for i in range(12)
    ]
    assert all(c.shape[0] < 150 and c.shape[1] < 150 for c, _, _ in placed)  # no overlap
    found = read_barcodes(sheet((680, 520), *placed))
    assert len(found) == MAX_CODES
    # The first ones in reading order: the top two rows.
    assert [b.text for b in found] == [f"S26-{i:05d}" for i in range(MAX_CODES)]


def test_a_huge_image_is_read_in_bounded_time() -> None:
    # A 6000 x 4500 photograph of a label with a large code: downscaled, still read.
    big = code(SPECIMEN, "DataMatrix", 80)
    huge = sheet((6000, 4500), (big, 2500, 1500))
    started = time.monotonic()
    assert read_barcodes(huge) == (Barcode("DataMatrix", SPECIMEN),)
    assert time.monotonic() - started < 3
    # Beyond MAX_INPUT_PIXELS, no label at all: not decoded, whatever it holds.
    side = int(MAX_INPUT_PIXELS**0.5) + 16
    beyond = Image.new("L", (side, side), 250)
    beyond.paste(Image.fromarray(big), (100, 100))
    started = time.monotonic()
    assert read_barcodes(beyond) == ()
    assert time.monotonic() - started < 1


def test_noise_reads_as_no_code_in_bounded_time() -> None:
    rng = np.random.default_rng(5)
    noise = Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    started = time.monotonic()
    assert read_barcodes(noise) == ()
    assert time.monotonic() - started < 3


def _transparent_code() -> Image.Image:
    """A code drawn in black on a transparent background (its 'white' is alpha 0)."""
    modules = code(SPECIMEN, "DataMatrix") < 128
    rgba = np.zeros((*modules.shape, 4), np.uint8)
    rgba[modules, 3] = 255
    return Image.fromarray(rgba)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (0, 0)),
        Image.new("RGB", (1, 1)),
        Image.new("1", (300, 200)),
        Image.new("I;16", (300, 200), 40000),
        Image.new("F", (300, 200), float("nan")),
        Image.new("CMYK", (300, 200)),
        Image.new("P", (300, 200)),
        Image.new("L", (1, 50000)),
    ],
    ids=["empty", "one pixel", "bilevel", "16-bit", "float nan", "cmyk", "palette", "a line"],
)
def test_an_odd_image_never_raises(image: Image.Image) -> None:
    assert read_barcodes(image) == ()


def test_odd_modes_holding_a_code_still_read() -> None:
    grey = Image.fromarray(code(SPECIMEN, "QRCode"))
    for mode in ("1", "P", "CMYK", "RGB", "LA"):
        assert read_barcodes(grey.convert(mode)) == (Barcode("QRCode", SPECIMEN),), mode
    # Transparent where the paper is: read as paper, not as black.
    assert read_barcodes(_transparent_code()) == (Barcode("DataMatrix", SPECIMEN),)


def test_a_truncated_jpeg_never_raises() -> None:
    out = io.BytesIO()
    Image.fromarray(code(SPECIMEN)).convert("RGB").save(out, "JPEG")
    data = out.getvalue()
    truncated = Image.open(io.BytesIO(data[: len(data) // 2]))  # the header is whole
    assert read_barcodes(truncated) == ()


# -- At ingest: which image of the slide is read ------------------------------------------------


def _slide(**associated: Image.Image) -> MemoryReader:
    return MemoryReader([np.full((64, 64, 3), 240, np.uint8)], associated=associated)


def _coded(text: str) -> Image.Image:
    return Image.fromarray(label_image([text], barcode_text=text))


def test_ingest_reads_the_label_else_the_macro() -> None:
    label, macro = _coded("FROM-LABEL"), _coded("FROM-MACRO")
    assert label_barcodes(_slide(label=label, macro=macro)) == (
        Barcode("DataMatrix", "FROM-LABEL"),
    )
    assert label_barcodes(_slide(macro=macro)) == (Barcode("DataMatrix", "FROM-MACRO"),)
    assert label_barcodes(_slide(thumbnail=label)) == ()
    assert label_barcodes(_slide()) == ()


class _BrokenLabel(MemoryReader):
    def associated_image(self, name: str) -> Image.Image:
        raise MemoryError


def test_a_label_that_cannot_be_decoded_is_no_code_not_a_failure() -> None:
    reader = _BrokenLabel([np.zeros((8, 8, 3), np.uint8)], associated={"label": _coded("X")})
    assert label_barcodes(reader) == ()
