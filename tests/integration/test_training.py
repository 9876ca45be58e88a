"""The model in the box, end to end: a pathologist annotates tumour and stroma on a slide
whose truth is known, trains a classifier from those annotations (a job a worker runs),
runs it over the whole slide, and the heatmap agrees with regions held back (AUC ≥ 0.9)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile

from iain.app import build_store
from iain.settings import Settings
from iain.synthetic import Region, RegionTruth, write_tissue_regions_slide
from inference.hub_client import HubClient
from inference.worker import Worker, WorkerConfig
from tests import database
from tests.hub import auth_headers, ingest, serving
from tests.inference_kit import worker_token

SIZE = (8192, 6144)
MPP = 0.5


@pytest.fixture(scope="module")
def truth_slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RegionTruth]:
    path = tmp_path_factory.mktemp("regions") / "regions.tiff"
    truth = write_tissue_regions_slide(path, *SIZE, seed=5, mpp=MPP)
    return path, truth


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return database.settings(tmp_path / "home", tile_cache_mb=32)


def _annotate(client: httpx.Client, slide: str, label: str, squares: list[Any]) -> None:
    for square in squares:
        ring = [[x, y] for x, y in square] + [list(square[0])]
        feature = {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"label": label, "kind": "polygon"},
        }
        response = client.post(f"/api/slides/{slide}/annotations", json=feature)
        assert response.status_code == 201, response.text


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties count half)."""
    pos, neg = positive[:, None], negative[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_train_from_annotations_then_the_heatmap_finds_the_held_back_tumour(
    settings: Settings, truth_slide: tuple[Path, RegionTruth], tmp_path: Path
) -> None:
    path, truth = truth_slide
    slide = ingest(settings, path)
    with serving(settings) as url:
        user = httpx.Client(base_url=url, headers=auth_headers(settings), timeout=60)
        _annotate(user, slide, "tumour", truth.region_polygons(Region.TUMOUR, 15))
        _annotate(user, slide, "stroma", truth.region_polygons(Region.STROMA, 15))
        made = user.post("/api/models/train", json={"slide": slide, "name": "tumour-vs-stroma"})
        assert made.status_code == 201, made.text
        job = made.json()
        assert job["kind"] == "training" and job["state"] == "queued"

        worker = Worker(
            HubClient(url, worker_token(settings)),
            WorkerConfig(burst=True, cache_dir=tmp_path / "worker"),
        )
        assert worker.run() == 1, worker.last
        trained = user.get(f"/api/inference/jobs/{job['id']}").json()
        assert trained["state"] == "succeeded", trained
        assert trained["summary"]["held_out_accuracy"] >= 0.9
        model = trained["result_model"]
        assert model["name"] == "tumour-vs-stroma"
        listed = {m["id"]: m for m in user.get("/api/models").json()}
        assert listed[model["id"]]["intended_use"] == "research use only"
        assert {c["name"] for c in listed[model["id"]]["manifest"]["classes"]} == {
            "stroma",
            "tumour",
        }

        run = user.post("/api/inference/jobs", json={"model_id": model["id"], "slides": [slide]})
        assert run.status_code == 201, run.text
        assert worker.run() == 2
        result = user.get(f"/api/inference/jobs/{run.json()['jobs'][0]['id']}").json()
        assert result["state"] == "succeeded", result
        assert result["summary"]["classes"]["tumour"]["area_mm2"] > 0

    # The stored heatmap, read back: 0 is "no value", 1..255 the tumour probability.
    heatmap_id = result["overlay_ids"][0]
    store = build_store(settings)
    key = next(o.key for o in store.list(f"slides/{slide}/jobs/") if o.key.endswith("heatmap.tiff"))
    assert heatmap_id  # the heatmap is the job's first overlay
    values = tifffile.imread(io.BytesIO(store.get(key)))
    scale_x, scale_y = values.shape[1] / SIZE[0], values.shape[0] / SIZE[1]

    def scores(label: int) -> np.ndarray:
        out = []
        for square in truth.region_polygons(label, 40, part="test"):
            xs, ys = [p[0] for p in square], [p[1] for p in square]
            col = int((min(xs) + max(xs)) / 2 * scale_x)
            row = int((min(ys) + max(ys)) / 2 * scale_y)
            out.append(float(values[row, col]))
        return np.array(out)

    tumour, stroma = scores(Region.TUMOUR), scores(Region.STROMA)
    assert len(tumour) >= 5 and len(stroma) >= 5
    assert _auc(tumour, stroma) >= 0.9


def test_training_needs_two_labels_and_a_valid_name(
    settings: Settings, truth_slide: tuple[Path, RegionTruth]
) -> None:
    path, truth = truth_slide
    slide = ingest(settings, path)
    with serving(settings) as url:
        user = httpx.Client(base_url=url, headers=auth_headers(settings), timeout=60)
        none = user.post("/api/models/train", json={"slide": slide, "name": "m"})
        assert none.status_code == 400 and "at least two" in none.json()["detail"]
        _annotate(user, slide, "tumour", truth.region_polygons(Region.TUMOUR, 2))
        one = user.post("/api/models/train", json={"slide": slide, "name": "m"})
        assert one.status_code == 400 and "found 1: tumour" in one.json()["detail"]
        _annotate(user, slide, "stroma", truth.region_polygons(Region.STROMA, 2))
        bad = user.post("/api/models/train", json={"slide": slide, "name": "Not A Name!"})
        assert bad.status_code == 400
        unknown = user.post("/api/models/train", json={"slide": "nope", "name": "m"})
        assert unknown.status_code == 404
        technician = httpx.Client(
            base_url=url,
            headers=auth_headers(settings, "technician.caen", roles=("technician",)),
        )
        assert (
            technician.post("/api/models/train", json={"slide": slide, "name": "m"}).status_code
            == 403
        )
