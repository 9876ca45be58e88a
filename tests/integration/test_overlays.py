"""Overlays against the real app: a generated heatmap served as DeepZoom PNG tiles over a
synthetic slide, 10,000 generated cell outlines round-tripped through the API."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rich.console import Console

from exchange.overlays.service import InvalidOverlay, add_heatmap, list_overlays
from exchange.slides.catalogue import Catalogue
from iain.app import build_store
from iain.demo import SYNTHETIC_NAME, prepare_demo
from iain.sample_overlays import CLASS_COLOURS, blob_heatmap, cell_features
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.hub import hub_client, ingest
from tiles.overlay import colour_lut

WIDTH, HEIGHT = 3000, 2000  # DeepZoom: 13 levels (0..12), level 12 is full resolution
HEATMAP_SHAPE = (100, 150)  # one value per 20x20 slide pixels


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "synthetic.tiff"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=3)
    return path


@pytest.fixture
def hub(settings: Settings, slide_file: Path) -> Iterator[tuple[TestClient, str]]:
    slide_id = ingest(settings, slide_file)
    with hub_client(settings) as client:
        yield client, slide_id


def _heatmap(settings: Settings, slide_id: str) -> tuple[str, np.ndarray]:
    field = blob_heatmap(HEATMAP_SHAPE[1], HEATMAP_SHAPE[0], seed=3)
    overlay = add_heatmap(
        build_store(settings),
        Catalogue.open(settings.database_url),
        slide_id,
        field,
        name="Tumour probability",
        colour_map="inferno",
        label="P(tumour)",
    )
    return overlay.id, field


def _rgba(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_heatmap_is_listed_and_served_like_a_slide(hub, settings):
    client, slide_id = hub
    overlay_id, field = _heatmap(settings, slide_id)

    listed = client.get(f"/api/slides/{slide_id}/overlays").json()
    assert [o["id"] for o in listed] == [overlay_id]
    heatmap = listed[0]
    assert heatmap["kind"] == "heatmap" and heatmap["name"] == "Tumour probability"
    assert heatmap["legend"]["type"] == "ramp"
    assert (heatmap["legend"]["min"], heatmap["legend"]["max"]) == (0.0, 1.0)
    assert heatmap["legend"]["label"] == "P(tumour)"
    assert len(heatmap["legend"]["colours"]) == 11
    assert heatmap["features_url"] is None

    dzi = client.get(heatmap["dzi_url"])
    assert dzi.status_code == 200
    # The slide's own size: the viewer lays the heatmap exactly over the slide.
    assert f'Width="{WIDTH}" Height="{HEIGHT}"' in dzi.text and 'Format="png"' in dzi.text
    base = heatmap["dzi_url"].removesuffix(".dzi") + "_files"

    lut = colour_lut("inferno")
    peak = np.unravel_index(int(np.argmax(field)), field.shape)
    zero = np.argwhere(field == 0)[0]
    for z in (9, 11, 12):  # 1/8, 1/2 and full resolution
        scale = 2 ** (12 - z)
        for (row_v, col_v), expect_alpha in ((peak, 255), (zero, 0)):
            # The slide pixel at the centre of that heatmap value, and the tile holding it.
            x = (col_v + 0.5) * WIDTH / HEATMAP_SHAPE[1] / scale
            y = (row_v + 0.5) * HEIGHT / HEATMAP_SHAPE[0] / scale
            tile = client.get(f"{base}/{z}/{int(x // 256)}_{int(y // 256)}.png")
            assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
            pixel = _rgba(tile.content)[int(y % 256), int(x % 256)]
            assert pixel[3] == expect_alpha, (z, pixel)
            if expect_alpha:
                # The top of the ramp: inferno's pale yellow.
                assert np.abs(pixel[:3].astype(int) - lut[255, :3]).max() <= 12, (z, pixel)

    # The whole slide in one tile: transparent exactly where the field is zero (up to the
    # blurred edges), so the layer lines up with the slide.
    whole = _rgba(client.get(f"{base}/8/0_0.png").content)
    assert whole.shape[:2] == (HEIGHT // 16 + (HEIGHT % 16 > 0), WIDTH // 16 + (WIDTH % 16 > 0))
    shown = np.asarray(Image.fromarray((field > 0).astype(np.uint8) * 255).resize(
        (whole.shape[1], whole.shape[0]), Image.Resampling.NEAREST
    )) > 0  # fmt: skip
    agree = np.mean(shown == (whole[:, :, 3] > 0))
    assert agree > 0.97, agree
    assert 0.05 < shown.mean() < 0.95  # the test field has both

    tile = client.get(f"{base}/12/3_2.png")
    etag = tile.headers["etag"]
    assert "immutable" in tile.headers["cache-control"]
    again = client.get(f"{base}/12/3_2.png", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert client.get(f"{base}/12/99_0.png").status_code == 404
    assert client.get(f"{base}/13/0_0.png").status_code == 404
    assert client.get(f"{base}/12/0_0.jpeg").status_code == 404


def test_ten_thousand_features_round_trip_with_bbox_filter(hub):
    client, slide_id = hub
    features = cell_features(WIDTH, HEIGHT, count=10_000, seed=3)
    created = client.post(
        f"/api/slides/{slide_id}/overlays",
        json={"name": "Cells", "features": features, "classes": CLASS_COLOURS},
    )
    assert created.status_code == 201, created.text
    overlay = created.json()
    assert overlay["kind"] == "features" and overlay["feature_count"] == 10_000
    legend = {c["name"]: c for c in overlay["legend"]["classes"]}
    assert {name: c["colour"] for name, c in legend.items()} == CLASS_COLOURS
    assert sum(c["count"] for c in legend.values()) == 10_000
    assert client.get(overlay["url"]).json()["id"] == overlay["id"]

    response = client.get(overlay["features_url"], headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    assert response.headers["content-encoding"] == "gzip"
    back = response.json()["features"]
    assert len(back) == 10_000
    assert [f["geometry"] for f in back] == [f["geometry"] for f in features]
    assert [f["properties"] for f in back] == [f["properties"] for f in features]

    box = (1000.0, 500.0, 1600.0, 900.0)

    def meets(feature: dict[str, Any]) -> bool:
        xs = [p[0] for p in feature["geometry"]["coordinates"][0]]
        ys = [p[1] for p in feature["geometry"]["coordinates"][0]]
        return bool(
            max(xs) >= box[0] and min(xs) <= box[2] and max(ys) >= box[1] and min(ys) <= box[3]
        )

    expected = [f["id"] for f in features if meets(f)]
    assert 10 < len(expected) < 10_000
    inside = client.get(overlay["features_url"], params={"bbox": ",".join(map(str, box))})
    assert inside.status_code == 200
    assert [f["id"] for f in inside.json()["features"]] == expected

    etag = response.headers["etag"]
    cached = client.get(overlay["features_url"], headers={"If-None-Match": etag})
    assert cached.status_code == 304


def test_feature_collection_body_and_points(hub):
    client, slide_id = hub
    body = {
        "type": "FeatureCollection",
        "name": "Mitoses",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [10.5, 20.25]},
                "properties": {"class": "mitosis", "score": 0.9, "colour": "#FF00ff"},
            }
        ],
    }
    created = client.post(f"/api/slides/{slide_id}/overlays", json=body)
    assert created.status_code == 201, created.text
    legend = created.json()["legend"]["classes"]
    assert legend == [{"name": "mitosis", "colour": "#ff00ff", "count": 1}]
    back = client.get(created.json()["features_url"]).json()["features"]
    assert back[0]["geometry"] == {"type": "Point", "coordinates": [10.5, 20.25]}


def test_delete_removes_the_overlay_and_its_tiles(hub, settings):
    client, slide_id = hub
    overlay_id, _ = _heatmap(settings, slide_id)
    base = f"/api/slides/{slide_id}/overlays/{overlay_id}"
    assert client.get(f"{base}_files/12/0_0.png").status_code == 200
    assert client.delete(base).status_code == 204
    assert client.get(base).status_code == 404
    assert client.get(f"{base}.dzi").status_code == 404
    assert client.get(f"{base}_files/12/0_1.png").status_code == 404
    assert client.delete(base).status_code == 404
    assert client.get(f"/api/slides/{slide_id}/overlays").json() == []
    store = build_store(settings)
    assert list(store.list(f"slides/{slide_id}/overlays/{overlay_id}/")) == []


def _point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"features": []}, "name"),
        ({"name": "x"}, "features"),
        ({"name": "x", "features": {"type": "Feature"}}, "FeatureCollection"),
        ({"name": "x", "features": [_point(WIDTH + 1, 5)]}, "outside"),
        ({"name": "x", "features": [_point(float("nan"), 5)]}, "finite"),
        ({"name": "x", "features": [{"type": "Feature", "geometry": None}]}, "geometry"),
        (
            {
                "name": "x",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 0], [5, 5]]]},
                    }
                ],
            },
            "closed",
        ),
        ({"name": "x", "features": [{**_point(1, 1), "properties": {"colour": "red"}}]}, "#rrggbb"),
        ({"name": "", "features": []}, "name"),
        ({"name": "x", "features": [], "classes": {"a": "blue"}}, "#rrggbb"),
    ],
)
def test_malformed_feature_sets_are_refused(hub, body, why):
    client, slide_id = hub
    # Sent as the text Python writes: NaN included, which JSON parsers accept.
    response = client.post(
        f"/api/slides/{slide_id}/overlays",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert why in response.json()["detail"]
    assert client.get(f"/api/slides/{slide_id}/overlays").json() == []


def test_unknown_slides_overlays_and_bad_queries(hub, settings):
    client, slide_id = hub
    assert client.get("/api/slides/nosuchslide/overlays").status_code == 404
    assert (
        client.post(
            "/api/slides/nosuchslide/overlays", json={"name": "x", "features": []}
        ).status_code
        == 404
    )
    assert client.get(f"/api/slides/{slide_id}/overlays/nosuch").status_code == 404
    assert client.get(f"/api/slides/{slide_id}/overlays/nosuch/features").status_code == 404
    assert client.get(f"/api/slides/{slide_id}/overlays/nosuch.dzi").status_code == 404
    not_json = client.post(f"/api/slides/{slide_id}/overlays", content=b"{oops")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]

    heatmap_id, _ = _heatmap(settings, slide_id)
    # A heatmap has no features, and a feature set no tiles.
    assert client.get(f"/api/slides/{slide_id}/overlays/{heatmap_id}/features").status_code == 404
    cells = client.post(
        f"/api/slides/{slide_id}/overlays", json={"name": "c", "features": [_point(1, 2)]}
    ).json()
    assert client.get(f"/api/slides/{slide_id}/overlays/{cells['id']}.dzi").status_code == 404
    for bad in ("1,2,3", "a,b,c,d", "5,5,1,1", "0,0,inf,1"):
        r = client.get(cells["features_url"], params={"bbox": bad})
        assert r.status_code == 400 and "bbox" in r.json()["detail"], bad


def test_an_overlay_is_reached_through_its_own_slide_only(hub, settings, slide_file):
    client, slide_id = hub
    heatmap_id, _ = _heatmap(settings, slide_id)
    other = ingest(settings, slide_file)
    for path in (f"{heatmap_id}", f"{heatmap_id}.dzi", f"{heatmap_id}_files/12/0_0.png"):
        assert client.get(f"/api/slides/{slide_id}/overlays/{path}").status_code == 200
        assert client.get(f"/api/slides/{other}/overlays/{path}").status_code == 404, path
    assert client.get(f"/api/slides/{other}/overlays").json() == []


def test_heatmap_api_refuses_what_it_cannot_lay_over_the_slide(hub, settings):
    _client, slide_id = hub
    store, catalogue = build_store(settings), Catalogue.open(settings.database_url)
    for values, why in (
        (np.zeros((4, 4, 3)), "2-D"),
        (np.zeros((HEIGHT + 1, 10)), "finer"),
        (np.zeros((0, 10)), "2-D"),
    ):
        with pytest.raises(InvalidOverlay, match=why):
            add_heatmap(store, catalogue, slide_id, values, name="bad")
    with pytest.raises(InvalidOverlay, match="colour map"):
        add_heatmap(store, catalogue, slide_id, np.zeros((4, 4)), name="x", colour_map="rainbow")
    with pytest.raises(InvalidOverlay, match="vmin"):
        add_heatmap(store, catalogue, slide_id, np.zeros((4, 4)), name="x", vmin=1, vmax=1)
    assert list(store.list(f"slides/{slide_id}/overlays/")) == []


def test_demo_seeds_ten_thousand_cells_once(tmp_path: Path) -> None:
    """Its heatmaps come from real jobs at start-up (tests/integration/test_demo.py)."""
    settings = Settings(home=tmp_path / "home", testdata=tmp_path / "absent")
    for _ in range(2):  # the second run adds nothing
        prepare_demo(settings, Console(file=io.StringIO()), synthetic_size=(2000, 1500))
    catalogue = Catalogue.open(settings.database_url)
    # The synthetic slide, not the demo cases' H&E and IHC slides.
    (slide,) = [s for s in catalogue.list_slides() if s.name == SYNTHETIC_NAME]
    overlays = list_overlays(catalogue, slide.id)
    assert [(o.kind, o.name) for o in overlays] == [("features", "Cells")]
    assert overlays[0].feature_count == 10_000


def test_a_heatmap_threshold_clears_the_values_below_it(hub, settings):
    """The viewer's threshold slider: the same tile with values under the threshold clear."""
    client, slide_id = hub
    overlay_id, field = _heatmap(settings, slide_id)
    base = f"/api/slides/{slide_id}/overlays/{overlay_id}_files/8/0_0.png"
    plain = _rgba(client.get(base).content)
    half = client.get(base, params={"threshold": 50})
    assert half.status_code == 200 and half.headers["etag"] != client.get(base).headers["etag"]
    halved = _rgba(half.content)
    # Only the alpha changes, and only where the value is under one half.
    assert (halved[:, :, :3] == plain[:, :, :3]).all()
    kept = halved[:, :, 3] > 0
    assert kept.sum() < (plain[:, :, 3] > 0).sum()
    shown = np.asarray(
        Image.fromarray(np.round(field * 255).astype(np.uint8)).resize(
            (plain.shape[1], plain.shape[0]), Image.Resampling.NEAREST
        )
    )
    assert (shown[kept] >= 120).mean() > 0.97  # what stays is at or above ~0.5
    for bad in (-1, 101, "x"):
        assert client.get(base, params={"threshold": bad}).status_code == 400
