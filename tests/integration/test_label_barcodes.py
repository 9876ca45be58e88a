"""At ingest, the barcode on a slide's glass label is read inside the parser sandbox and comes
back with the inspection: from a slide on disk and from one already in storage. A label whose
code is scratched, a handwritten label and a slide without label all ingest, with no code.

Slides are Aperio SVS files written by tests/vendor_samples.py (labels from
iain/synthetic.py), and the demo's write_labelled_svs slides."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openslide
import pytest

from iain.synthetic import Stain, write_labelled_svs
from tests.testdata import sample
from tests.vendor_samples import write_barcode_svs
from tiles.ingest import Inspection
from tiles.labels import Barcode, read_barcodes
from tiles.sandbox import inspect_in_sandbox, inspect_stored_in_sandbox

ROOT = Path("/stored")
CODES = {
    "DataMatrix": "S26-01234 A1 HES",
    "QRCode": "https://lims.example.org/specimen/S26-01234?block=A1",
    "Code128": "S26-01234-A1",
}


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("labelled")
    written = {
        fmt: write_barcode_svs(folder / f"{fmt}.svs", fmt, text, printed=("S26-01234", "A1"))
        for fmt, text in CODES.items()
    }
    written["damaged"] = write_barcode_svs(
        folder / "damaged.svs", "DataMatrix", CODES["DataMatrix"], damaged=True
    )
    return written


def in_place(path: Path) -> Inspection:
    """The inspection of the file's bytes as if in storage, read by ranges."""
    data = path.read_bytes()

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    inspection = inspect_stored_in_sandbox(read, len(data), ROOT / path.name, ROOT)
    assert inspection is not None
    return inspection


@pytest.mark.parametrize("fmt", sorted(CODES))
def test_the_label_barcode_is_read_at_ingest(slides: dict[str, Path], fmt: str) -> None:
    expected = (Barcode(fmt, CODES[fmt]),)
    on_disk = inspect_in_sandbox(slides[fmt])
    assert on_disk.properties.vendor == "aperio" and "label" in on_disk.properties.associated
    assert on_disk.barcodes == expected
    stored = in_place(slides[fmt])
    assert stored.barcodes == expected
    assert stored.properties == on_disk.properties


def test_a_slide_whose_code_is_scratched_still_ingests_without_a_code(
    slides: dict[str, Path],
) -> None:
    for inspection in (inspect_in_sandbox(slides["damaged"]), in_place(slides["damaged"])):
        assert inspection.properties.l0_size.width == 1200
        assert {"label", "macro"} <= set(inspection.properties.associated)
        assert inspection.barcodes == ()


def test_slides_without_a_printed_code_have_none() -> None:
    # A generic TIFF has no label; the CMU sample's label is handwritten; the NDPI sample
    # has only a macro image, of a code-less glass.
    for relative in (
        "generic-tiff/boxes.tiff",
        "aperio/CMU-1-Small-Region.svs",
        "hamamatsu/test3-DAPI-2-(387).ndpi",
    ):
        path = sample(relative)
        assert inspect_in_sandbox(path).barcodes == (), relative
        assert in_place(path).barcodes == (), relative
    # A DICOM slide, read by OpenSlide (no in-place inspection).
    assert inspect_in_sandbox(sample("dicom/google-wsi2dcm-jpeg/jpeg.dicom")).barcodes == ()


@pytest.mark.parametrize(("stain", "fmt"), [("he", "DataMatrix"), ("ihc", "QRCode")])
def test_the_demo_slide_opens_in_openslide_with_a_readable_label(
    tmp_path: Path, stain: Stain, fmt: str
) -> None:
    path = tmp_path / f"{stain}.svs"
    started = time.monotonic()
    write_labelled_svs(
        path, 4096, 3072, barcode_text="S26-04242 B3", barcode_format=fmt, stain=stain, seed=2
    )
    assert time.monotonic() - started < 5
    slide = openslide.OpenSlide(str(path))
    try:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert slide.dimensions == (4096, 3072) and slide.level_count >= 2
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.499)
        assert {"label", "macro", "thumbnail"} <= set(slide.associated_images)
        label = slide.associated_images["label"]
        assert read_barcodes(label) == (Barcode(fmt, "S26-04242 B3"),)
        region = np.asarray(slide.read_region((1024, 768), 0, (2048, 1536)).convert("RGB"))
    finally:
        slide.close()
    # The tissue looks stained as named: H&E pink and purple, IHC blue with brown patches.
    r, g, b = (region[..., i].astype(int) for i in range(3))
    tissue = (r + g + b) < 3 * 215
    assert tissue.mean() > 0.2
    brown = tissue & (r > g + 25) & (g > b + 10)
    blue = tissue & (b > r + 20)
    pink_purple = tissue & (r > g + 25) & (b > g + 15)
    if stain == "he":
        assert pink_purple.sum() > 0.8 * tissue.sum() and brown.sum() < 0.01 * tissue.sum()
    else:
        assert blue.sum() > 0.2 * tissue.sum() and brown.sum() > 0.05 * tissue.sum()
        assert pink_purple.sum() < 0.05 * tissue.sum()
    # And ingest reads it, in the sandbox.
    assert inspect_in_sandbox(path).barcodes == (Barcode(fmt, "S26-04242 B3"),)
