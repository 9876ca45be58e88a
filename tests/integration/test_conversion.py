"""Normalised pyramids: every readable slide is converted at ingest (or served as it is,
by rule), its tiles then come stored from the pyramid and still match OpenSlide; the
status is visible over HTTP; a killed or failing worker never takes the hub down."""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import pyvips
import tifffile
from fastapi.testclient import TestClient
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image
from typer.testing import CliRunner

from exchange.core.models import Conversion, Slide
from exchange.slides.catalogue import Catalogue
from exchange.slides.conversion import job, requeue
from iain.app import build_store
from iain.cli import cli
from iain.settings import Settings
from tests.hub import hub_client, ingest
from tests.integration.test_readers_vs_openslide import _openslide_region, _tiles_to_check
from tests.integration.test_s3_fastpath import s3_settings
from tests.s3server import SeaweedS3
from tests.testdata import READABLE, sample
from tiles.geometry import DeepZoom, Size

# Served tiles are JPEG-encoded (twice for converted slides): a wrong tile differs by tens.
SVS = "aperio/CMU-1-Small-Region.svs"
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"
TINY = "aperio/small.svs"
MAX_MEAN_ABS_DIFF = 8.0  # JPEG Q80 alone costs 3-4 on dense tissue, box vs Lanczos 2-3
# Low levels of a pyramid are 2x2 averages of 2x2 averages..., OpenSlide's are one Lanczos
# reduction; a level that fits in one tile is also resampled from the stored level a pixel
# smaller (rounded down): there the filters show, yet stay far below a wrong tile.
# Edge (partial) tiles are decoded from the pyramid, resampled and encoded again: two
# JPEG generations on top of the original's.
MAX_MEAN_ABS_DIFF_SMALL = 12.0
MAX_MEAN_ABS_DIFF_TINY = 32.0  # a 2x1 tile is one chroma-subsampled JPEG block


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _wait(
    client: TestClient, slide_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        detail: dict[str, Any] = client.get(f"/api/slides/{slide_id}").json()
        if done(detail):
            return detail
        assert time.monotonic() < deadline, detail
        time.sleep(0.05)


def _settled(detail: dict[str, Any]) -> bool:
    return detail["status"] in ("ready", "failed") and detail["conversion"]["status"] != "queued"


def _fits_one_tile(size: tuple[int, int]) -> bool:
    return size[0] <= 256 and size[1] <= 256


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_every_readable_slide_converts_and_serves_like_openslide(
    settings: Settings, client: TestClient, relative: str
) -> None:
    path = sample(relative)
    slide_id = ingest(settings, path, convert=True)
    detail = _wait(client, slide_id, _settled)
    (width, height), _kind = READABLE[relative]
    conversion = detail["conversion"]
    assert detail["status"] == "ready", detail
    # The rule: a slide that fits in one tile is served from its original; none of the
    # samples larger than that has its levels stored as 256x256 JPEG tiles, 2x apart.
    expected = "skipped" if _fits_one_tile((width, height)) else "ready"
    assert conversion["status"] == expected, conversion
    assert conversion["percent"] == 100.0 and conversion["note"]

    slide = openslide.OpenSlide(str(path))
    reference = DeepZoomGenerator(slide, 256, 0, limit_bounds=False)
    dz = DeepZoom(Size(width, height), 256, 0)
    assert dz.level_count == reference.level_count
    sources = []
    for z in range(dz.level_count):
        for col, row in _tiles_to_check(dz, z):
            response = client.get(f"/slides/{slide_id}_files/{z}/{col}_{row}.jpeg")
            assert response.status_code == 200, (z, col, row)
            ours = _decode(response.content)
            tile = dz.z_tile(z, col, row)
            assert ours.shape == (tile.height, tile.width, 3), (z, col, row)
            theirs_img = reference.get_tile(z, (col, row)).convert("RGB")
            if theirs_img.size != (tile.width, tile.height):
                theirs_img = _openslide_region(slide, dz.l0_tile(z, col, row), tile)
            diff = float(np.abs(ours - np.asarray(theirs_img, np.int16)).mean())
            side = min(tile.width, tile.height)
            limit = MAX_MEAN_ABS_DIFF
            if side < 128 or tile.width != tile.height:
                limit = MAX_MEAN_ABS_DIFF_TINY if side < 32 else MAX_MEAN_ABS_DIFF_SMALL
            assert diff < limit, f"level {z} tile {col}_{row}: mean diff {diff:.1f}"
            full = tile.width == tile.height == 256
            source = response.headers["server-timing"].split(";")[0]
            if full:
                sources.append(source)
            if full and expected == "ready":
                # Zero transcode: the pyramid's stored tile is the DeepZoom tile.
                assert source == "stored", (z, col, row, source)
    if expected == "ready" and min(width, height) >= 256:
        assert sources, "a converted slide this size has full tiles"
    if expected == "ready":
        # IIIF's tile grid is the same stored grid.
        info = client.get(f"/iiif/3/{slide_id}/info.json").json()
        assert info["width"] == width and info["tiles"][0]["width"] == 256
        iiif = client.get(f"/iiif/3/{slide_id}/0,0,256,256/256,/0/default.jpg")
        dzt = client.get(f"/slides/{slide_id}_files/{dz.z_max}/0_0.jpeg")
        assert iiif.status_code == 200 and iiif.content == dzt.content


def _gradient_tiff(path: Path, width: int, height: int) -> None:
    """A single-level tiled JPEG TIFF with 240-pixel tiles (like Aperio's): a slide that
    needs a pyramid. Smooth content keeps it small and quick to write."""
    xy = pyvips.Image.xyz(width, height)
    r = (xy[0] * 255 / width).cast("uchar")
    g = (xy[1] * 255 / height).cast("uchar")
    b = ((xy[0] + xy[1]) % 256).cast("uchar")
    image = r.bandjoin([g, b]).copy(interpretation="srgb")
    image.tiffsave(str(path), tile=True, tile_width=240, tile_height=240, compression="jpeg", Q=85)


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Big enough (400 Mpx, ~5 s to convert here) to be caught mid-conversion.
    path = tmp_path_factory.mktemp("slides") / "gradient-20000.tiff"
    _gradient_tiff(path, 20000, 20000)
    return path


def _kill_worker(settings: Settings, client: TestClient, slide_id: str, attempt: int) -> None:
    """Waits for a worker to be converting the slide (its n-th attempt), then kills it."""
    catalogue = Catalogue.open(settings.database_url)

    def converting(detail: dict[str, Any]) -> bool:
        conversion = job(catalogue, slide_id)
        assert conversion is not None
        return (
            detail["conversion"]["status"] == "converting"
            and conversion.attempts == attempt
            and conversion.worker_pid is not None
        )

    detail = _wait(client, slide_id, converting)
    assert detail["status"] == "converting"
    pid = job(catalogue, slide_id).worker_pid  # type: ignore[union-attr]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_status_over_http_and_a_killed_worker_leaves_the_hub_serving(
    settings: Settings, client: TestClient, big_slide: Path
) -> None:
    slide_id = ingest(settings, big_slide, convert=True)
    tile = f"/slides/{slide_id}_files/14/3_2.jpeg"

    # Converting, with its percent growing, while the original serves the tiles.
    seen = _wait(
        client,
        slide_id,
        lambda d: d["conversion"]["status"] == "converting" and d["conversion"]["percent"] > 0,
    )
    assert seen["status"] == "converting"
    during = client.get(tile)
    assert during.status_code == 200
    assert during.headers["server-timing"].startswith("transcode")

    # A killed worker is retried once, then the slide is marked failed with the reason.
    _kill_worker(settings, client, slide_id, attempt=1)
    _kill_worker(settings, client, slide_id, attempt=2)
    failed = _wait(client, slide_id, lambda d: d["status"] == "failed")
    assert "killed" in failed["error"] and "killed" in failed["conversion"]["error"]
    # The hub never noticed: health, listing and tiles (from the original) still work.
    assert client.get("/api/health").json()["status"] == "ok"
    assert [s["status"] for s in client.get("/api/slides").json()["items"]] == ["failed"]
    still = client.get(tile)
    assert still.status_code == 200 and still.content == during.content

    # Requeued, the conversion completes and tiles switch to the pyramid (new ETags).
    assert requeue(Catalogue.open(settings.database_url), slide_id)
    ready = _wait(client, slide_id, _settled)
    assert (ready["status"], ready["conversion"]["status"]) == ("ready", "ready"), ready
    assert ready["error"] is None
    after = client.get(tile)
    assert after.status_code == 200
    assert after.headers["server-timing"].startswith("stored")
    assert after.headers["etag"] != during.headers["etag"]
    assert float(np.abs(_decode(after.content) - _decode(during.content)).mean()) < 3.0


