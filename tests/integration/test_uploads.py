"""Resumable uploads through the HTTP API and `iain upload`, on a local store and on a real
S3 server (SeaweedFS), including a client killed in the middle of an upload."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.core.models import UploadFile, UploadPart
from exchange.slides.catalogue import Catalogue
from iain.app import build_store, create_app
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from storage.local import LocalStore
from tests.hub import hub_client, ingest, serving, token_for
from tests.s3server import SeaweedS3
from tests.testdata import sample

KiB, MiB = 1024, 1024 * 1024
IAIN = [sys.executable, "-m", "iain.cli"]
NDPI = "hamamatsu/test3-DAPI-2-(387).ndpi"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pyramidal TIFF of ~35 MB: 7 or more parts of 5 MiB, the smallest S3 allows."""
    path = tmp_path_factory.mktemp("big") / "big-slide.tiff"
    write_synthetic_slide(path, 8000, 6000, seed=4, quality=95)
    return path


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    # Small parts: a real sample slide of 3.5 MB arrives in 14 of them.
    return Settings(home=tmp_path / "home", tile_cache_mb=0, upload_part_size=256 * KiB)


@pytest.fixture
def s3_settings(tmp_path: Path, s3_server: SeaweedS3) -> Iterator[Settings]:
    bucket = "up-" + uuid.uuid4().hex[:12]
    settings = Settings(
        home=tmp_path / "home",
        tile_cache_mb=0,
        storage_url=f"s3://{s3_server.endpoint}/{bucket}",
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,  # type: ignore[arg-type]
        s3_secure=False,
        upload_part_size=5 * MiB,
    )
    yield settings
    s3_server.remove_bucket(bucket)


def start(client: TestClient, files: list[tuple[str, bytes]], **extra: object) -> dict[str, Any]:
    body = {
        "centre": "caen",
        "files": [{"path": p, "size": len(d), "sha256": sha256(d)} for p, d in files],
        **extra,
    }
    response = client.post("/api/uploads", json=body)
    assert response.status_code == 201, response.text
    upload: dict[str, Any] = response.json()
    return upload


def send_parts(
    client: TestClient, upload: dict[str, Any], files: list[bytes], reverse: bool = False
) -> None:
    size = upload["part_size"]
    todo = [(f["index"], n) for f in upload["files"] for n in range(1, f["parts"] + 1)]
    for index, n in reversed(todo) if reverse else todo:
        part = files[index][(n - 1) * size : n * size]
        response = client.put(
            f"/api/uploads/{upload['id']}/files/{index}/parts/{n}",
            content=part,
            headers={"X-Part-Sha256": sha256(part)},
        )
        assert response.status_code == 200, response.text


def tiles(client: httpx.Client | TestClient, slide_id: str) -> list[bytes]:
    """A few DeepZoom tiles across the pyramid: full resolution, middle, the top."""
    found = []
    for z in (0, 6, 9, 11, 12):
        response = client.get(f"/slides/{slide_id}_files/{z}/0_0.jpeg")
        assert response.status_code == 200, (z, response.text)
        found.append(response.content)
    return found


def object_keys(settings: Settings, prefix: str = "") -> list[str]:
    return [o.key for o in build_store(settings).list(prefix)]


