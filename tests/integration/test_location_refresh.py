"""A running hub notices a pyramid built elsewhere: `iain convert` in another process (or
another hub on the same database) builds it, and the running hub serves from it within
exchange.slides.catalogue.LOCATION_TTL_S, without a restart and without a database query per tile;
a slide whose pyramid is queued, being built or failed likewise, within PENDING_TTL_S."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event, update

from exchange.core.models import Conversion, Slide
from exchange.slides.catalogue import LOCATION_TTL_S, PENDING_TTL_S, Catalogue
from iain.settings import Settings
from tests import database
from tests.browser.hub import running_hub
from tests.hub import hub_client, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"  # 240x240 JPEG tiles: it gets a pyramid
TILE = "{}_files/12/3_4.jpeg"  # a full 256x256 tile of level 0 (2220x2967)
# On this loaded machine a request may take a while: the margin beyond the TTL.
MARGIN_S = 2.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No conversion worker in the hub under test: the pyramid is built by another process.
    return database.settings(tmp_path / "home", tile_cache_mb=16, convert_worker=False)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _iain_convert(settings: Settings, slide_id: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "iain.cli", "convert", slide_id],
        env=database.hub_env(settings.home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"iain convert failed:\n{run.stdout}\n{run.stderr}"
    assert f"{slide_id}: pyramid ready" in run.stderr, run.stderr


def test_a_running_hub_serves_the_pyramid_iain_convert_built_in_another_process(
    settings: Settings,
) -> None:
    slide_id = ingest(settings, sample(SVS))  # no pyramid: served from its original
    tile = "/slides/" + TILE.format(slide_id)
    with hub_client(settings) as hub:
        before = hub.get(tile)
        assert before.status_code == 200
        assert before.headers["server-timing"].startswith("transcode")
        assert hub.get(tile).headers["etag"] == before.headers["etag"]

        _iain_convert(settings, slide_id)
        converted = time.monotonic()
        while True:
            after = hub.get(tile)
            assert after.status_code == 200
            if after.headers["etag"] != before.headers["etag"]:
                break
            waited = time.monotonic() - converted
            assert waited < LOCATION_TTL_S + MARGIN_S, "the hub still serves the original"
            time.sleep(0.05)
        # Now the pyramid's stored tile, showing the same tissue.
        assert after.headers["server-timing"].startswith("stored")
        assert float(np.abs(_pixels(after.content) - _pixels(before.content)).mean()) < 3.0
        assert hub.get(f"/api/slides/{slide_id}").json()["conversion"]["status"] == "ready"

    # A hub started afresh serves the very same tile: nothing of the original lingers.
    with hub_client(settings) as fresh:
        again = fresh.get(tile)
        assert again.headers["etag"] == after.headers["etag"]
        assert again.content == after.content


def test_two_hub_processes_on_one_database(settings: Settings, tmp_path: Path) -> None:
    """Hub A serves the original; hub B, a second process, rebuilds the pyramid (`iain
    convert --background` queues it, B's worker builds it); A switches within the TTL."""
    slide_id = ingest(settings, sample(SVS))
    tile = "/slides/" + TILE.format(slide_id)
    with hub_client(settings) as hub_a:
        before = hub_a.get(tile)
        assert before.headers["server-timing"].startswith("transcode")
        env = database.hub_env(settings.home) | {"IAIN_CONVERT_WORKER": "true"}
        queued = subprocess.run(
            [sys.executable, "-m", "iain.cli", "convert", "--background", slide_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert queued.returncode == 0, queued.stderr
        work = tmp_path / "hub-b"
        work.mkdir()
        with running_hub(work, env) as hub_b:
            headers = dict(hub_a.headers)
            deadline = time.monotonic() + 120
            while True:
                detail = httpx.get(f"{hub_b}/api/slides/{slide_id}", headers=headers).json()
                if detail["conversion"]["status"] == "ready":
                    break
                assert detail["conversion"]["status"] in ("queued", "converting"), detail
                assert time.monotonic() < deadline, detail
                time.sleep(0.1)
            built = time.monotonic()
            from_b = httpx.get(hub_b + tile, headers=headers)
            assert from_b.headers["server-timing"].startswith("stored")
            while (after := hub_a.get(tile)).headers["etag"] != from_b.headers["etag"]:
                assert time.monotonic() - built < LOCATION_TTL_S + MARGIN_S, "A kept the original"
                time.sleep(0.05)
            assert after.content == from_b.content


def test_a_ready_slide_costs_no_query_per_tile(settings: Settings) -> None:
    """Between two lookups a ready slide's location comes from memory: no database round
    trip per tile, one lookup per LOCATION_TTL_S."""
    slide_id = ingest(settings, sample(SVS))
    catalogue = Catalogue.open(settings.database_url)
    statements: list[str] = []
    event.listen(catalogue.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    first = catalogue.locate(slide_id)
    assert first is not None and first.slide_id == slide_id
    looked_up = len(statements)
    assert looked_up > 0
    for _ in range(1000):
        assert catalogue.locate(slide_id) is first
    assert len(statements) == looked_up

    time.sleep(LOCATION_TTL_S + 0.1)
    assert catalogue.locate(slide_id) == first
    refreshed = len(statements)
    assert refreshed > looked_up  # looked up again once, then from memory
    for _ in range(1000):
        catalogue.locate(slide_id)
    assert len(statements) == refreshed


def _mark_failed(catalogue: Catalogue, slide_id: str) -> None:
    """What a conversion that failed leaves in the catalogue."""
    with catalogue.session() as session, session.begin():
        session.execute(
            update(Conversion)
            .where(Conversion.slide_id == slide_id)
            .values(status="failed", error="the pyramid could not be built")
        )
        session.execute(update(Slide).where(Slide.id == slide_id).values(status="failed"))


def test_a_failed_slide_costs_no_query_per_tile(settings: Settings) -> None:
    """A slide whose pyramid failed is served from its original, its location from memory
    between lookups, one lookup per PENDING_TTL_S, as a ready slide's."""
    slide_id = ingest(settings, sample(SVS), convert=True)
    catalogue = Catalogue.open(settings.database_url)
    statements: list[str] = []
    event.listen(catalogue.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    queued = catalogue.locate(slide_id)
    assert queued is not None and queued.original is None  # the original, no pyramid yet

    # Another process marks it failed: seen at the next lookup, a PENDING_TTL_S later.
    _mark_failed(Catalogue.open(settings.database_url), slide_id)
    time.sleep(PENDING_TTL_S + 0.1)
    before = len(statements)
    failed = catalogue.locate(slide_id)
    assert failed == queued
    looked_up = len(statements)
    assert looked_up > before
    for _ in range(1000):
        assert catalogue.locate(slide_id) is failed
    assert len(statements) == looked_up
    recorded = catalogue.get(slide_id)
    assert recorded is not None and recorded.status == "failed"

    time.sleep(PENDING_TTL_S + 0.1)
    assert catalogue.locate(slide_id) == failed
    refreshed = len(statements)
    assert refreshed > looked_up  # looked up again once, then from memory
    for _ in range(1000):
        catalogue.locate(slide_id)
    assert len(statements) == refreshed

    # A write through this catalogue itself (the hub's own conversion worker ending a job)
    # drops the pending location at once: the next tile looks the slide up again.
    _mark_failed(catalogue, slide_id)
    written = len(statements)
    assert catalogue.locate(slide_id) == failed
    assert len(statements) > written


def test_a_queued_slide_switches_to_its_pyramid_soon_after_another_process_builds_it(
    settings: Settings,
) -> None:
    slide_id = ingest(settings, sample(SVS), convert=True)  # queued; this hub has no worker
    tile = "/slides/" + TILE.format(slide_id)
    with hub_client(settings) as hub:
        before = hub.get(tile)
        assert before.status_code == 200
        assert before.headers["server-timing"].startswith("transcode")
        _iain_convert(settings, slide_id)
        converted = time.monotonic()
        while (after := hub.get(tile)).headers["etag"] == before.headers["etag"]:
            waited = time.monotonic() - converted
            assert waited < PENDING_TTL_S + MARGIN_S, "the hub still serves the original"
            time.sleep(0.05)
        assert after.headers["server-timing"].startswith("stored")


def test_a_catalogue_no_longer_used_is_freed_with_its_database_connections(
    settings: Settings,
) -> None:
    """Each hub, CLI command and test opens a catalogue: once dropped it must be freed, with
    its connection pool (a listener that kept it alive exhausted PostgreSQL's connection
    slots in the test suite, as it would a long-running process opening catalogues)."""
    import gc
    import weakref

    catalogue = Catalogue.open(settings.database_url)
    with catalogue.session() as session, session.begin():  # the commit listener runs
        session.execute(update(Slide).where(Slide.id == "none").values(name="x"))
    engine = weakref.ref(catalogue.engine)
    freed = weakref.ref(catalogue)
    del catalogue, session
    gc.collect()
    assert freed() is None and engine() is None