def test_a_slide_corrupt_in_the_middle_fails_conversion_with_a_reason(
    settings: Settings, client: TestClient, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt-corner.tiff"
    _gradient_tiff(path, 2400, 2400)
    # Ingest decodes a probe at the centre only: the first tile is destroyed.
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(b"\0" * count)
    slide_id = ingest(settings, path, convert=True)
    detail = _wait(client, slide_id, _settled)
    assert detail["status"] == "failed", detail
    assert "cannot be converted" in detail["error"]
    assert detail["conversion"]["status"] == "failed"
    # The rest of the slide is still served from the original.
    assert client.get(f"/slides/{slide_id}_files/12/5_5.jpeg").status_code == 200


def test_pyramid_on_s3_serves_stored_tiles(s3_server: SeaweedS3, tmp_path: Path) -> None:
    bucket = "convert" + uuid.uuid4().hex[:8]
    settings = s3_settings(s3_server, tmp_path / "home", bucket)
    try:
        slide_id = ingest(settings, sample(NDPI), convert=True)
        with hub_client(settings) as client:
            detail = _wait(client, slide_id, _settled)
            assert detail["conversion"]["status"] == "ready", detail
            response = client.get(f"/slides/{slide_id}_files/12/1_1.jpeg")
            assert response.status_code == 200
            assert response.headers["server-timing"].startswith("stored")
        # The pyramid and its header pack sit beside the untouched original.
        store = build_store(settings)
        keys = {o.key for o in store.list(f"slides/{slide_id}/")}
        pyramids = sorted(k.removeprefix(f"slides/{slide_id}/") for k in keys if "pyramid" in k)
        assert len(pyramids) == 2, pyramids
        assert pyramids[0].endswith("-index.bin") and pyramids[1].endswith(".tiff")
        original = next(k for k in keys if "/original/" in k)
        assert store.get(original) == sample(NDPI).read_bytes()
    finally:
        s3_server.remove_bucket(bucket)


def test_cli_ingest_builds_the_pyramid_with_progress(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAIN_HOME", str(settings.home))
    result = CliRunner().invoke(cli, ["ingest", str(sample(SVS)), str(sample(TINY))])
    assert result.exit_code == 0, result.output
    assert "pyramid ready" in result.output
    assert "no conversion needed (the slide fits in one 256x256 tile" in result.output
    catalogue = Catalogue.open(settings.database_url)
    statuses = {s.name: (s.status, job(catalogue, s.id).status) for s in catalogue.list_slides()}  # type: ignore[union-attr]
    assert statuses == {
        "CMU-1-Small-Region.svs": ("ready", "ready"),
        "small.svs": ("ready", "skipped"),
    }
    # `iain convert` rebuilds a pyramid on demand; an unknown id is refused by name.
    svs_id = next(s.id for s in catalogue.list_slides() if s.name == "CMU-1-Small-Region.svs")
    again = CliRunner().invoke(cli, ["convert", svs_id])
    assert again.exit_code == 0 and f"{svs_id}: pyramid ready" in again.output, again.output
    unknown = CliRunner().invoke(cli, ["convert", "nosuchslide"])
    assert unknown.exit_code == 1 and "no such slide: nosuchslide" in unknown.output


def test_a_conversion_left_running_by_a_stopped_hub_is_requeued_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    slide_id = ingest(settings, sample(SVS), convert=True)
    # What a hub killed mid-conversion leaves: `converting`, by a worker long gone.
    catalogue = Catalogue.open(settings.database_url)
    with catalogue.session() as session, session.begin():
        conversion = session.get(Conversion, slide_id)
        assert conversion is not None
        conversion.status, conversion.attempts, conversion.worker_pid = "converting", 1, None
        conversion.updated_at = datetime.now(UTC) - timedelta(hours=1)
        slide = session.get(Slide, slide_id)
        assert slide is not None
        slide.status = "converting"
    with hub_client(settings) as client:
        detail = _wait(client, slide_id, _settled)
    assert (detail["status"], detail["conversion"]["status"]) == ("ready", "ready"), detail
