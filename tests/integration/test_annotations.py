"""Slide annotations over HTTP: GeoJSON CRUD, optimistic concurrency, QuPath export/import,
validation of every bad input as a 4xx, bulk import, and the measurement maths."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from exchange.annotations.measure import (
    geometry_area_mm2,
    line_length_mm,
    line_length_um,
    polygon_area_mm2,
    polygon_area_px,
)
from exchange.slides.catalogue import Catalogue
from iain.settings import Settings
from tests.database import as_before_migrations
from tests.hub import ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"  # 2220 × 2967 px, 0.499 µm/px
WIDTH, HEIGHT = 2220, 2967


@pytest.fixture
def slide_id(settings: Settings, client: TestClient) -> str:
    return ingest(settings, sample(SVS))


def url(slide_id: str, rest: str = "") -> str:
    return f"/api/slides/{slide_id}/annotations{rest}"


def rectangle(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def listed(client: TestClient, slide_id: str) -> list[dict[str, Any]]:
    response = client.get(url(slide_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "FeatureCollection"
    features: list[dict[str, Any]] = body["features"]
    return features


# --- CRUD --------------------------------------------------------------------------------------


def test_create_read_update_delete_round_trip(client, slide_id):
    assert listed(client, slide_id) == []
    rect = rectangle(100, 200, 1000, 500)
    created = client.post(
        url(slide_id),
        json=feature(rect, kind="rectangle", label="Tumour", colour="#C80000", comment="pT2"),
    )
    assert created.status_code == 201, created.text
    ann = created.json()
    ann_id = ann["id"]
    assert ann["type"] == "Feature" and isinstance(ann_id, str) and ann_id
    assert ann["geometry"] == rect
    props = ann["properties"]
    assert (props["kind"], props["label"], props["colour"], props["comment"]) == (
        "rectangle",
        "Tumour",
        "#c80000",
        "pT2",
    )
    assert props["version"] == 1 and props["created_at"] == props["updated_at"]
    # 1000 × 500 px at 0.499 µm/px.
    assert props["measurements"]["area_mm2"] == pytest.approx(1000 * 500 * 0.499**2 / 1e6)

    assert client.get(url(slide_id, f"/{ann_id}")).json() == ann
    assert [f["id"] for f in listed(client, slide_id)] == [ann_id]

    # Replace, naming the version it was edited from.
    moved = rectangle(150, 250, 800, 400)
    body = feature(moved, kind="rectangle", label="Tumour bed", colour="#00ff00", version=1)
    updated = client.put(url(slide_id, f"/{ann_id}"), json=body)
    assert updated.status_code == 200, updated.text
    up = updated.json()
    assert up["id"] == ann_id and up["geometry"] == moved
    assert up["properties"]["version"] == 2
    assert up["properties"]["label"] == "Tumour bed" and up["properties"]["comment"] == ""
    assert up["properties"]["created_at"] == props["created_at"]
    assert listed(client, slide_id) == [up]

    # A second client still holding version 1 is refused, and nothing changes.
    stale = client.put(url(slide_id, f"/{ann_id}"), json={**body, "geometry": rect})
    assert stale.status_code == 409, stale.text
    assert "version" in stale.json()["detail"]
    assert listed(client, slide_id) == [up]
    # Without a version, last write wins; a Feature as served (extra properties) is accepted.
    served = {**up, "properties": {**up["properties"], "version": None, "label": "again"}}
    again = client.put(url(slide_id, f"/{ann_id}"), json=served)
    assert again.status_code == 200, again.text
    assert again.json()["properties"]["version"] == 3

    assert client.delete(url(slide_id, f"/{ann_id}"), params={"version": 2}).status_code == 409
    deleted = client.delete(url(slide_id, f"/{ann_id}"), params={"version": 3})
    assert deleted.status_code == 204 and deleted.content == b""
    assert listed(client, slide_id) == []
    assert client.get(url(slide_id, f"/{ann_id}")).status_code == 404
    assert client.delete(url(slide_id, f"/{ann_id}")).status_code == 404


def test_every_kind_is_stored_and_listed_in_creation_order(client, slide_id):
    shapes = [
        feature({"type": "Point", "coordinates": [10, 20]}),
        feature({"type": "LineString", "coordinates": [[0, 0], [300, 400]]}),
        feature(rectangle(0, 0, 10, 10), kind="rectangle"),
        feature(rectangle(5, 5, 20, 20), kind="ellipse"),
        feature(rectangle(50, 50, 20, 20)),
        feature(
            {"type": "MultiPolygon", "coordinates": [rectangle(0, 0, 5, 5)["coordinates"]]},
            kind="freehand",
        ),
    ]
    ids = []
    for shape in shapes:
        response = client.post(url(slide_id), json=shape)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    features = listed(client, slide_id)
    assert [f["id"] for f in features] == ids
    kinds = {f["id"]: f["properties"]["kind"] for f in features}
    assert [kinds[i] for i in ids] == [
        "point",
        "line",
        "rectangle",
        "ellipse",
        "polygon",
        "freehand",
    ]
    line = next(f for f in features if f["properties"]["kind"] == "line")
    assert line["properties"]["measurements"]["length_um"] == pytest.approx(500 * 0.499)
    point = next(f for f in features if f["properties"]["kind"] == "point")
    assert "measurements" not in point["properties"]
    assert client.delete(url(slide_id, f"/{ids[2]}")).status_code == 204
    assert len(listed(client, slide_id)) == len(shapes) - 1


def test_text_is_stored_as_given_and_served_as_json(client, slide_id):
    label = '<script>alert("x")</script>'
    comment = '<img src=x onerror=alert(1)> & "quotes" — é ü 日本\n2nd line'
    response = client.post(
        url(slide_id),
        json=feature({"type": "Point", "coordinates": [1, 1]}, label=label, comment=comment),
    )
    assert response.status_code == 201, response.text
    for r in (
        response,
        client.get(url(slide_id)),
        client.get(url(slide_id), params={"format": "qupath"}),
    ):
        assert r.headers["content-type"].startswith("application/json")
    props = listed(client, slide_id)[0]["properties"]
    assert (props["label"], props["comment"]) == (label, comment)


# --- QuPath -----------------------------------------------------------------------------------


def test_qupath_export_then_import_keeps_geometry_label_and_colour(client, slide_id):
    originals = [
        feature(rectangle(100, 100, 200, 300), kind="rectangle", label="Tumor", colour="#c80000"),
        feature(rectangle(400, 400, 50, 50), kind="ellipse", label="Stroma", comment="note"),
        feature({"type": "LineString", "coordinates": [[1.5, 2.5], [10, 20], [30, 5]]}),
        feature({"type": "Point", "coordinates": [2000.25, 2900.75]}, label="Mitosis"),
    ]
    for f in originals:
        assert client.post(url(slide_id), json=f).status_code == 201
    exported = client.get(url(slide_id), params={"format": "qupath"})
    assert exported.status_code == 200
    collection = exported.json()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 4
    by_label = {f["properties"].get("name"): f for f in collection["features"]}
    tumour = by_label["Tumor"]["properties"]
    assert tumour["objectType"] == "annotation"
    assert tumour["classification"] == {"name": "Tumor", "color": [200, 0, 0]}

    before = {_key(f) for f in listed(client, slide_id)}
    for f in listed(client, slide_id):
        assert client.delete(url(slide_id, f"/{f['id']}")).status_code == 204
    imported = client.post(url(slide_id, "/import"), json=collection)
    assert imported.status_code == 201, imported.text
    assert len(imported.json()["features"]) == 4
    assert {_key(f) for f in listed(client, slide_id)} == before


def _key(f: dict[str, Any]) -> tuple[str, ...]:
    p = f["properties"]
    return (json.dumps(f["geometry"]), p["kind"], p["label"], p["colour"], p["comment"])


def test_import_accepts_what_qupath_writes(client, slide_id):
    qupath_04 = {
        "type": "Feature",
        "id": "9a1c1e8e-0d4c-4f7b-8a4e-3c1e2b7d6f00",
        "geometry": rectangle(10, 10, 100, 100),
        "properties": {
            "objectType": "annotation",
            "classification": {"name": "Tumor", "color": [200, 0, 0]},
            "isLocked": False,
            "measurements": {"Area µm^2": 2490.0},
        },
    }
    qupath_03 = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[0, 0], [10, 0]]},
        "properties": {
            "object_type": "annotation",
            "classification": {"name": "Necrosis", "colorRGB": -16744448},  # 0xff008000
        },
    }
    points = {
        "type": "Feature",
        "geometry": {"type": "MultiPoint", "coordinates": [[1, 1], [2, 2], [3, 3]]},
        "properties": {"objectType": "annotation", "name": "cells", "color": [0, 0, 255]},
    }
    bare = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}}
    # A single Feature, a bare array (QuPath's default export) and a FeatureCollection.
    assert client.post(url(slide_id, "/import"), json=qupath_04).status_code == 201
    assert client.post(url(slide_id, "/import"), json=[qupath_03, bare]).status_code == 201
    collection = {"type": "FeatureCollection", "features": [points]}
    assert client.post(url(slide_id, "/import"), json=collection).status_code == 201
    got = sorted(
        (f["properties"]["kind"], f["properties"]["label"], f["properties"]["colour"])
        for f in listed(client, slide_id)
    )
    assert got == sorted(
        [
            ("polygon", "Tumor", "#c80000"),
            ("line", "Necrosis", "#008000"),
            ("point", "", "#ffcc00"),
            ("point", "cells", "#0000ff"),
            ("point", "cells", "#0000ff"),
            ("point", "cells", "#0000ff"),
        ]
    )


def test_ten_thousand_points_import_and_list_back(client, slide_id):
    n = 10_000
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [i % WIDTH, (i * 7) % HEIGHT]},
            "properties": {"objectType": "annotation", "classification": {"name": "Lymphocyte"}},
        }
        for i in range(n)
    ]
    start = time.perf_counter()
    response = client.post(
        url(slide_id, "/import"), json={"type": "FeatureCollection", "features": features}
    )
    imported_s = time.perf_counter() - start
    assert response.status_code == 201, response.text[:500]
    start = time.perf_counter()
    back = listed(client, slide_id)
    listed_s = time.perf_counter() - start
    assert len(back) == n
    assert {tuple(f["geometry"]["coordinates"]) for f in back} == {
        (float(i % WIDTH), float((i * 7) % HEIGHT)) for i in range(n)
    }
    assert imported_s < 15 and listed_s < 5, (imported_s, listed_s)


# --- Bad inputs: always a 4xx with a JSON detail, never a 500 -------------------------------------

RING = rectangle(0, 0, 10, 10)["coordinates"][0]
BAD_FEATURES = {
    "geometry type": feature(
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 1]}]}
    ),
    "multilinestring": feature({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]}),
    "no geometry": {"type": "Feature", "properties": {}},
    "not a feature": {"type": "FeatureCollection", "features": []},
    "unclosed ring": feature({"type": "Polygon", "coordinates": [[*RING[:-1], [0, 5]]]}),
    "short ring": feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}),
    "empty polygon": feature({"type": "Polygon", "coordinates": []}),
    "one-point line": feature({"type": "LineString", "coordinates": [[0, 0]]}),
    "1-d position": feature({"type": "Point", "coordinates": [1]}),
    "string coordinate": feature({"type": "Point", "coordinates": ["1", 2]}),
    "boolean coordinate": feature({"type": "Point", "coordinates": [True, 2]}),
    "out of bounds x": feature({"type": "Point", "coordinates": [WIDTH + 500, 10]}),
    "negative": feature({"type": "Point", "coordinates": [10, -100]}),
    "huge": feature({"type": "LineString", "coordinates": [[0, 0], [1e300, 1e300]]}),
    "too many vertices": feature(
        {
            "type": "Polygon",
            "coordinates": [[[i % 100, i // 1000] for i in range(100_001)] + [[0, 0]]],
        }
    ),
    "too many vertices in all": feature(
        {
            "type": "MultiPolygon",
            "coordinates": [[[*[[i % 100, 1] for i in range(50_001)], [0, 1]]]] * 2,
        }
    ),
    "huge label": feature(rectangle(0, 0, 1, 1), label="x" * 201),
    "huge comment": feature(rectangle(0, 0, 1, 1), comment="x" * 10_001),
    "bad colour": feature(rectangle(0, 0, 1, 1), colour="red"),
    "short colour": feature(rectangle(0, 0, 1, 1), colour="#fff"),
    "unknown kind": feature(rectangle(0, 0, 1, 1), kind="circle"),
    "kind vs geometry": feature({"type": "Point", "coordinates": [1, 1]}, kind="rectangle"),
    "label not text": feature(rectangle(0, 0, 1, 1), label=["a"]),
}


# QuPath's properties are read leniently on import (IAIN's own "label", "kind", "colour" are not
# QuPath's): these cases are only bad as IAIN features. Geometry is checked the same on both.
IAIN_ONLY = {
    "huge label",
    "huge comment",
    "bad colour",
    "short colour",
    "unknown kind",
    "kind vs geometry",
    "label not text",
}


@pytest.mark.parametrize("case", sorted(BAD_FEATURES))
def test_bad_features_are_refused_with_4xx(client, slide_id, case):
    body = BAD_FEATURES[case]
    paths = [""] if case in IAIN_ONLY else ["", "/import"]
    for path in paths:
        response = client.post(url(slide_id, path), json=body)
        assert 400 <= response.status_code < 500, (case, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["detail"]
    assert listed(client, slide_id) == []


def test_import_refuses_overlong_qupath_text(client, slide_id):
    point = {"type": "Point", "coordinates": [1, 1]}
    long_class = feature(point, classification={"name": "x" * 201})
    long_comment = feature(point, metadata={"comment": "x" * 10_001})
    for body in (long_class, long_comment):
        response = client.post(url(slide_id, "/import"), json=body)
        assert response.status_code == 400, response.text
    assert listed(client, slide_id) == []


def test_the_slide_margin_allows_an_edge_click(client, slide_id):
    on_edge = feature({"type": "Point", "coordinates": [WIDTH + 5, HEIGHT + 5]})
    assert client.post(url(slide_id), json=on_edge).status_code == 201
    # GeoJSON's foreign members (a bbox) are allowed, and not stored.
    boxed = {**rectangle(0, 0, 2, 2), "bbox": [0, 0, 2, 2]}
    response = client.post(url(slide_id), json=feature(boxed))
    assert response.status_code == 201
    assert response.json()["geometry"] == rectangle(0, 0, 2, 2)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b"",
        b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}}',
        b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [Infinity, 1]}}',
        b"[1, 2, 3]",
        b"null",
    ],
)
def test_malformed_json_is_a_400(client, slide_id, raw):
    headers = {"content-type": "application/json"}
    for path in ("", "/import"):
        response = client.post(url(slide_id, path), content=raw, headers=headers)
        assert response.status_code == 400, (path, raw, response.text)
        assert response.json()["detail"]


def test_unknown_slide_and_unknown_annotation_are_404(client, slide_id):
    point = feature({"type": "Point", "coordinates": [1, 1]})
    expected = client.get("/api/slides/nosuchslide").json()["detail"]
    for response in (
        client.get(url("nosuchslide")),
        client.get(url("nosuchslide"), params={"format": "qupath"}),
        client.post(url("nosuchslide"), json=point),
        client.post(url("nosuchslide", "/import"), json=point),
        client.put(url("nosuchslide", "/abc"), json=point),
        client.delete(url("nosuchslide", "/abc")),
        client.get(url("x" * 500)),
    ):
        assert response.status_code == 404, response.text
        if "x" * 500 not in str(response.url):
            assert response.json()["detail"] == expected

    ann_id = client.post(url(slide_id), json=point).json()["id"]
    for response in (
        client.get(url(slide_id, "/nosuchannotation")),
        client.put(url(slide_id, "/nosuchannotation"), json=point),
        client.delete(url(slide_id, "/nosuchannotation")),
        client.get(url(slide_id, "/" + "y" * 500)),
    ):
        assert response.status_code == 404, response.text
        assert "annotation" in response.json()["detail"]
    # An annotation is found only under its own slide.
    assert client.get(url("nosuchslide", f"/{ann_id}")).status_code == 404


def test_other_bad_requests(client, slide_id):
    assert client.get(url(slide_id), params={"format": "shapefile"}).status_code == 400
    empty = {"type": "FeatureCollection", "features": []}
    assert client.post(url(slide_id, "/import"), json=empty).status_code == 400
    point = feature({"type": "Point", "coordinates": [1, 1]})
    ann_id = client.post(url(slide_id), json=point).json()["id"]
    put = client.put(url(slide_id, f"/{ann_id}"), json={**point, "properties": {"version": 0}})
    assert put.status_code == 400
    assert client.delete(url(slide_id, f"/{ann_id}"), params={"version": "x"}).status_code == 400


def test_the_table_is_added_to_an_existing_database(settings):
    # A database from before annotations (and before migrations) existed.
    catalogue = Catalogue.open(settings.database_url)
    as_before_migrations(settings.database_url)
    with catalogue.engine.begin() as conn:
        conn.execute(text("DROP TABLE annotations"))
    assert "annotations" not in inspect(catalogue.engine).get_table_names()
    Catalogue.open(settings.database_url)
    assert "annotations" in inspect(catalogue.engine).get_table_names()


# --- Measurement maths ------------------------------------------------------------------------


def test_polygon_areas_are_exact_on_simple_shapes():
    square = rectangle(0, 0, 1000, 1000)["coordinates"]
    assert polygon_area_px(square) == 1_000_000
    # 1000 px at 1 µm/px is 1 mm: one square millimetre.
    assert polygon_area_mm2(square, 1.0, 1.0) == 1.0
    assert polygon_area_mm2(square, 0.5, 0.25) == 0.125  # anisotropic pixels
    assert polygon_area_mm2(list(reversed(square[0:1])), 1.0, 1.0) == 1.0  # orientation-free
    triangle = [[[0, 0], [4000, 0], [0, 3000], [0, 0]]]
    assert polygon_area_mm2(triangle, 0.25, 0.25) == 0.375  # 6e6 px² × 0.0625 µm²
    with_hole = [square[0], rectangle(250, 250, 500, 500)["coordinates"][0]]
    assert polygon_area_mm2(with_hole, 1.0, 1.0) == 0.75
    multi = {"type": "MultiPolygon", "coordinates": [square, triangle]}
    assert geometry_area_mm2(multi, 1.0, 1.0) == 7.0
    assert geometry_area_mm2({"type": "Polygon", "coordinates": square}, 2.0, 2.0) == 4.0
    assert geometry_area_mm2({"type": "Point", "coordinates": [0, 0]}, 1.0, 1.0) is None
    assert polygon_area_px([]) == 0.0


def test_line_lengths_are_exact_on_simple_lines():
    assert line_length_um([[0, 0], [3, 4]], 1.0, 1.0) == 5.0
    assert line_length_um([[0, 0], [300, 0], [300, 400]], 0.5, 0.5) == 350.0
    assert line_length_mm([[0, 0], [4000, 0]], 0.25, 0.25) == 1.0
    # Anisotropic pixels: 6 px across at 0.5 µm and 2 px down at 2 µm make a 3-4-5 triangle.
    assert line_length_um([[0, 0], [6, 2]], 0.5, 2.0) == 5.0
    assert line_length_um([[7, 7]], 1.0, 1.0) == 0.0
    assert math.isclose(line_length_mm([[0, 0], [1, 1]], 1000.0, 1000.0), math.sqrt(2))
