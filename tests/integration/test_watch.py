"""The drop folder (`iain watch`) on a real S3 server: each slide ingested once, only when
complete, failures set aside with their reason, and a watcher killed mid-ingest recovers
without a duplicate."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from exchange.slides.watch import FAILED, INGESTED, REASON_SUFFIX, STATE_DIR, Watcher
from iain.app import build_store
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.s3server import SeaweedS3
from tests.testdata import sample

IAIN = [sys.executable, "-m", "iain.cli"]
SVS = "aperio/CMU-1-Small-Region.svs"


@pytest.fixture
def settings(tmp_path: Path, s3_server: SeaweedS3) -> Iterator[Settings]:
    bucket = "watch-" + uuid.uuid4().hex[:12]
    yield Settings(
        home=tmp_path / "home",
        storage_url=f"s3://{s3_server.endpoint}/{bucket}",
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,  # type: ignore[arg-type]
        s3_secure=False,
    )
    s3_server.remove_bucket(bucket)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def watcher(settings: Settings, drop: Path, settle_s: float = 5.0) -> Watcher:
    catalogue = Catalogue.open(settings.database_url)
    return Watcher(build_store(settings), catalogue, drop, "lille", settle_s=settle_s)


def slides(settings: Settings) -> list[tuple[str, str]]:
    return [(s.name, s.content_hash) for s in Catalogue.open(settings.database_url).list_slides()]


def watch_command(settings: Settings, drop: Path, *args: str) -> list[str]:
    return [*IAIN, "watch", str(drop), "--centre", "lille", "--settle", "0.3", *args]


def env(settings: Settings, s3_server: SeaweedS3) -> dict[str, str]:
    bucket = settings.storage_url.rsplit("/", 1)[1]
    return {
        **os.environ,
        **s3_server.env(bucket),
        "IAIN_HOME": str(settings.home),
        "COLUMNS": "200",
    }


def test_a_file_dropped_in_pieces_is_ingested_once_complete(settings: Settings, drop: Path):
    data = sample(SVS).read_bytes()
    w = watcher(settings, drop, settle_s=5)
    target = drop / "scan.svs"
    target.write_bytes(data[: len(data) // 2])  # the scanner has written half
    assert w.poll(now=0) == []
    assert w.poll(now=4) == []  # unchanged, but not for long enough
    with target.open("ab") as f:
        f.write(data[len(data) // 2 :])  # ... and now the rest
    assert w.poll(now=6) == []  # changed: the wait starts again
    assert w.poll(now=10) == []
    [outcome] = w.poll(now=11.5)
    assert outcome.slide_id is not None
    assert slides(settings) == [("scan.svs", hashlib.sha256(data).hexdigest())]
    assert (drop / INGESTED / "scan.svs").read_bytes() == data
    assert not target.exists()
    assert w.poll(now=100) == []  # nothing left to do


def test_a_broken_file_goes_to_failed_with_its_reason_and_the_rest_goes_on(
    settings: Settings, drop: Path
) -> None:
    shutil.copy(sample("broken/unopenable.tiff"), drop / "a-broken.tiff")
    shutil.copy(sample(SVS), drop / "b-good.svs")
    # An MRXS file and its data folder are one slide: both move together.
    (drop / "c-fake.mrxs").write_text("[GENERAL]\nnot really a slide\n")
    (drop / "c-fake").mkdir()
    (drop / "c-fake" / "Data0000.dat").write_bytes(b"\x00" * 100)
    w = watcher(settings, drop, settle_s=0)
    w.poll(now=0)
    outcomes = {o.name: o for o in w.poll(now=1)}
    assert set(outcomes) == {"a-broken.tiff", "b-good.svs", "c-fake.mrxs"}
    assert outcomes["b-good.svs"].slide_id is not None
    assert [name for name, _ in slides(settings)] == ["b-good.svs"]
    reason = (drop / FAILED / ("a-broken.tiff" + REASON_SUFFIX)).read_text()
    assert "compression" in reason
    assert (drop / FAILED / "a-broken.tiff").is_file()
    assert (drop / FAILED / "c-fake.mrxs").is_file()
    assert (drop / FAILED / "c-fake" / "Data0000.dat").is_file()
    assert (drop / FAILED / ("c-fake.mrxs" + REASON_SUFFIX)).read_text().strip()
    assert sorted(n for n in os.listdir(drop) if not n.startswith(".")) == [FAILED, INGESTED]


def test_nothing_is_ingested_twice_across_restarts(
    settings: Settings, drop: Path, s3_server: SeaweedS3
) -> None:
    shutil.copy(sample(SVS), drop / "one.svs")
    environ = env(settings, s3_server)
    first = subprocess.run(
        watch_command(settings, drop, "--once"), env=environ, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert "one.svs" in first.stdout
    shutil.copy(sample("generic-tiff/boxes.tiff"), drop / "two.tiff")
    second = subprocess.run(
        watch_command(settings, drop, "--once"), env=environ, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    assert "one.svs" not in second.stdout and "two.tiff" in second.stdout
    assert sorted(name for name, _ in slides(settings)) == ["one.svs", "two.tiff"]


def test_a_watcher_killed_mid_ingest_recovers_without_a_duplicate(
    settings: Settings, drop: Path, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    big = tmp_path / "big.tiff"
    write_synthetic_slide(big, 6000, 5000, seed=2, quality=95)
    shutil.move(big, drop / "big.tiff")
    environ = env(settings, s3_server)
    pending = drop / ".iain-watch" / "pending.json"
    running = subprocess.Popen(
        watch_command(settings, drop, "--interval", "0.05"),
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not pending.exists():
        assert running.poll() is None, running.communicate()
        assert time.monotonic() < deadline, "the watcher never started an ingest"
        time.sleep(0.002)
    running.send_signal(signal.SIGKILL)
    running.wait()
    assert (drop / "big.tiff").exists()  # killed before it could move the file
    again = subprocess.run(
        watch_command(settings, drop, "--once"), env=environ, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    digest = hashlib.sha256((drop / INGESTED / "big.tiff").read_bytes()).hexdigest()
    assert slides(settings) == [("big.tiff", digest)]
    # No half-stored objects of the interrupted attempt are left in the bucket.
    [slide] = Catalogue.open(settings.database_url).list_slides()
    prefixes = {o.key.split("/")[1] for o in build_store(settings).list("slides/")}
    assert prefixes == {slide.id}


def test_a_slide_recorded_just_before_the_kill_is_not_ingested_again(
    settings: Settings, drop: Path
) -> None:
    # The watcher was killed after recording the slide, before moving its file away: the
    # journal names the slide, the file is still in the drop folder.
    shutil.copy(sample(SVS), drop / "scan.svs")
    w = watcher(settings, drop, settle_s=0)
    [entry] = w.stable(now=0) or w.stable(now=1)
    w._write_pending(entry.name, "recorded0001")
    ingest_path(
        w.store, w.catalogue, entry.target, "lille", name="scan.svs", slide_id="recorded0001"
    )
    restarted = watcher(settings, drop, settle_s=0)
    assert restarted.run(once=True) == []
    assert [s.id for s in Catalogue.open(settings.database_url).list_slides()] == ["recorded0001"]
    assert (drop / INGESTED / "scan.svs").is_file()


def test_watch_with_an_unknown_centre_says_so(settings: Settings, drop: Path, s3_server: SeaweedS3):
    result = subprocess.run(
        [*IAIN, "watch", str(drop), "--centre", "atlantis", "--once"],
        env=env(settings, s3_server),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown centre" in result.stderr


def test_a_file_removed_before_its_ingest_does_not_stop_the_watcher(
    settings: Settings, drop: Path
) -> None:
    shutil.copy(sample(SVS), drop / "gone.svs")
    w = watcher(settings, drop, settle_s=0)
    [entry] = w.stable(now=0) or w.stable(now=1)
    (drop / "gone.svs").unlink()  # the technician took it back
    outcome = w.ingest(entry)
    assert outcome is not None and outcome.slide_id is None
    assert slides(settings) == []
    shutil.copy(sample(SVS), drop / "next.svs")
    w.poll(now=2)
    assert [o.name for o in w.poll(now=3)] == ["next.svs"]


def test_a_dicom_series_folder_is_one_slide(settings: Settings, drop: Path) -> None:
    shutil.copytree(sample("dicom/openslide-boxes/boxes_0.dcm").parent, drop / "series-17")
    w = watcher(settings, drop, settle_s=0)
    w.poll(now=0)
    [outcome] = w.poll(now=1)
    assert outcome.name == "series-17" and outcome.slide_id is not None
    [slide] = Catalogue.open(settings.database_url).list_slides()
    assert (slide.name, len(slide.keys)) == ("series-17", 2)
    assert sorted(os.listdir(drop / INGESTED / "series-17")) == ["boxes_0.dcm", "boxes_1.dcm"]


def _has_open(pid: int, path: str) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == path for fd in fds.iterdir())
    except OSError:  # the process, or one of its files, went away meanwhile
        return False


def test_a_second_watcher_on_the_same_folder_is_refused(
    settings: Settings, drop: Path, s3_server: SeaweedS3
) -> None:
    environ = env(settings, s3_server)
    running = subprocess.Popen(
        watch_command(settings, drop),
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Started alone, it takes the folder's lock (a process that fails to take it closes
        # the file at once): only then does a second one start, so the first cannot lose.
        lock = str(drop / STATE_DIR / "lock")
        deadline = time.monotonic() + 60
        while not _has_open(running.pid, lock):
            assert running.poll() is None, running.stderr.read() if running.stderr else ""
            assert time.monotonic() < deadline, "the first watcher did not start"
            time.sleep(0.1)
        second = subprocess.run(
            watch_command(settings, drop, "--once"), env=environ, capture_output=True, text=True
        )
        assert second.returncode == 2
        assert "another watcher" in second.stderr
    finally:
        running.send_signal(signal.SIGKILL)
        running.wait()
    # Its holder gone, the folder is free again.
    freed = subprocess.run(
        watch_command(settings, drop, "--once"), env=environ, capture_output=True, text=True
    )
    assert freed.returncode == 0, freed.stderr