# --- through the API ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_slide_sent_in_parts_appears_only_once_complete_with_the_tiles_of_a_direct_ingest(
    backend: str, request: pytest.FixtureRequest, big_slide: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    path = sample(NDPI) if backend == "local" else big_slide
    data = path.read_bytes()
    with hub_client(settings) as client:
        upload = start(client, [(path.name, data)])
        assert upload["files"][0]["parts"] == -(-len(data) // upload["part_size"]) >= 7
        send_parts(client, upload, [data], reverse=True)  # any order works
        state = client.get(f"/api/uploads/{upload['id']}").json()
        assert state["files"][0]["stored"] == list(range(1, upload["files"][0]["parts"] + 1))
        assert client.get("/api/slides").json()["items"] == []  # every part stored, still no slide
        done = client.post(f"/api/uploads/{upload['id']}/complete")
        assert done.status_code == 200, done.text
        slide = done.json()
        assert [s["id"] for s in client.get("/api/slides").json()["items"]] == [slide["id"]]
        direct = ingest(settings, path)
        assert tiles(client, slide["id"]) == tiles(client, direct)
        detail = client.get(f"/api/slides/{slide['id']}").json()
        assert detail["size_bytes"] == len(data)
        # Completing twice (a client that lost the answer) gives the same slide.
        again = client.post(f"/api/uploads/{upload['id']}/complete")
        assert again.json()["id"] == slide["id"]
        assert len(client.get("/api/slides").json()["items"]) == 2
    # The original is stored once, where the parts were joined: no second copy.
    assert object_keys(settings, f"slides/{slide['id']}/original/") == [
        f"slides/{slide['id']}/original/{path.name}"
    ]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_wrong_checksum_is_refused_and_nothing_is_visible(
    backend: str, request: pytest.FixtureRequest
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    data = sample("aperio/CMU-1-Small-Region.svs").read_bytes()
    with hub_client(settings) as client:
        body = {
            "centre": "caen",
            "files": [{"path": "slide.svs", "size": len(data), "sha256": sha256(b"other")}],
        }
        upload = client.post("/api/uploads", json=body).json()
        send_parts(client, upload, [data])
        refused = client.post(f"/api/uploads/{upload['id']}/complete")
        assert refused.status_code == 422
        assert "slide.svs" in refused.json()["detail"]
        assert "SHA-256" in refused.json()["detail"]
        assert client.get("/api/slides").json()["items"] == []
        state = client.get(f"/api/uploads/{upload['id']}").json()
        assert state["status"] == "failed" and "SHA-256" in state["error"]
        assert client.post(f"/api/uploads/{upload['id']}/complete").status_code == 409
    assert object_keys(settings, "slides/") == []


def test_part_damaged_in_transit_is_refused_and_can_be_sent_again(
    local_settings: Settings,
) -> None:
    data = sample(NDPI).read_bytes()
    with hub_client(local_settings) as client:
        upload = start(client, [("s.ndpi", data)])
        part = data[: upload["part_size"]]
        url = f"/api/uploads/{upload['id']}/files/0/parts/1"
        damaged = client.put(url, content=part, headers={"X-Part-Sha256": sha256(b"x")})
        assert damaged.status_code == 422 and "part 1" in damaged.json()["detail"]
        assert client.get(f"/api/uploads/{upload['id']}").json()["files"][0]["stored"] == []
        ok = client.put(url, content=part, headers={"X-Part-Sha256": sha256(part)})
        assert ok.status_code == 200
        assert client.get(f"/api/uploads/{upload['id']}").json()["files"][0]["stored"] == [1]


def test_dicom_series_uploaded_as_several_files_becomes_one_slide(s3_settings: Settings) -> None:
    folder = sample("dicom/openslide-boxes/boxes_0.dcm").parent
    files = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.dcm"))]
    files.append(("scanner-notes.txt", b"stray file that is no part of the slide"))
    with hub_client(s3_settings) as client:
        upload = start(client, files, name="boxes series")
        send_parts(client, upload, [d for _, d in files])
        done = client.post(f"/api/uploads/{upload['id']}/complete")
        assert done.status_code == 200, done.text
        slide = done.json()
        assert slide["name"] == "boxes series"
        assert (slide["width"], slide["height"]) == (16, 16)
        assert client.get(f"/slides/{slide['id']}_files/0/0_0.jpeg").status_code == 200
    assert object_keys(s3_settings, f"slides/{slide['id']}/original/") == [
        f"slides/{slide['id']}/original/boxes_0.dcm",
        f"slides/{slide['id']}/original/boxes_1.dcm",
    ]


def test_upload_that_is_no_slide_is_refused_and_leaves_nothing(local_settings: Settings) -> None:
    data = sample("broken/unopenable.tiff").read_bytes()
    with hub_client(local_settings) as client:
        upload = start(client, [("scan.tiff", data)])
        send_parts(client, upload, [data])
        refused = client.post(f"/api/uploads/{upload['id']}/complete")
        assert refused.status_code in (415, 422)
        assert "compression" in refused.json()["detail"]
        assert client.get("/api/slides").json()["items"] == []
    assert object_keys(local_settings, "slides/") == []


def test_upload_survives_a_hub_restart(local_settings: Settings) -> None:
    data = sample(NDPI).read_bytes()
    with hub_client(local_settings) as client:
        upload = start(client, [("s.ndpi", data)])
        size = upload["part_size"]
        for n in (1, 2, 3):
            part = data[(n - 1) * size : n * size]
            client.put(f"/api/uploads/{upload['id']}/files/0/parts/{n}", content=part)
    with hub_client(local_settings) as client:  # a new hub process
        state = client.get(f"/api/uploads/{upload['id']}").json()
        assert state["files"][0]["stored"] == [1, 2, 3]
        incomplete = client.post(f"/api/uploads/{upload['id']}/complete")
        assert incomplete.status_code == 409 and "lacks" in incomplete.json()["detail"]
        for n in range(4, state["files"][0]["parts"] + 1):
            part = data[(n - 1) * size : n * size]
            client.put(f"/api/uploads/{upload['id']}/files/0/parts/{n}", content=part)
        assert client.post(f"/api/uploads/{upload['id']}/complete").status_code == 200


def test_abort_drops_every_stored_byte(s3_settings: Settings, big_slide: Path) -> None:
    data = big_slide.read_bytes()
    with hub_client(s3_settings) as client:
        upload = start(client, [("big.tiff", data)])
        size = upload["part_size"]
        client.put(f"/api/uploads/{upload['id']}/files/0/parts/1", content=data[:size])
        assert client.delete(f"/api/uploads/{upload['id']}").status_code == 204
        assert client.get(f"/api/uploads/{upload['id']}").status_code == 404
        gone = client.put(f"/api/uploads/{upload['id']}/files/0/parts/2", content=b"x")
        assert gone.status_code == 404
    assert object_keys(s3_settings) == []


@pytest.mark.parametrize(
    ("files", "word"),
    [
        ([{"path": "../escape.svs", "size": 1, "sha256": "0" * 64}], "invalid file path"),
        ([{"path": "/etc/passwd", "size": 1, "sha256": "0" * 64}], "invalid file path"),
        ([{"path": "a/./b.svs", "size": 1, "sha256": "0" * 64}], "invalid file path"),
        ([{"path": "x.svs", "size": 1, "sha256": "nothex"}], "sha256"),
        ([{"path": "x.svs", "size": 1, "sha256": "0" * 64}] * 2, "twice"),
        ([{"path": f"f{i}.dcm", "size": 1, "sha256": "0" * 64} for i in range(5001)], "many"),
        ([{"path": "x.svs", "size": 10**15, "sha256": "0" * 64}], "limit"),
        ([], "at least one file"),
    ],
)
def test_malformed_uploads_are_refused(
    local_settings: Settings, files: list[dict[str, Any]], word: str
) -> None:
    with hub_client(local_settings) as client:
        response = client.post("/api/uploads", json={"centre": "caen", "files": files})
        assert response.status_code == 400
        assert word in response.json()["detail"]
        assert client.get("/api/slides").json()["items"] == []


def test_bad_part_requests_get_clear_errors(local_settings: Settings) -> None:
    data = sample(NDPI).read_bytes()
    with hub_client(local_settings) as client:
        unknown_centre = client.post(
            "/api/uploads",
            json={"centre": "nowhere", "files": [{"path": "a", "size": 1, "sha256": "0" * 64}]},
        )
        assert unknown_centre.status_code == 400
        assert client.get("/api/uploads/doesnotexist").status_code == 404
        upload = start(client, [("s.ndpi", data)])
        base = f"/api/uploads/{upload['id']}/files"
        assert client.put(f"{base}/0/parts/99", content=b"x").status_code == 400
        assert client.put(f"{base}/5/parts/1", content=b"x").status_code == 404
        short = client.put(f"{base}/0/parts/1", content=b"too short")
        assert short.status_code == 400 and "must be" in short.json()["detail"]
        too_long = client.put(f"{base}/0/parts/1", content=b"x" * (upload["part_size"] + 1))
        assert too_long.status_code == 400


# --- `iain upload`, killed and resumed --------------------------------------------------------


# `iain upload --centre rouen` runs as a technician of Rouen.
ROUEN = {"username": "technician.rouen", "centre": "rouen", "roles": ("technician",)}


def upload_command(
    path: Path, hub: str, state_dir: Path, *options: str, token: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state_dir), "COLUMNS": "200", "IAIN_TOKEN": token}
    return subprocess.Popen(
        [*IAIN, "upload", str(path), "--hub", hub, "--centre", "rouen", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_parts(catalogue: Catalogue) -> int:
    with catalogue.session() as session:
        return int(session.scalar(select(func.count()).select_from(UploadPart)) or 0)


def test_upload_killed_in_the_middle_resumes_where_it_stopped(
    s3_settings: Settings, big_slide: Path, tmp_path: Path
) -> None:
    catalogue = Catalogue.open(s3_settings.database_url)
    parts = -(-big_slide.stat().st_size // (5 * MiB))
    token = token_for(s3_settings, **ROUEN)  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {token}"}
    with serving(s3_settings) as hub:
        # One part at a time, so that the kill surely lands with parts still to send.
        first = upload_command(big_slide, hub, tmp_path / "state", "--jobs", "1", token=token)
        deadline = time.monotonic() + 60
        while stored_parts(catalogue) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no part arrived"
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # A part whose bytes had all arrived may still be landing in S3: let it.
        at_kill = -1
        while at_kill != stored_parts(catalogue):
            at_kill = stored_parts(catalogue)
            time.sleep(0.5)
        assert 2 <= at_kill < parts  # killed in the middle
        assert httpx.get(f"{hub}/api/slides", headers=auth).json()["items"] == []

        second = upload_command(big_slide, hub, tmp_path / "state", token=token)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        # It asked the hub what it had and sent only the rest.
        assert f"{parts} parts, resuming: {at_kill} already stored" in err
        slide_id = out.split()[0]
        with httpx.Client(base_url=hub, headers=auth) as client:
            listed = client.get("/api/slides").json()["items"]
            assert [(s["id"], s["centre"]) for s in listed] == [(slide_id, "rouen")]
            direct = ingest(s3_settings, big_slide, "rouen")
            assert tiles(client, slide_id) == tiles(client, direct)
    assert stored_parts(catalogue) == parts  # no part was stored twice under another number


def test_a_hub_on_s3_refuses_parts_smaller_than_s3_allows(s3_settings: Settings) -> None:
    too_small = s3_settings.model_copy(update={"upload_part_size": 1 * MiB})
    with pytest.raises(ValueError, match="minimum"):
        create_app(too_small)


def test_a_completed_upload_takes_no_more_parts(local_settings: Settings) -> None:
    data = sample("aperio/small.svs").read_bytes()
    with hub_client(local_settings) as client:
        upload = start(client, [("small.svs", data)])
        send_parts(client, upload, [data])
        assert client.post(f"/api/uploads/{upload['id']}/complete").status_code == 200
        late = client.put(f"/api/uploads/{upload['id']}/files/0/parts/1", content=data)
        assert late.status_code == 409 and "complete" in late.json()["detail"]
        assert client.delete(f"/api/uploads/{upload['id']}").status_code == 409
        assert len(client.get("/api/slides").json()["items"]) == 1


def test_iain_upload_of_a_broken_file_says_why(local_settings: Settings, tmp_path: Path) -> None:
    token = token_for(local_settings, **ROUEN)  # type: ignore[arg-type]
    with serving(local_settings) as hub:
        command = upload_command(
            sample("broken/unreadable.svs"), hub, tmp_path / "state", token=token
        )
        _out, err = command.communicate(timeout=120)
        assert command.returncode == 1
        assert "upload failed" in err and "decoded" in err
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{hub}/api/slides", headers=auth).json()["items"] == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_completion_cut_short_after_joining_the_parts_finishes_when_retried(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # S3 servers differ: SeaweedFS accepts a second CompleteMultipartUpload, MinIO and AWS
    # answer NoSuchUpload, as the local store does.
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    data = sample("aperio/CMU-1-Small-Region.svs").read_bytes()
    with hub_client(settings) as client:
        upload = start(client, [("cmu.svs", data)])
        send_parts(client, upload, [data])
        # The hub joined the parts on S3, then died before noting it in the catalogue.
        catalogue = Catalogue.open(settings.database_url)
        with catalogue.session() as session:
            f = session.get(UploadFile, (upload["id"], 0))
            parts = [(p.number, p.etag) for p in session.scalars(select(UploadPart))]
        assert f is not None and not f.assembled
        build_store(settings).complete_multipart(f.key, f.multipart_id, parts)
        done = client.post(f"/api/uploads/{upload['id']}/complete")
        assert done.status_code == 200, done.text
        assert [s["id"] for s in client.get("/api/slides").json()["items"]] == [done.json()["id"]]


def test_prune_uploads_frees_what_abandoned_uploads_stored(
    s3_settings: Settings, s3_server: SeaweedS3
) -> None:
    data = sample("aperio/CMU-1-Small-Region.svs").read_bytes()
    with hub_client(s3_settings) as client:
        abandoned = start(client, [("a.svs", data)])
        send_parts(client, abandoned, [data])
        finished = start(client, [("b.svs", data)])
        send_parts(client, finished, [data])
        slide = client.post(f"/api/uploads/{finished['id']}/complete").json()
    bucket = s3_settings.storage_url.rsplit("/", 1)[1]
    environ = {**os.environ, **s3_server.env(bucket), "IAIN_HOME": str(s3_settings.home)}
    kept = subprocess.run([*IAIN, "prune-uploads"], env=environ, capture_output=True, text=True)
    assert "0 unfinished" in kept.stdout, kept.stderr  # a week has not passed
    pruned = subprocess.run(
        [*IAIN, "prune-uploads", "--days", "0"], env=environ, capture_output=True, text=True
    )
    assert "1 unfinished" in pruned.stdout, pruned.stderr
    with hub_client(s3_settings) as client:
        assert client.get(f"/api/uploads/{abandoned['id']}").status_code == 404
        assert client.get(f"/api/uploads/{finished['id']}").json()["slide_id"] == slide["id"]
    assert {k.split("/")[1] for k in object_keys(s3_settings)} == {slide["id"]}
    # S3 keeps no hidden parts of the abandoned upload either.
    minio = s3_server.client()
    assert list(minio._list_multipart_uploads(bucket).uploads) == []


def test_two_hub_processes_completing_the_same_upload_make_one_slide(
    s3_settings: Settings,
) -> None:
    data = sample(NDPI).read_bytes()
    with (
        hub_client(s3_settings) as first,
        hub_client(s3_settings) as second,
    ):
        upload = start(first, [("s.ndpi", data)])
        send_parts(first, upload, [data])
        url = f"/api/uploads/{upload['id']}/complete"
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda c: c.post(url), [first, second]))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        assert len(first.get("/api/slides").json()["items"]) == 1


# --- completion in place: no local copy of a TIFF-family slide --------------------------------


class DiskWatch(threading.Thread):
    """Records the most bytes (and files) the hub's upload work dir held while it ran."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.peak_bytes = 0
        self.peak_files = 0
        self.looks = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = files = 0
            for folder, _dirs, names in os.walk(self.folder):
                for name in names:
                    try:
                        total += os.stat(os.path.join(folder, name)).st_size
                    except FileNotFoundError:
                        continue  # deleted while we looked
                    files += 1
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_files = max(self.peak_files, files)
            self.looks += 1
            time.sleep(0.001)

    def __enter__(self) -> DiskWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()


def work_dir(settings: Settings) -> Path:
    return settings.cache_dir / "uploads"


def leftovers(settings: Settings) -> list[str]:
    folder = work_dir(settings)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_tiff_upload_completes_without_a_local_copy_and_reads_it_about_once(
    backend: str, request: pytest.FixtureRequest, big_slide: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    data = big_slide.read_bytes()
    with hub_client(settings) as client:
        upload = start(client, [("big-slide.tiff", data)])
        send_parts(client, upload, [data])
        store = client.app.state.hub.store  # type: ignore[attr-defined]
        read_before = store.bytes_read if backend == "s3" else 0
        with DiskWatch(work_dir(settings)) as watch:
            done = client.post(f"/api/uploads/{upload['id']}/complete")
        assert done.status_code == 200, done.text
        slide = done.json()
        # Not a byte of the 35 MB slide was written to the hub's disk, before or after.
        assert watch.looks > 10 and watch.peak_bytes == 0 and watch.peak_files == 0
        assert leftovers(settings) == []
        if backend == "s3":
            # One pass for the SHA-256, plus the header and probe tiles of the validation.
            fetched = store.bytes_read - read_before
            assert len(data) <= fetched <= len(data) + 2 * MiB, fetched
        assert (slide["width"], slide["height"]) == (8000, 6000)
        assert client.get(f"/api/slides/{slide['id']}").json()["size_bytes"] == len(data)
        direct = ingest(settings, big_slide)
        assert tiles(client, slide["id"]) == tiles(client, direct)


def test_tiff_changed_in_storage_before_completion_is_refused_by_its_checksum(
    s3_settings: Settings, big_slide: Path
) -> None:
    data = big_slide.read_bytes()
    with hub_client(s3_settings) as client:
        upload = start(client, [("big-slide.tiff", data)])
        send_parts(client, upload, [data])
        # The parts were joined (and noted so) by a hub that then stopped; meanwhile a byte
        # of pixel data changed in storage. The file still parses: only its SHA-256 tells.
        catalogue = Catalogue.open(s3_settings.database_url)
        with catalogue.session() as session, session.begin():
            f = session.get(UploadFile, (upload["id"], 0))
            assert f is not None
            parts = [(p.number, p.etag) for p in session.scalars(select(UploadPart))]
            store = build_store(s3_settings)
            store.complete_multipart(f.key, f.multipart_id, parts)
            f.assembled = True
        changed = bytearray(data)
        changed[len(data) // 2] ^= 0xFF
        store.put_bytes(f.key, bytes(changed))
        with DiskWatch(work_dir(s3_settings)) as watch:
            refused = client.post(f"/api/uploads/{upload['id']}/complete")
        assert refused.status_code == 422, refused.text
        assert "big-slide.tiff" in refused.json()["detail"]
        assert "SHA-256" in refused.json()["detail"]
        assert watch.peak_bytes == 0
        assert client.get("/api/slides").json()["items"] == []
        state = client.get(f"/api/uploads/{upload['id']}").json()
        assert state["status"] == "failed" and "SHA-256" in state["error"]
    assert object_keys(s3_settings, "slides/") == []
    assert leftovers(s3_settings) == []


@pytest.mark.parametrize(
    ("relative", "status", "reason"),
    [
        ("broken/unreadable.svs", 422, "cannot be decoded"),
        ("broken/unopenable.tiff", 415, "compression"),
        ("ome-tiff/4D-series.ome.tiff", 415, "pyramidal"),
    ],
)
def test_broken_tiff_is_refused_in_place_with_its_reason(
    s3_settings: Settings, relative: str, status: int, reason: str
) -> None:
    data = sample(relative).read_bytes()
    name = Path(relative).name
    with hub_client(s3_settings) as client:
        upload = start(client, [(name, data)])
        send_parts(client, upload, [data])
        with DiskWatch(work_dir(s3_settings)) as watch:
            refused = client.post(f"/api/uploads/{upload['id']}/complete")
        assert refused.status_code == status, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith(f"{name}: ") and reason in detail
        assert watch.peak_bytes == 0
        assert client.get("/api/slides").json()["items"] == []
        assert client.get(f"/api/uploads/{upload['id']}").json()["error"] == detail
    assert object_keys(s3_settings, "slides/") == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_single_dicom_file_still_goes_through_a_local_copy_that_is_deleted(
    backend: str, request: pytest.FixtureRequest
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    path = sample("dicom/google-wsi2dcm-jpeg/jpeg.dicom")
    data = path.read_bytes()
    with hub_client(settings) as client:
        upload = start(client, [(path.name, data)])
        send_parts(client, upload, [data])
        done = client.post(f"/api/uploads/{upload['id']}/complete")
        assert done.status_code == 200, done.text
        slide = done.json()
        assert (slide["width"], slide["height"]) == (957, 715)
        assert client.get(f"/slides/{slide['id']}_files/0/0_0.jpeg").status_code == 200
        assert leftovers(settings) == []  # the OpenSlide copy is gone once the slide is in
        # A wrong checksum is caught on the way down, and the copy is deleted all the same.
        bad = client.post(
            "/api/uploads",
            json={
                "centre": "caen",
                "files": [{"path": path.name, "size": len(data), "sha256": sha256(b"x")}],
            },
        ).json()
        send_parts(client, bad, [data])
        refused = client.post(f"/api/uploads/{bad['id']}/complete")
        assert refused.status_code == 422 and "SHA-256" in refused.json()["detail"]
        assert leftovers(settings) == []
    # Only the accepted slide's objects are left (its normalised pyramid may have been
    # written beside its original by the hub's conversion worker in the meantime).
    assert {k.split("/")[1] for k in object_keys(settings, "slides/")} == {slide["id"]}


def test_local_copies_left_by_a_killed_hub_are_removed_when_a_hub_starts(
    local_settings: Settings,
) -> None:
    # A hub killed while it checked a DICOM series left its copy; a day later it is no
    # completion in progress (another hub sharing the folder may be running a fresh one).
    folder = work_dir(local_settings)
    stale, fresh = folder / "upload-killed", folder / "upload-running"
    for copy in (stale, fresh):
        (copy / "files").mkdir(parents=True)
        (copy / "files" / "boxes_0.dcm").write_bytes(b"\0" * 4096)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    with hub_client(local_settings) as client:
        assert client.get("/api/slides").status_code == 200
    assert leftovers(local_settings) == ["upload-running"]


class ReplacedAfterFirstRead(LocalStore):
    """The hub's local store, where another writer replaces the object named `name` with
    `replacement` between the hub's first and second full reads of it."""

    def __init__(self, root: Path, name: str, replacement: bytes) -> None:
        super().__init__(root)
        self.name, self.replacement, self.reads = name, replacement, 0

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        if key.endswith("/" + self.name):
            self.reads += 1
            if self.reads == 2:
                self.put_bytes(key, self.replacement)
        return super().iter_chunks(key, chunk_size)


def test_bytes_replaced_in_storage_after_the_checksum_are_never_recorded(
    local_settings: Settings, tmp_path: Path
) -> None:
    # A TIFF that only OpenSlide reads (Trestle's software tag): the in-place pass checks
    # its SHA-256 and answers "needs a copy"; then the object in storage becomes another
    # valid slide (a DICOM file) before the hub copies it. The copy is what would be parsed
    # and recorded, so its SHA-256 is checked too.
    original = tmp_path / "slide.dcm"
    pixels = np.random.default_rng(7).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    tifffile.imwrite(original, pixels, tile=(256, 256), software="MedScan")
    data = original.read_bytes()
    dicom = sample("dicom/google-wsi2dcm-jpeg/jpeg.dicom").read_bytes()
    with hub_client(local_settings) as client:
        uploads = client.app.state.hub.uploads  # type: ignore[attr-defined]
        store = ReplacedAfterFirstRead(uploads.store.root, original.name, dicom)
        uploads.store = store
        upload = start(client, [(original.name, data)])
        send_parts(client, upload, [data])
        refused = client.post(f"/api/uploads/{upload['id']}/complete")
        assert store.reads == 2  # the hash pass, then the copy
        assert refused.status_code == 422, refused.text
        assert "SHA-256" in refused.json()["detail"]
        assert client.get("/api/slides").json()["items"] == []
        assert client.get(f"/api/uploads/{upload['id']}").json()["status"] == "failed"
    assert leftovers(local_settings) == []
