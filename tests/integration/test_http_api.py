"""The HTTP API as a viewer and a script use it: catalogue, DeepZoom, IIIF, caching,
uploads, and bad requests that must get a clear 4xx, never a 500."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from exchange.slides.catalogue import Catalogue
from iain.app import build_store
from tests.hub import ingest
from tests.testdata import REFUSED, sample

SVS = "aperio/CMU-1-Small-Region.svs"


def image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_catalogue_lists_and_describes_slides(settings, client):
    slide_id = ingest(settings, sample(SVS), "caen")  # the client's centre
    listing = client.get("/api/slides").json()["items"]
    assert [s["id"] for s in listing] == [slide_id]
    item = listing[0]
    assert item["name"] == "CMU-1-Small-Region.svs"
    assert (item["centre"], item["status"], item["vendor"]) == ("caen", "ready", "aperio")
    assert (item["width"], item["height"], item["mpp"]) == (2220, 2967, pytest.approx(0.499))
    detail = client.get(f"/api/slides/{slide_id}").json()
    assert detail["objective_power"] == 20
    assert detail["levels"][0] == {"width": 2220, "height": 2967, "downsample": 1.0}
    assert set(detail["associated_images"]) == {"label", "macro", "thumbnail"}
    assert {c["code"] for c in client.get("/api/centres").json()} >= {"caen", "lille", "rouen"}


def test_a_slide_ingested_while_the_server_runs_appears_without_restart(settings, client):
    assert client.get("/api/slides").json()["items"] == []
    slide_id = ingest(settings, sample(SVS))
    assert [s["id"] for s in client.get("/api/slides").json()["items"]] == [slide_id]
    assert client.get(f"/slides/{slide_id}.dzi").status_code == 200


def test_deepzoom_descriptor_and_tiles(settings, client):
    slide_id = ingest(settings, sample(SVS))
    dzi = client.get(f"/slides/{slide_id}.dzi")
    assert dzi.status_code == 200
    assert 'TileSize="256"' in dzi.text and 'Overlap="0"' in dzi.text
    assert '<Size Width="2220" Height="2967"/>' in dzi.text
    assert image(client.get(f"/slides/{slide_id}_files/12/0_0.jpeg")).size == (256, 256)
    # The bottom-right tile is cut to the slide's edge.
    corner = client.get(f"/slides/{slide_id}_files/12/8_11.jpeg")
    assert image(corner).size == (172, 151)
    assert image(client.get(f"/slides/{slide_id}_files/0/0_0.jpeg")).size == (1, 1)


def test_tiles_are_immutable_and_revalidate_with_304(settings, client):
    slide_id = ingest(settings, sample(SVS))
    url = f"/slides/{slide_id}_files/11/1_1.jpeg"
    first = client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "immutable" in first.headers["cache-control"]
    assert "max-age=" in first.headers["cache-control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get(url).content == first.content
    other = client.get(f"/slides/{slide_id}_files/11/2_1.jpeg")
    assert other.headers["etag"] != etag


def test_health_shows_how_full_the_tile_cache_is(settings, client):
    # What an operator reads to see where the hub's memory goes.
    slide_id = ingest(settings, sample(SVS))
    before = client.get("/api/health").json()
    assert before["status"] == "ok"
    assert before["tile_cache"]["max_bytes"] == settings.tile_cache_mb * 1024 * 1024
    tile = client.get(f"/slides/{slide_id}_files/11/1_1.jpeg")
    client.get(f"/slides/{slide_id}_files/11/1_1.jpeg")
    after = client.get("/api/health").json()["tile_cache"]
    assert after["tiles"] == before["tile_cache"]["tiles"] + 1
    assert after["bytes"] >= before["tile_cache"]["bytes"] + len(tile.content)
    assert after["hits"] > before["tile_cache"]["hits"]


def test_iiif_info_and_images(settings, client):
    slide_id = ingest(settings, sample(SVS))
    info = client.get(f"/iiif/3/{slide_id}/info.json").json()
    assert info["type"] == "ImageService3" and info["protocol"] == "http://iiif.io/api/image"
    assert info["id"].endswith(f"/iiif/3/{slide_id}")
    assert (info["width"], info["height"]) == (2220, 2967)
    assert info["tiles"][0]["width"] == 256
    assert info["tiles"][0]["scaleFactors"][:3] == [1, 2, 4]
    base = f"/iiif/3/{slide_id}"
    # A tile as OpenSeadragon asks for it is the DeepZoom tile, byte for byte.
    tile = client.get(f"{base}/512,512,512,512/256,/0/default.jpg")
    assert tile.content == client.get(f"/slides/{slide_id}_files/11/1_1.jpeg").content
    assert image(client.get(f"{base}/full/!400,400/0/default.jpg")).size == (299, 400)
    assert image(client.get(f"{base}/full/max/0/default.jpg")).size == (2220, 2967)
    rotated = image(client.get(f"{base}/0,0,300,100/max/90/default.png"))
    assert rotated.size == (100, 300) and rotated.format == "PNG"
    assert image(client.get(f"{base}/square/100,/0/gray.jpg")).mode == "L"
    assert image(client.get(f"{base}/pct:0,0,50,50/pct:10/!0/bitonal.png")).mode == "1"
    assert image(client.get(f"{base}/full/128,/0/default.webp")).format == "WEBP"
    assert client.get(base, follow_redirects=False).status_code == 303


def test_thumbnail_and_associated_images(settings, client):
    slide_id = ingest(settings, sample(SVS))
    thumb = image(client.get(f"/api/slides/{slide_id}/thumbnail?size=300"))
    assert max(thumb.size) == 300
    label = image(client.get(f"/api/slides/{slide_id}/associated/label"))
    assert label.size == (387, 463)
    assert client.get(f"/api/slides/{slide_id}/associated/nothing").status_code == 404


def test_upload_ingests_and_refuses_bad_files(settings, client):
    path = sample(SVS)
    with path.open("rb") as f:
        # A pathologist of Caen adds slides to Caen only.
        elsewhere = client.post(
            "/api/slides", files={"file": (path.name, f)}, data={"centre": "rouen"}
        )
    assert elsewhere.status_code == 403, elsewhere.text
    assert client.get("/api/slides").json()["items"] == []
    with path.open("rb") as f:
        created = client.post("/api/slides", files={"file": (path.name, f)})
    assert created.status_code == 201, created.text
    assert created.json()["centre"] == "caen"
    for relative, reason in REFUSED.items():
        bad = sample(relative)
        if bad.is_dir():
            continue
        with bad.open("rb") as f:
            refused = client.post("/api/slides", files={"file": (bad.name, f)})
        assert refused.status_code in (415, 422), (relative, refused.text)
        assert reason in refused.json()["detail"], refused.json()
    with path.open("rb") as f:
        wrong_centre = client.post(
            "/api/slides", files={"file": (path.name, f)}, data={"centre": "paris"}
        )
    assert wrong_centre.status_code == 400 and "unknown centre" in wrong_centre.json()["detail"]
    assert len(client.get("/api/slides").json()["items"]) == 1  # nothing recorded for refusals


def test_the_server_keeps_serving_other_slides_after_a_corrupt_one(settings, client, tmp_path):
    good = ingest(settings, sample(SVS))
    # A valid header whose tile data is later damaged in storage: decoding fails at serve time.
    damaged_src = tmp_path / "damaged.svs"
    shutil.copy(sample(SVS), damaged_src)
    damaged = ingest(settings, damaged_src)
    catalogue = Catalogue.open(settings.database_url)
    record = catalogue.get(damaged)
    assert record is not None
    store = build_store(settings)
    data = bytearray(store.get(record.main_key))
    data[200_000:1_800_000] = b"\x00" * 1_600_000
    store.put_bytes(record.main_key, bytes(data))
    bad = client.get(f"/slides/{damaged}_files/12/4_5.jpeg")
    assert bad.status_code == 422, bad.text
    assert "cannot decode" in bad.json()["detail"]
    assert client.get(f"/slides/{good}_files/12/4_5.jpeg").status_code == 200


BAD_PATHS = [
    "/slides/doesnotexist.dzi",
    "/slides/DOESNOTEXIST.dzi",
    "/slides/../../etc/passwd.dzi",
    "/slides/%00.dzi",
    "/slides/{id}_files/13/0_0.jpeg",
    "/slides/{id}_files/-1/0_0.jpeg",
    "/slides/{id}_files/12/9_0.jpeg",
    "/slides/{id}_files/12/0_12.jpeg",
    "/slides/{id}_files/12/0_0.png",
    "/slides/{id}_files/12/a_b.jpeg",
    "/slides/{id}_files/99999999999/0_0.jpeg",
    "/slides/{id}_files/12/99999999999999_0.jpeg",
    "/slides/{id}_files/x/0_0.jpeg",
    "/slides/nope_files/1/0_0.jpeg",
    "/iiif/3/nope/info.json",
    "/iiif/3/nope/full/max/0/default.jpg",
    "/iiif/3/{id}/full/max/0/default.gif",
    "/iiif/3/{id}/full/max/0/sepia.jpg",
    "/iiif/3/{id}/full/max/45/default.jpg",
    "/iiif/3/{id}/full/max/-90/default.jpg",
    "/iiif/3/{id}/full/0,/0/default.jpg",
    "/iiif/3/{id}/full/99999,/0/default.jpg",
    "/iiif/3/{id}/full/^99999,/0/default.jpg",
    "/iiif/3/{id}/full/^max/0/default.jpg.jpg",
    "/iiif/3/{id}/0,0,0,0/max/0/default.jpg",
    "/iiif/3/{id}/5000,0,10,10/max/0/default.jpg",
    "/iiif/3/{id}/pct:200,0,10,10/max/0/default.jpg",
    "/iiif/3/{id}/1,2,3/max/0/default.jpg",
    "/iiif/3/{id}/full/pct:0/0/default.jpg",
    "/iiif/3/{id}/full/pct:1e9/0/default.jpg",
    "/iiif/3/{id}/full/!10,/0/default.jpg",
    "/iiif/3/{id}/full/max/0/default",
    "/iiif/3/{id}/full/max/0/.jpg",
    "/iiif/3/{id}/full/max/999999999999999999999/default.jpg",
    "/api/slides/nope",
    "/api/slides/{id}/thumbnail?size=0",
    "/api/slides/{id}/thumbnail?size=99999",
    "/api/slides/{id}/thumbnail?size=abc",
    "/api/slides/nope/thumbnail",
    "/api/slides/{id}/associated/%2e%2e%2fetc",
    "/api/slides/nope/associated/label",
    "/api/storage/slides/x?expires=1&signature=bad",
    "/api/storage/slides/x?expires=abc&signature=bad",
]


def test_bad_requests_get_a_clear_4xx_never_a_500(settings, client):
    slide_id = ingest(settings, sample(SVS))
    for template in BAD_PATHS:
        path = template.replace("{id}", slide_id)
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("application/json"):
            assert response.json()["detail"], path
    for bad_upload in (
        {"data": {"centre": "caen"}},
        {"files": {"file": ("", b"")}},
        {"files": {"file": ("empty.svs", b"")}},
        {"files": {"file": ("text.svs", b"not a slide at all")}},
    ):
        response = client.post("/api/slides", **bad_upload)
        assert 400 <= response.status_code < 500, (bad_upload, response.text)


def test_unknown_and_malformed_ids_get_the_same_404(settings, client):
    ingest(settings, sample(SVS))
    a = client.get("/slides/aaaaaaaaaaaa.dzi")
    b = client.get("/slides/..%2F..%2Fx.dzi")
    assert a.status_code == b.status_code == 404
