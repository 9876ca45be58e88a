"""AI assistance end to end: the model registry, jobs, the worker protocol's leases and
capabilities, and real workers (threads, and processes killed at random) against a hub on
a real port — on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.core.models import InferenceJob, Overlay, Slide
from exchange.slides.catalogue import Catalogue
from iain.app import build_store, create_app
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from inference.hub_client import HubClient
from inference.worker import Worker, WorkerConfig
from tests import database
from tests.hub import auth_headers, free_port, ingest, serving
from tests.inference_kit import (
    Broken,
    Fixed32,
    GridDetector,
    PurpleMap,
    PurpleScore,
    ThreeClasses,
    corrupt_torchscript,
    export_bytes,
    manifest,
    register,
    torchscript_bytes,
    worker_token,
)

ENGINEER_NAME = "engineer.caen"
ENGINEER_ROLES = ("ai_engineer", "pathologist")


def _engineer_headers(settings: Settings) -> dict[str, str]:
    return auth_headers(settings, ENGINEER_NAME, roles=ENGINEER_ROLES)


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "he.tiff"
    write_synthetic_slide(path, 2048, 1536, seed=3)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return database.settings(tmp_path / "home", tile_cache_mb=16, job_lease_s=3.0)


@pytest.fixture
def slide_id(settings: Settings, slide_file: Path) -> str:
    return ingest(settings, slide_file)


@pytest.fixture
def engineer(settings: Settings, slide_id: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=_engineer_headers(settings)) as c:
        yield c


@pytest.fixture
def model(engineer: TestClient) -> dict[str, Any]:
    return register(engineer, torchscript_bytes(PurpleScore()), manifest())


def _worker_client(client: TestClient, token: str) -> TestClient:
    return TestClient(client.app, headers={"Authorization": f"Bearer {token}"})


def _queue(client: TestClient, model_id: str, slides: list[str], **kw: Any) -> dict[str, Any]:
    response = client.post(
        "/api/inference/jobs", json={"model_id": model_id, "slides": slides, **kw}
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()


# --- the registry --------------------------------------------------------------------------


def test_an_engineer_registers_a_model_and_pathologists_see_it(
    engineer: TestClient, settings: Settings
) -> None:
    model = register(engineer, torchscript_bytes(PurpleScore()), manifest())
    assert model["artefact_format"] == "torchscript"
    assert model["intended_use"] == "research use only"
    assert len(model["sha256"]) == 64
    exported = register(engineer, export_bytes(PurpleScore()), manifest(version="1.1.0"))
    assert exported["artefact_format"] == "export"
    with TestClient(engineer.app, headers=auth_headers(settings)) as pathologist:
        listed = pathologist.get("/api/models").json()
        assert {m["version"] for m in listed} == {"1.0.0", "1.1.0"}
        # Only AI engineers (and hub administrators) register.
        refused = pathologist.post(
            "/api/models",
            files={
                "manifest": ("m.json", json.dumps(manifest(version="9")).encode()),
                "artefact": ("m.pt", torchscript_bytes(PurpleScore())),
            },
        )
        assert refused.status_code == 403


def test_a_version_is_immutable_and_registering_it_again_changes_nothing(
    engineer: TestClient,
) -> None:
    artefact = torchscript_bytes(PurpleScore())
    first = register(engineer, artefact, manifest())
    assert register(engineer, artefact, manifest())["id"] == first["id"]
    other = engineer.post(
        "/api/models",
        files={
            "manifest": ("m.json", json.dumps(manifest()).encode()),
            "artefact": ("m.pt", torchscript_bytes(Broken())),
        },
    )
    assert other.status_code == 409
    assert "immutable" in other.json()["detail"]


@pytest.mark.parametrize(
    ("document", "artefact", "expected"),
    [
        (manifest(patch_size=3), None, "patch_size"),
        (manifest(task="guessing"), None, "task"),
        (manifest(classes=[]), None, "classes"),
        (manifest(heatmap_class="necrosis"), None, "heatmap_class"),
        (manifest(intended_use="all purposes"), None, "intended_use"),
        (manifest(sha256="0" * 64), None, "sha256"),
        ({**manifest(), "colour": "blue"}, None, "colour"),
        (manifest(), b"not a zip at all", "not a TorchScript or torch.export program"),
        (manifest(), "state_dict", "a bare state dict cannot be run"),
    ],
)
def test_bad_manifests_and_artefacts_are_refused_with_the_reason(
    engineer: TestClient, document: dict[str, Any], artefact: bytes | str | None, expected: str
) -> None:
    if artefact is None:
        artefact = torchscript_bytes(PurpleScore())
    elif artefact == "state_dict":
        import torch

        buffer = io.BytesIO()
        torch.save(torch.nn.Linear(2, 2).state_dict(), buffer)
        artefact = buffer.getvalue()
    assert isinstance(artefact, bytes)
    response = engineer.post(
        "/api/models",
        files={
            "manifest": ("m.json", json.dumps(document).encode()),
            "artefact": ("m.pt", artefact),
        },
    )
    assert response.status_code == 400, response.text
    assert expected in response.json()["detail"]


def test_a_manifest_in_toml_is_read_too(engineer: TestClient) -> None:
    toml = b"""
