"""Where the shared sample slides are (IAIN_TESTDATA, default ../shared/testdata)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("IAIN_TESTDATA", REPO.parent / "shared" / "testdata")).resolve()

# Every readable slide of the MANIFEST: path, expected level-0 size, expected reader.
READABLE = {
    "aperio/CMU-1-Small-Region.svs": ((2220, 2967), "tiff"),
    "aperio/small.svs": ((16, 16), "tiff"),
    "hamamatsu/test3-DAPI-2-(387).ndpi": ((3968, 4864), "tiff"),
    "generic-tiff/boxes.tiff": ((300, 250), "tiff"),
    "dicom/google-wsi2dcm-jpeg/jpeg.dicom": ((957, 715), "openslide"),
    "dicom/google-wsi2dcm-raw/raw.dicom": ((957, 715), "openslide"),
    "dicom/highdicom-sm/sm_image.dcm": ((50, 50), "openslide"),
    "dicom/openslide-boxes/boxes_0.dcm": ((16, 16), "openslide"),
}
# Files that must be refused at ingest, and a word the reason must contain.
REFUSED = {
    "broken/unreadable.svs": "decoded",
    "broken/unopenable.tiff": "compression",
    "dicom/highdicom-sm-jpegls/sm_image_jpegls.dcm": "transfer syntax",
    "ome-tiff/4D-series.ome.tiff": "pyramidal",
}


def sample(relative: str) -> Path:
    """A sample slide; skips the calling test (saying why) on machines without the data."""
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(f"sample slide {relative} not found under {TESTDATA} (set IAIN_TESTDATA)")
    return path
