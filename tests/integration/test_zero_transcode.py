"""Stored JPEG tiles that match the DeepZoom grid are served as their bytes, not re-encoded."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from iain.app import build_store
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.hub import hub_client


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def serve(tmp_path: Path, slide: Path, **settings: object):
    config = Settings(home=tmp_path / "home", **settings)  # type: ignore[arg-type]
    slide_id = ingest_path(
        build_store(config), Catalogue.open(config.database_url), slide, "caen"
    ).id
    return hub_client(config), slide_id


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "aligned.tiff"
    write_synthetic_slide(path, 1300, 1000, seed=3)  # 256-px JPEG tiles, every 2x level
    return path


def test_aligned_tiles_are_the_stored_bytes_with_tables(tmp_path, synthetic):
    client, slide_id = serve(tmp_path, synthetic)
    with client, tifffile.TiffFile(synthetic) as tif:
        page = tif.pages[0]
        index = 1 * page.chunked[1] + 2  # row 1, column 2
        fh = tif.filehandle
        fh.seek(page.dataoffsets[index])
        raw = fh.read(page.databytecounts[index])
        assert page.jpegtables is not None
        expected = page.jpegtables[:-2] + raw[2:]
        response = client.get(f"/slides/{slide_id}_files/11/2_1.jpeg")
        assert response.status_code == 200
        assert response.headers["server-timing"].startswith("stored")
        assert response.content == expected
        decoded, _, _ = page.decode(raw, index, jpegtables=page.jpegtables)
        theirs = np.asarray(decoded).reshape(256, 256, 3).astype(np.int16)
        assert float(np.abs(pixels(response.content) - theirs).mean()) < 1.0
        # Second request: from the tile cache, same bytes.
        again = client.get(f"/slides/{slide_id}_files/11/2_1.jpeg")
        assert again.content == expected and again.headers["server-timing"] == "cache"


def test_edge_and_off_grid_tiles_are_transcoded(tmp_path, synthetic):
    client, slide_id = serve(tmp_path, synthetic)
    with client:
        edge = client.get(f"/slides/{slide_id}_files/11/5_3.jpeg")  # 1300 = 5*256 + 20
        assert edge.headers["server-timing"].startswith("transcode")
        assert Image.open(io.BytesIO(edge.content)).size == (20, 232)


def test_the_setting_forces_the_transcode_path_with_the_same_picture(tmp_path, synthetic):
    fast, fast_id = serve(tmp_path / "a", synthetic)
    slow, slow_id = serve(tmp_path / "b", synthetic, zero_transcode=False)
    with fast, slow:
        a = fast.get(f"/slides/{fast_id}_files/10/1_0.jpeg")
        b = slow.get(f"/slides/{slow_id}_files/10/1_0.jpeg")
        assert a.headers["server-timing"].startswith("stored")
        assert b.headers["server-timing"].startswith("transcode")
        assert a.headers["etag"] != b.headers["etag"]
        assert float(np.abs(pixels(a.content) - pixels(b.content)).mean()) < 3.0


def test_rgb_jpeg_tiles_get_the_marker_that_keeps_their_colours(tmp_path):
    # Aperio writes JPEG tiles in RGB, not YCbCr: without an Adobe marker a browser
    # would convert them as YCbCr and show false colours.
    rng = np.random.default_rng(0)
    image = np.zeros((512, 512, 3), np.uint8)
    image[:, :, 0] = 200  # pinkish, far from grey, so a colour-space error shows
    image[:, :, 1] = 90 + rng.integers(0, 20, (512, 512), dtype=np.uint8)
    image[:, :, 2] = 160
    path = tmp_path / "rgb-jpeg.tiff"
    rgb_jpeg: dict[str, Any] = {
        "tile": (256, 256),
        "compression": "jpeg",
        "photometric": "rgb",
        "subsampling": (1, 1),
        "compressionargs": {"outcolorspace": "RGB"},
    }
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1, **rgb_jpeg)
        tif.write(image[::2, ::2], subfiletype=1, **rgb_jpeg)
    # Number the JPEG components 1, 2, 3 and drop the Adobe marker, as in Aperio files:
    # then only a marker added on serving tells a decoder the components are RGB.
    data = bytearray(path.read_bytes())
    # Component ids sit in the frame header (SOF0) and the scan header (SOS).
    for marker, first, step in ((b"\xff\xc0\x00\x11\x08", 10, 3), (b"\xff\xda\x00\x0c\x03", 5, 2)):
        start = data.find(marker)
        while start >= 0:
            for i, component in enumerate((1, 2, 3)):
                data[start + first + step * i] = component
            start = data.find(marker, start + 1)
    # The encoder's own Adobe marker goes too (turned into an APP1 decoders ignore).
    path.write_bytes(bytes(data).replace(b"\xff\xee\x00\x0eAdobe", b"\xff\xe1\x00\x0eAdobe"))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.photometric == 2 and page.compression == 7
        tif.filehandle.seek(page.dataoffsets[3])
        bare = tif.filehandle.read(page.databytecounts[3])
    false_colours = pixels(bare) - image[256:, 256:].astype(np.int16)
    assert float(np.abs(false_colours).mean()) > 30  # what a browser would show unfixed
    client, slide_id = serve(tmp_path, path)
    with client:
        response = client.get(f"/slides/{slide_id}_files/9/1_1.jpeg")
        assert response.headers["server-timing"].startswith("stored")
        assert b"Adobe" in response.content[:200]
        shown = pixels(response.content)
        assert float(np.abs(shown - image[256:, 256:].astype(np.int16)).mean()) < 6.0