name = "purple-toml"
version = "2"
task = "patch_classification"
resolution = 2.0
patch_size = 64
licence = "MIT"
intended_use = "diagnostic aid"
authors = ["A. Pathologist"]
classes = [{name = "stroma", colour = "#ff00ff"}, {name = "tumour", colour = "#000080"}]
"""
    response = engineer.post(
        "/api/models",
        files={
            "manifest": ("m.toml", toml),
            "artefact": ("m.pt", torchscript_bytes(PurpleScore())),
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["intended_use"] == "diagnostic aid"


# --- jobs and the protocol -----------------------------------------------------------------


def test_the_same_request_twice_gives_the_same_job_unless_forced(
    engineer: TestClient, model: dict[str, Any], slide_id: str
) -> None:
    first = _queue(engineer, model["id"], [slide_id])
    assert first["created"] == 1 and first["jobs"][0]["state"] == "queued"
    again = _queue(engineer, model["id"], [slide_id])
    assert again["created"] == 0 and again["jobs"][0]["id"] == first["jobs"][0]["id"]
    forced = _queue(engineer, model["id"], [slide_id], force=True)
    assert forced["created"] == 1 and forced["jobs"][0]["id"] != first["jobs"][0]["id"]
    other = _queue(engineer, model["id"], [slide_id], tissue_only=False)
    assert other["created"] == 1


def test_bad_job_requests_get_clear_errors(
    engineer: TestClient, model: dict[str, Any], slide_id: str, settings: Settings
) -> None:
    post = engineer.post
    assert (
        post("/api/inference/jobs", json={"model_id": "nope", "slides": [slide_id]}).status_code
        == 404
    )
    assert (
        post("/api/inference/jobs", json={"model_id": model["id"], "slides": ["nope"]}).status_code
        == 404
    )
    assert post("/api/inference/jobs", json={"model_id": model["id"]}).status_code == 400
    outside = post(
        "/api/inference/jobs",
        json={
            "model_id": model["id"],
            "slides": [slide_id],
            "region": {"x": 2000, "y": 0, "width": 100, "height": 10},
        },
    )
    assert outside.status_code == 400 and "outside" in outside.json()["detail"]
    assert (
        post(
            "/api/inference/jobs", json={"model_id": model["id"], "slides": [slide_id], "oops": 1}
        ).status_code
        == 400
    )
    # A slide of another centre is unknown to Caen.
    with TestClient(
        engineer.app, headers=auth_headers(settings, "pathologist.lille", centre="lille")
    ) as lille:
        assert (
            lille.post(
                "/api/inference/jobs", json={"model_id": model["id"], "slides": [slide_id]}
            ).status_code
            == 404
        )
        assert lille.get("/api/inference/jobs").json() == []


def test_a_slide_without_a_resolution_is_refused_unless_the_model_works_in_pixels(
    engineer: TestClient, model: dict[str, Any], slide_id: str, settings: Settings
) -> None:
    catalogue = Catalogue.open(settings.database_url)
    with catalogue.session() as session, session.begin():
        row = session.get(Slide, slide_id)
        assert row is not None
        row.mpp_x = row.mpp_y = None
    engineer.app.state.hub.policy.forget()  # type: ignore[attr-defined]
    refused = engineer.post(
        "/api/inference/jobs", json={"model_id": model["id"], "slides": [slide_id]}
    )
    assert refused.status_code == 400
    assert "no resolution" in refused.json()["detail"]
    pixels = register(
        engineer,
        torchscript_bytes(PurpleScore()),
        manifest(name="px-model", unit="px", resolution=8.0),
    )
    assert _queue(engineer, pixels["id"], [slide_id])["created"] == 1


def test_leases_claim_heartbeat_complete_and_stale_attempts(
    engineer: TestClient, model: dict[str, Any], slide_id: str, settings: Settings
) -> None:
    job = _queue(engineer, model["id"], [slide_id])["jobs"][0]
    worker = _worker_client(engineer, worker_token(settings))
    claim = worker.post("/api/worker/claim", json={"worker": "w1", "wait_s": 0}).json()
    assert claim["job_id"] == job["id"] and claim["attempt"] == 1
    assert worker.post("/api/worker/claim", json={"worker": "w2", "wait_s": 0}).status_code == 204
    lease = claim["lease"]
    beat = worker.post(
        f"/api/worker/jobs/{job['id']}/heartbeat", json={"lease": lease, "done": 5, "total": 10}
    )
    assert beat.status_code == 200 and beat.json()["cancel"] is False
    shown = engineer.get(f"/api/inference/jobs/{job['id']}").json()
    assert shown["state"] == "running" and shown["percent"] == 50.0
    # A forged lease is refused; so is a worker upload of junk.
    assert (
        worker.post(f"/api/worker/jobs/{job['id']}/heartbeat", json={"lease": "forged"}).status_code
        == 409
    )
    put = worker.put
    results = f"/api/worker/jobs/{job['id']}/results"
    headers = {"X-Lease": lease}
    assert put(f"{results}/heatmap", content=b"junk", headers=headers).status_code == 400
    assert (
        put(f"{results}/heatmap", content=_npy(np.ones((2, 2, 2))), headers=headers).status_code
        == 400
    )
    assert (
        put(f"{results}/heatmap", content=_npy(np.full((4, 4), 2.0)), headers=headers).status_code
        == 400
    )
    assert put(
        f"{results}/BAD NAME", content=_npy(np.ones((4, 4))), headers=headers
    ).status_code in (400, 404)
    assert (
        put(
            f"{results}/heatmap", content=_npy(np.ones((4, 4))), headers={"X-Lease": "x"}
        ).status_code
        == 409
    )
    oversized = put(f"{results}/heatmap", content=b"\0" * (64 * 1024 * 1024 + 1), headers=headers)
    assert oversized.status_code == 400 and "at most 64 MiB" in oversized.json()["detail"]
    values = np.full((12, 16), np.nan, np.float32)
    values[2:6, 3:9] = 0.8
    assert put(f"{results}/heatmap", content=_npy(values), headers=headers).status_code == 201
    complete = f"/api/worker/jobs/{job['id']}/complete"
    missing = worker.post(complete, json={"lease": lease, "results": ["heatmap", "other"]})
    assert missing.status_code == 400
    # The lease lapses (3 s): the job is queued again and another attempt takes it.
    time.sleep(3.5)
    second = worker.post("/api/worker/claim", json={"worker": "w2", "wait_s": 0}).json()
    assert second["job_id"] == job["id"] and second["attempt"] == 2
    stale = worker.post(complete, json={"lease": lease, "results": ["heatmap"]})
    assert stale.status_code == 409
    # The second attempt completes; the same completion again answers the same.
    assert (
        put(
            f"{results}/heatmap", content=_npy(values), headers={"X-Lease": second["lease"]}
        ).status_code
        == 201
    )
    done = worker.post(
        complete, json={"lease": second["lease"], "results": ["heatmap"], "summary": {"patches": 3}}
    )
    assert done.status_code == 200 and done.json()["state"] == "succeeded"
    assert (
        worker.post(complete, json={"lease": second["lease"], "results": ["heatmap"]}).json()
        == done.json()
    )
    overlays = engineer.get(f"/api/slides/{slide_id}/overlays").json()
    assert [o["id"] for o in overlays] == done.json()["overlay_ids"]
    assert overlays[0]["job_id"] == job["id"]
    assert overlays[0]["info"]["model"]["sha256"] == model["sha256"]
    _assert_only_results_stored(settings, slide_id)


def _assert_only_results_stored(settings: Settings, slide_id: str) -> None:
    """Under the slide's job folders lie exactly the committed overlays' objects."""
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    with catalogue.session() as session:
        keys = set(session.scalars(select(Overlay.storage_key).where(Overlay.job_id.is_not(None))))
    stored = {o.key for o in store.list(f"slides/{slide_id}/jobs/")}
    assert stored == keys


def test_a_capability_reads_its_slide_s_tiles_and_nothing_else(
    engineer: TestClient, model: dict[str, Any], slide_id: str, settings: Settings, slide_file: Path
) -> None:
    other = ingest(settings, slide_file)
    _queue(engineer, model["id"], [slide_id])
    token = worker_token(settings)
    worker = _worker_client(engineer, token)
    claim = worker.post("/api/worker/claim", json={"worker": "w1", "wait_s": 0}).json()
    reader = TestClient(engineer.app, headers={"Authorization": f"Bearer {claim['capability']}"})
    assert reader.get(f"/slides/{slide_id}.dzi").status_code == 200
    assert reader.get(f"/slides/{slide_id}_files/0/0_0.jpeg").status_code == 200
    assert reader.get(f"/slides/{other}_files/0/0_0.jpeg").status_code == 404
    assert reader.get("/api/slides").status_code == 401
    assert reader.get(f"/api/slides/{slide_id}/overlays").status_code == 401
    forged = claim["capability"][:-4] + "AAAA"
    assert (
        TestClient(engineer.app, headers={"Authorization": f"Bearer {forged}"})
        .get(f"/slides/{slide_id}.dzi")
        .status_code
        == 401
    )
    # The worker's own token opens the worker protocol only; a user's token does not open it.
    assert worker.get("/api/slides").status_code == 401
    assert worker.get(f"/slides/{slide_id}.dzi").status_code == 401
    assert engineer.post("/api/worker/claim", json={"worker": "me", "wait_s": 0}).status_code == 401


def test_cancelling_a_queued_job_and_retrying_it(
    engineer: TestClient, model: dict[str, Any], slide_id: str, settings: Settings
) -> None:
    job = _queue(engineer, model["id"], [slide_id])["jobs"][0]
    cancelled = engineer.post(f"/api/inference/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    worker = _worker_client(engineer, worker_token(settings))
    assert worker.post("/api/worker/claim", json={"worker": "w", "wait_s": 0}).status_code == 204
    retried = engineer.post(f"/api/inference/jobs/{job['id']}/retry").json()
    assert retried["state"] == "queued"
    assert (
        worker.post("/api/worker/claim", json={"worker": "w", "wait_s": 0}).json()["job_id"]
        == job["id"]
    )
    with TestClient(
        engineer.app, headers=auth_headers(settings, "resident.caen", roles=("resident",))
    ) as other:
        assert other.post(f"/api/inference/jobs/{job['id']}/cancel").status_code == 403


# --- real workers --------------------------------------------------------------------------


def _run_worker(url: str, token: str, tmp: Path, **kw: Any) -> Worker:
    worker = Worker(HubClient(url, token), WorkerConfig(cache_dir=tmp / "worker", **kw))
    return worker


def test_a_worker_runs_a_job_and_its_heatmap_is_over_the_tissue(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        model = register(eng, torchscript_bytes(PurpleScore()), manifest())
        job = _queue(eng, model["id"], [slide_id])["jobs"][0]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        assert worker.run() == 1 and worker.last == ("succeeded", "")
        done = eng.get(f"/api/inference/jobs/{job['id']}").json()
        assert done["state"] == "succeeded", done
        summary, provenance = done["summary"], done["provenance"]
        assert summary["patches"] > 0 and summary["tissue_area_mm2"] > 0
        assert set(summary["classes"]) == {"stroma", "tumour"}
        assert provenance["model_sha256"] == model["sha256"]
        assert provenance["slide_content_hash"] and provenance["device"].startswith("cpu")
        overlays = eng.get(f"/api/slides/{slide_id}/overlays").json()
        names = {o["name"] for o in overlays}
        assert "purple-score 1.0.0: tumour" in names and "Tissue (purple-score 1.0.0)" in names
        heatmap = next(o for o in overlays if o["name"].endswith("tumour"))
        assert eng.get(heatmap["dzi_url"]).status_code == 200
        # The glass around the tissue got no value: the heatmap's corner is transparent.
        assert summary["patches"] < (heatmap["width"] * heatmap["height"])
        assert done["patches_done"] == done["patches_total"] == summary["patches"]
        # Areas are tissue areas: the classes' add up to at most the tissue's.
        class_area = sum(c["area_mm2"] for c in summary["classes"].values())
        assert 0 < class_area <= summary["tissue_area_mm2"] * 1.001
        # A region's figures are the region's.
        region = {"x": 0, "y": 0, "width": 1024, "height": 768}
        part = _queue(eng, model["id"], [slide_id], region=region)["jobs"][0]  # type: ignore[arg-type]
        assert worker.run() == 2
        part = eng.get(f"/api/inference/jobs/{part['id']}").json()
        assert part["state"] == "succeeded", part
        assert part["params"]["region"] == [0, 0, 1024, 768]
        assert 0 < part["summary"]["patches"] < summary["patches"]
        assert part["summary"]["tissue_area_mm2"] < summary["tissue_area_mm2"]


def test_a_segmentation_model_s_maps_make_a_finer_heatmap(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        seg = register(
            eng,
            torchscript_bytes(PurpleMap()),
            manifest(name="purple-map", task="segmentation", margin=8),
        )
        wrong = register(
            eng, torchscript_bytes(PurpleScore()), manifest(name="not-a-map", task="segmentation")
        )
        jobs = [_queue(eng, m["id"], [slide_id])["jobs"][0] for m in (seg, wrong)]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        assert worker.run() == 2
        done, refused = (eng.get(f"/api/inference/jobs/{j['id']}").json() for j in jobs)
        assert done["state"] == "succeeded", done
        grid = done["provenance"]["grid"]
        heatmap = next(
            o
            for o in eng.get(f"/api/slides/{slide_id}/overlays").json()
            if o["name"].endswith(": tumour")
        )
        # 64-px patches with 8 px of margin give 20 x 20 maps; a cell is 16 x 16 of them.
        assert (heatmap["width"], heatmap["height"]) == (grid[0] * 16, grid[1] * 16)
        assert done["summary"]["patches"] > 0
        assert refused["state"] == "failed"
        assert "answers (batch, classes, h, w)" in refused["error"]


def test_a_detector_s_points_are_answered_by_viewport_or_as_density(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        detector = register(
            eng,
            torchscript_bytes(GridDetector()),
            manifest(
                name="grid-detector",
                task="detection",
                resolution=1.0,
                thresholds={"stroma": 0.0, "tumour": 0.0},
            ),
        )
        job = _queue(eng, detector["id"], [slide_id])["jobs"][0]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        assert worker.run() == 1, worker.last
        done = eng.get(f"/api/inference/jobs/{job['id']}").json()
        assert done["state"] == "succeeded", done
        summary = done["summary"]
        # Four per patch, each counted once (by the cell its centre lies in).
        assert summary["detections"] == 4 * summary["patches"]
        counts = {c: v["count"] for c, v in summary["classes"].items()}
        assert sum(counts.values()) == summary["detections"] and counts["tumour"] > 0
        overlays = {o["name"]: o for o in eng.get(f"/api/slides/{slide_id}/overlays").json()}
        points = overlays["grid-detector 1.0.0: detections"]
        assert points["kind"] == "features" and points["feature_count"] == summary["detections"]
        assert {c["name"]: c["count"] for c in points["legend"]["classes"]} == counts
        every = eng.get(points["features_url"]).json()
        assert every["aggregated"] is False and len(every["features"]) == summary["detections"]
        first = every["features"][0]
        assert first["geometry"]["type"] == "Point" and first["properties"]["class"] in counts
        x, y = first["geometry"]["coordinates"]
        near = eng.get(
            points["features_url"], params={"bbox": f"{x - 1},{y - 1},{x + 1},{y + 1}"}
        ).json()
        assert [f["geometry"]["coordinates"] for f in near["features"]] == [[x, y]]
        dense = eng.get(points["features_url"], params={"max": 1}).json()
        assert dense["aggregated"] is True
        assert sum(f["properties"]["count"] for f in dense["features"]) == summary["detections"]
        assert "grid-detector 1.0.0: density" in overlays
    _assert_only_results_stored(settings, slide_id)


def test_a_broken_model_fails_its_job_with_the_reason(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        nan = register(eng, torchscript_bytes(Broken()), manifest(name="nan-model"))
        three = register(eng, torchscript_bytes(ThreeClasses()), manifest(name="three"))
        liar = register(eng, torchscript_bytes(Fixed32()), manifest(name="says-64"))
        corrupt = register(eng, corrupt_torchscript(), manifest(name="corrupt"))
        models = (nan, three, liar, corrupt)
        jobs = [_queue(eng, m["id"], [slide_id])["jobs"][0] for m in models]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        assert worker.run() == 4
        errors = [eng.get(f"/api/inference/jobs/{j['id']}").json() for j in jobs]
        assert [e["state"] for e in errors] == ["failed"] * 4
        assert "NaN" in errors[0]["error"]
        assert "outputs 3 values per patch" in errors[1]["error"]
        assert (
            "the model failed on a batch of" in errors[2]["error"] and "64x64" in errors[2]["error"]
        )
        assert "cannot be loaded" in errors[3]["error"]
        _assert_only_results_stored(settings, slide_id)


def test_cancelling_a_running_job_stops_its_worker(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        # 49,152 patches of one per batch: it runs for a minute unless cancelled.
        slow = register(
            eng,
            torchscript_bytes(PurpleScore()),
            manifest(name="slow", resolution=0.25, patch_size=16, stride=8, batch_size=1),
        )
        job = _queue(eng, slow["id"], [slide_id], tissue_only=False)["jobs"][0]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while True:
            shown = eng.get(f"/api/inference/jobs/{job['id']}").json()
            assert shown["state"] in ("queued", "running"), shown
            if shown["patches_done"] > 0:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        asked = time.monotonic()
        assert eng.post(f"/api/inference/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - asked < 5
        # Told by its heartbeat, or refused its next upload: either way it stopped.
        assert worker.last[0] in ("cancelled", "lost")
        assert eng.get(f"/api/inference/jobs/{job['id']}").json()["state"] == "cancelled"
        assert eng.get(f"/api/slides/{slide_id}/overlays").json() == []
        _assert_only_results_stored(settings, slide_id)


@pytest.mark.timeout(600)
def test_three_workers_thirty_jobs_each_job_exactly_one_result(
    settings: Settings, slide_file: Path, tmp_path: Path
) -> None:
    slides = [ingest(settings, slide_file) for _ in range(30)]
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        model = register(eng, torchscript_bytes(PurpleScore()), manifest())
        _queue(eng, model["id"], slides)  # type: ignore[arg-type]
        workers = [
            _run_worker(url, worker_token(settings, f"w{i}"), tmp_path / str(i), burst=True)
            for i in range(3)
        ]
        threads = [threading.Thread(target=w.run) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        assert sum(w.jobs_run for w in workers) == 30
    _assert_exactly_one_result_each(settings, 30)


def _assert_exactly_one_result_each(settings: Settings, count: int) -> None:
    catalogue = Catalogue.open(settings.database_url)
    with catalogue.session() as session:
        jobs = session.scalars(select(InferenceJob)).all()
        overlays = session.scalars(select(Overlay).where(Overlay.job_id.is_not(None))).all()
    assert len(jobs) == count
    assert {j.state for j in jobs} == {"succeeded"}, [(j.state, j.error) for j in jobs]
    per_job: dict[str, int] = {}
    for overlay in overlays:
        per_job[overlay.job_id or ""] = per_job.get(overlay.job_id or "", 0) + 1
    assert per_job == {j.id: 2 for j in jobs}  # its heatmap and its tissue mask
    for job in jobs:
        assert sorted(job.overlay_ids) == sorted(o.id for o in overlays if o.job_id == job.id)
    store = build_store(settings)
    stored = {o.key for o in store.list("slides/") if "/jobs/" in o.key}
    assert stored == {o.storage_key for o in overlays}


KILLS = 50


@pytest.mark.timeout(900)  # ~150 s here; each kill waits for Python and torch to start
def test_workers_killed_at_random_points_leave_exactly_one_result_per_job(
    settings: Settings, slide_file: Path, tmp_path: Path
) -> None:
    """50 worker processes SIGKILLed at random moments (before a claim, mid-batch, after
    uploading, after completing), then one more drains the queue."""
    settings = settings.model_copy(update={"job_max_lost_leases": 1000})
    slides = [ingest(settings, slide_file) for _ in range(8)]
    settings_env = {
        **os.environ,
        "IAIN_HOME": str(settings.home),
        "IAIN_DATABASE_URL": settings.database_url,
    }
    rng = random.Random(12)
    with serving(settings) as url:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        model = register(eng, torchscript_bytes(PurpleScore()), manifest(batch_size=4))
        _queue(eng, model["id"], slides)  # type: ignore[arg-type]
        token = worker_token(settings)
        command = [
            sys.executable, "-m", "iain.cli", "worker", "--hub", url, "--token", token,
            "--cache-dir", str(tmp_path / "worker"),
        ]  # fmt: skip
        for _ in range(KILLS):
            child = subprocess.Popen(
                command, env=settings_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(1.0, 4.0))  # the first second or so is Python and torch starting
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        # Leases of killed workers lapse (3 s); one last worker drains the queue.
        time.sleep(3.5)
        final = subprocess.run(
            [*command, "--burst"], env=settings_env, capture_output=True, text=True, timeout=300
        )
        assert final.returncode == 0, final.stderr[-2000:]
    _assert_exactly_one_result_each(settings, len(slides))


def _serve_process(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IAIN_HOME": str(settings.home),
        "IAIN_DATABASE_URL": settings.database_url,
        "IAIN_PORT": str(port),
    }
    child = subprocess.Popen([sys.executable, "-m", "iain.cli", "serve"], env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code < 500:
                return child
        except httpx.TransportError:
            pass
        assert child.poll() is None and time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.2)


def test_the_hub_restarted_mid_job_loses_nothing(
    settings: Settings, slide_id: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"job_lease_s": 60.0})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = _serve_process(settings, port)
    try:
        eng = httpx.Client(base_url=url, headers=_engineer_headers(settings))
        slow = register(
            eng,
            torchscript_bytes(PurpleScore()),
            manifest(name="slow", resolution=0.25, patch_size=16, stride=8, batch_size=1),
        )
        job = _queue(eng, slow["id"], [slide_id], tissue_only=False)["jobs"][0]  # type: ignore[arg-type]
        worker = _run_worker(url, worker_token(settings), tmp_path, burst=True)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while True:
            shown = eng.get(f"/api/inference/jobs/{job['id']}").json()
            assert shown["state"] in ("queued", "running"), (shown, worker.last)
            if shown["state"] == "running":
                break
            assert time.monotonic() < deadline, (shown, worker.last)
            time.sleep(0.1)
        hub.terminate()
        hub.wait(20)
        time.sleep(1)
        hub = _serve_process(settings, port)
        thread.join(120)
        assert not thread.is_alive()
        done = eng.get(f"/api/inference/jobs/{job['id']}").json()
        assert done["state"] == "succeeded", done
        assert done["attempt"] == 1  # the lease outlived the restart: no work was lost
    finally:
        hub.terminate()
        hub.wait(20)
    _assert_exactly_one_result_each(settings, 1)
