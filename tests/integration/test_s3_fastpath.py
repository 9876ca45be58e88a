"""Stored tiles of a slide in S3, served from the event loop (tiles/fastpath.py): the same
bytes as the route, one ranged GET each, and every failure left to the route's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from storage import S3Store
from tests import database
from tests.hub import hub_client, ingest
from tests.s3server import SeaweedS3


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "synthetic.tiff"
    write_synthetic_slide(path, 2048, 1536, seed=3)
    return path


def s3_settings(server: SeaweedS3, home: Path, bucket: str) -> Settings:
    return Settings(
        home=home,
        storage_url=f"s3://{server.endpoint}/{bucket}",
        s3_access_key=server.access_key,
        s3_secret_key=SecretStr(server.secret_key),
        s3_secure=False,
        tile_cache_mb=16,
    )


@pytest.fixture
def s3_hub(
    s3_server: SeaweedS3, tmp_path: Path, slide_file: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, str, Settings]]:
    bucket = "fast" + str(abs(hash(request.node.name)) % 10**8)
    settings = s3_settings(s3_server, tmp_path / "s3home", bucket)
    slide_id = ingest(settings, slide_file)
    with hub_client(settings) as client:
        yield client, slide_id, settings
    s3_server.remove_bucket(bucket)


def tile_url(slide_id: str, z: int, col: int, row: int) -> str:
    return f"/slides/{slide_id}_files/{z}/{col}_{row}.jpeg"


def test_stored_tiles_come_from_the_event_loop_with_one_get_each(s3_hub, tmp_path, slide_file):
    client, slide_id, _settings = s3_hub
    ranges = client.app.state.range_reader
    assert ranges is not None
    # Level 11 of a 2048-wide slide is level 0: 8 x 6 stored 256 tiles.
    first = client.get(tile_url(slide_id, 11, 0, 0))
    assert first.status_code == 200
    assert first.headers["server-timing"].startswith("stored")  # the route opened the slide
    before = ranges.requests["GET"]
    fast = {}
    for col, row in [(1, 0), (2, 1), (7, 5), (3, 3)]:
        response = client.get(tile_url(slide_id, 11, col, row))
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"].endswith("immutable")
        assert response.headers["server-timing"].startswith("stored;dur=")
        fast[col, row] = response.content
    assert ranges.requests["GET"] - before == 4

    # The same tiles from the same slide on local disk, through the route: identical bytes.
    local = database.settings(tmp_path / "localhome", tile_cache_mb=0)
    local_id = ingest(local, slide_file)
    with hub_client(local) as local_client:
        for (col, row), data in fast.items():
            expected = local_client.get(tile_url(local_id, 11, col, row))
            assert expected.headers["server-timing"].startswith("stored")
            assert data == expected.content

    # Served again: from the cache, no GET, same ETag.
    again = client.get(tile_url(slide_id, 11, 1, 0))
    assert again.headers["server-timing"] == "cache"
    assert again.content == fast[1, 0]
    assert ranges.requests["GET"] - before == 4


def test_tiles_that_need_rendering_still_go_to_the_route(s3_hub):
    client, slide_id, _settings = s3_hub
    assert client.get(tile_url(slide_id, 11, 0, 0)).status_code == 200
    # Level 2 of the DeepZoom pyramid is not a stored level: decoded, resized, encoded.
    response = client.get(tile_url(slide_id, 2, 0, 0))
    assert response.status_code == 200
    assert response.headers["server-timing"].startswith("transcode")
    # Out of the grid: the route's 404, not an error of the fast path.
    missing = client.get(tile_url(slide_id, 11, 99, 0))
    assert missing.status_code == 404
    assert "detail" in missing.json()


def test_storage_lost_under_an_open_slide_gives_503_not_500(s3_hub, s3_server):
    client, slide_id, settings = s3_hub
    assert client.get(tile_url(slide_id, 11, 0, 0)).status_code == 200
    bucket = settings.storage_url.rsplit("/", 1)[1]
    store = S3Store(
        s3_server.endpoint,
        bucket,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    for obj in list(store.list(f"slides/{slide_id}/")):
        store.delete(obj.key)
    response = client.get(tile_url(slide_id, 11, 4, 4))
    assert response.status_code in (404, 503)
    assert "detail" in response.json()
    # The hub still answers everything else.
    assert client.get("/api/health").status_code == 200


def iiif_url(slide_id: str, region: str, size: str) -> str:
    return f"/iiif/3/{slide_id}/{region}/{size}/0/default.jpg"


def test_iiif_tiles_on_the_stored_grid_take_the_same_fast_path(s3_hub):
    client, slide_id, _settings = s3_hub
    ranges = client.app.state.range_reader
    assert client.get(tile_url(slide_id, 11, 0, 0)).status_code == 200  # opens the slide
    before = ranges.requests["GET"]
    # Tile (2, 1) of level 0 in the forms IIIF viewers send: w,h (Image API 3), w, (2), max.
    first = client.get(iiif_url(slide_id, "512,256,256,256", "256,256"))
    assert first.status_code == 200
    assert first.headers["server-timing"].startswith("stored;dur=")  # not the route's
    assert first.headers["access-control-allow-origin"] == "*"
    assert ranges.requests["GET"] - before == 1
    for size in ("256,", "max"):
        again = client.get(iiif_url(slide_id, "512,256,256,256", size))
        assert again.headers["server-timing"] == "cache"
        assert again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
    # It is the DeepZoom tile: same ETag and bytes, from the cache, no second GET.
    deepzoom = client.get(tile_url(slide_id, 11, 2, 1))
    assert deepzoom.headers["server-timing"] == "cache"
    assert (deepzoom.content, deepzoom.headers["etag"]) == (first.content, first.headers["etag"])
    assert ranges.requests["GET"] - before == 1
    # A revalidation costs nothing either, and keeps the CORS header viewers need.
    unchanged = client.get(
        iiif_url(slide_id, "512,256,256,256", "256,256"),
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert unchanged.status_code == 304
    assert unchanged.headers["access-control-allow-origin"] == "*"


def test_iiif_requests_off_the_grid_still_go_to_the_route(s3_hub):
    client, slide_id, _settings = s3_hub
    assert client.get(tile_url(slide_id, 11, 0, 0)).status_code == 200
    off_grid = client.get(iiif_url(slide_id, "100,100,256,256", "256,256"))
    assert off_grid.status_code == 200
    assert off_grid.headers["server-timing"].startswith("transcode")
    rotated = client.get(f"/iiif/3/{slide_id}/0,0,256,256/256,256/90/default.jpg")
    assert rotated.headers["server-timing"].startswith("transcode")
    # Malformed or out of the image: the route's 400, never the fast path's error.
    assert client.get(iiif_url(slide_id, "0,0,256,256", "9999,9999")).status_code == 400
    outside = client.get(iiif_url(slide_id, "99999,0,256,256", "256,256"))
    assert outside.status_code == 400
    assert "detail" in outside.json()
