"""The de-identified view of a slide leaks none of the patient identifiers the file carries.

A slide is written with fake identifiers in its label and macro images, its Aperio
ImageDescription, other TIFF text tags and its file name (tests/seeded_slide.py), ingested
into a hub, then every route of its de-identified view is walked: no identifier (nor the
slide's real id) appears in any response body or header, in any usual encoding."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image

from exchange.core.db import make_engine
from exchange.core.ids import PUBLIC_ID_LENGTH
from exchange.slides.catalogue import Catalogue
from iain.settings import Settings
from tests.database import as_before_migrations
from tests.hub import hub_client, ingest
from tests.seeded_slide import (
    ACCESSION,
    APP_MAG,
    FILE_NAME,
    HEIGHT,
    MPP,
    PATIENT_NAME,
    SCANNER_MODEL,
    WIDTH,
    identifiers,
    write_seeded_svs,
)
from tiles.geometry import DeepZoom, Size


@dataclass(frozen=True)
class Seeded:
    slide_id: str
    public_id: str


@pytest.fixture
def seeded(tmp_path: Path, settings: Settings, client: TestClient) -> Seeded:
    folder = tmp_path / "incoming"
    folder.mkdir()
    slide_id = ingest(settings, write_seeded_svs(folder))
    slide = Catalogue.open(settings.database_url).get(slide_id)
    assert slide is not None and slide.public_id is not None
    return Seeded(slide_id, slide.public_id)


def needles(seeded: Seeded) -> dict[bytes, str]:
    """Byte strings none of which may appear, mapped to what they come from."""
    found: dict[bytes, str] = {}
    for text in [*identifiers(), seeded.slide_id, FILE_NAME.removesuffix(".svs")]:
        for variant in {text, text.upper(), text.lower(), quote(text), quote(text, safe="")}:
            found[variant.encode()] = text
            found[variant.encode("utf-16-le")] = text
            found[variant.encode("utf-16-be")] = text
    return found


def leaks(response: Response, seeded: Seeded) -> list[str]:
    headers = b"\n".join(k + b": " + v for k, v in response.headers.raw)
    where = []
    # Presigned storage URLs name the object key: slide id and original file name.
    for marker in (b"/api/storage/", b"X-Amz-Signature", b"original/"):
        if marker in response.content or marker in headers:
            where.append(f"{marker!r} in {response.request.url}")
    for needle, source in needles(seeded).items():
        for part, data in (("body", response.content), ("headers", headers)):
            if needle in data:
                where.append(f"{source!r} in the {part} of {response.request.url}")
    return where


def walk(client: TestClient, seeded: Seeded) -> Iterator[Response]:
    """Every route of the de-identified view, the way a client of another centre uses them."""
    pid = seeded.public_id
    yield client.get("/api/slides", params={"view": "deidentified"})
    yield client.get(f"/api/slides/{pid}")
    yield client.get(f"/slides/{pid}.dzi")
    yield client.head(f"/slides/{pid}.dzi")
    dz = DeepZoom(Size(WIDTH, HEIGHT), 256, 0)
    for z in range(dz.level_count):
        count = dz.t_count(z)
        for row in range(count.height):
            for col in range(count.width):
                yield client.get(f"/slides/{pid}_files/{z}/{col}_{row}.jpeg")
    # Again: now answered by the cache (the fast path below the framework), and revalidated.
    tile = client.get(f"/slides/{pid}_files/{dz.z_max}/0_0.jpeg")
    yield tile
    yield client.head(f"/slides/{pid}_files/{dz.z_max}/0_0.jpeg")
    yield client.get(
        f"/slides/{pid}_files/{dz.z_max}/0_0.jpeg",
        headers={"If-None-Match": tile.headers["etag"]},
    )
    yield client.get(f"/iiif/3/{pid}", follow_redirects=False)
    yield client.get(f"/iiif/3/{pid}/info.json")
    for params in (
        "full/512,/0/default.jpg",
        "0,0,256,256/256,/0/default.jpg",
        "256,256,1024,512/!300,300/90/gray.png",
        "full/max/0/bitonal.png",
        "full/200,/!0/color.webp",
    ):
        yield client.get(f"/iiif/3/{pid}/{params}")
    yield client.get(f"/api/slides/{pid}/thumbnail")
    yield client.get(f"/api/slides/{pid}/thumbnail", params={"size": 64})
    for name in ("label", "macro", "thumbnail", "overview"):
        yield client.get(f"/api/slides/{pid}/associated/{name}")
    yield client.get(f"/api/slides/{pid}/annotations")
    yield client.get(f"/api/slides/{pid}/annotations", params={"format": "qupath"})
    yield client.get(f"/api/slides/{pid}/overlays")
    # Errors: unknown tile, bad IIIF request, unknown slide.
    yield client.get(f"/slides/{pid}_files/40/0_0.jpeg")
    yield client.get(f"/iiif/3/{pid}/full/0,0/0/default.jpg")
    yield client.get(f"/api/slides/{pid}/thumbnail", params={"size": 99999})
    yield client.get(f"/api/slides/{pid[:-1]}/thumbnail")


def annotate(client: TestClient, slide_id: str) -> dict[str, Any]:
    """An annotation whose free text names the patient, as a careless user might write."""
    response = client.post(
        f"/api/slides/{slide_id}/annotations",
        json={
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [100, 100]},
            "properties": {"label": PATIENT_NAME, "comment": f"see {ACCESSION}"},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_no_route_of_the_deidentified_view_reaches_an_identifier(client, seeded):
    annotation = annotate(client, seeded.slide_id)
    responses = list(walk(client, seeded))
    responses.append(client.get(f"/api/slides/{seeded.public_id}/annotations/{annotation['id']}"))
    assert len(responses) > 90
    problems = [leak for r in responses for leak in leaks(r, seeded)]
    assert problems == []
    # The same check finds the identifiers where they are meant to be: the owner's view.
    owner = client.get(f"/api/slides/{seeded.slide_id}")
    assert {FILE_NAME, seeded.slide_id} <= {p.split("'")[1] for p in leaks(owner, seeded)}
    # The walk did reach the slide: pixels, metadata and descriptors were served.
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) > 80
    assert {r.headers["content-type"] for r in ok} >= {
        "image/jpeg",
        "image/png",
        "image/webp",
        "application/xml",
        "application/json",
    }


def test_the_deidentified_detail_keeps_only_allow_listed_metadata(client, seeded):
    pid = seeded.public_id
    assert len(pid) == PUBLIC_ID_LENGTH and pid != seeded.slide_id
    detail = client.get(f"/api/slides/{pid}").json()
    assert detail["id"] == detail["name"] == pid
    assert detail["view"] == "deidentified"
    assert detail["associated_images"] == {}
    assert detail["error"] is None
    assert detail["created_at"].startswith(f"{detail['created_at'][:4]}-01-01T00:00:00")
    assert (detail["width"], detail["height"], detail["vendor"]) == (WIDTH, HEIGHT, "aperio")
    assert detail["metadata"] == {
        "vendor": "aperio",
        "width": WIDTH,
        "height": HEIGHT,
        "levels": [[WIDTH, HEIGHT], [WIDTH // 4, HEIGHT // 4]],
        "mpp_x": MPP,
        "mpp_y": MPP,
        "objective_power": APP_MAG,
        "scanner_model": SCANNER_MODEL,
    }
    for key in ("dzi_url", "iiif_url", "thumbnail_url"):
        assert pid in detail[key] and seeded.slide_id not in detail[key]
    info = client.get(f"/iiif/3/{pid}/info.json").json()
    assert info["id"].endswith(f"/iiif/3/{pid}")
    listed = client.get("/api/slides", params={"view": "deidentified"}).json()["items"]
    assert [s["id"] for s in listed] == [pid]


def test_label_and_macro_answer_like_images_that_do_not_exist(client, seeded):
    full_label = client.get(f"/api/slides/{seeded.slide_id}/associated/label")
    assert full_label.status_code == 200
    hidden = {}
    for name in ("label", "macro", "thumbnail", "nothing"):
        response = client.get(f"/api/slides/{seeded.public_id}/associated/{name}")
        assert response.status_code == 404
        hidden[name] = response.json()["detail"].replace(repr(name), "NAME")
    assert len(set(hidden.values())) == 1
    # Revalidating with the full view's ETag must not confirm the label exists (no 304).
    again = client.get(
        f"/api/slides/{seeded.public_id}/associated/label",
        headers={"If-None-Match": full_label.headers["etag"]},
    )
    assert again.status_code == 404 and not again.content.startswith(b"\xff\xd8")


def test_annotations_are_not_shared_through_the_deidentified_view(client, seeded):
    annotate(client, seeded.slide_id)
    listed = client.get(f"/api/slides/{seeded.public_id}/annotations")
    unknown = client.get("/api/slides/nosuchslide0/annotations")
    assert listed.status_code == unknown.status_code == 404
    added = client.post(
        f"/api/slides/{seeded.public_id}/annotations",
        json={"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}},
    )
    assert added.status_code == 404


def test_tiles_of_both_views_are_byte_identical(settings, client, seeded):
    dz = DeepZoom(Size(WIDTH, HEIGHT), 256, 0)
    deidentified = {}
    for z in (dz.z_max, dz.z_max - 1, dz.z_max - 3, 0):
        count = dz.t_count(z)
        for row in range(count.height):
            for col in range(count.width):
                response = client.get(f"/slides/{seeded.public_id}_files/{z}/{col}_{row}.jpeg")
                assert response.status_code == 200
                deidentified[(z, col, row)] = response
    # The full view from a second hub on the same data: its own cache, its own rendering.
    with hub_client(settings) as other:
        for (z, col, row), response in deidentified.items():
            full = other.get(f"/slides/{seeded.slide_id}_files/{z}/{col}_{row}.jpeg")
            assert full.content == response.content, (z, col, row)
            assert full.headers["etag"] == response.headers["etag"]
        thumb_full = other.get(f"/api/slides/{seeded.slide_id}/thumbnail").content
    assert client.get(f"/api/slides/{seeded.public_id}/thumbnail").content == thumb_full


def test_stored_tiles_are_served_without_their_text_segments(settings, client, seeded):
    original = next(settings.home.rglob(FILE_NAME))
    with tifffile.TiffFile(original) as tif:
        page = tif.pages[0]
        with original.open("rb") as f:
            f.seek(page.dataoffsets[0])
            stored = f.read(page.databytecounts[0])
    assert PATIENT_NAME.encode() in stored  # a COM and an EXIF segment name the patient
    dz = DeepZoom(Size(WIDTH, HEIGHT), 256, 0)
    served = client.get(f"/slides/{seeded.public_id}_files/{dz.z_max}/0_0.jpeg")
    # Served as stored (no transcode): the same entropy-coded pixels, minus the text.
    assert served.headers["server-timing"].startswith("stored")
    assert PATIENT_NAME.encode() not in served.content and b"Exif" not in served.content
    assert served.content.endswith(stored[stored.index(b"\xff\xda") :])
    with Image.open(io.BytesIO(served.content)) as a, Image.open(io.BytesIO(stored)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    full = client.get(f"/slides/{seeded.slide_id}_files/{dz.z_max}/0_0.jpeg")
    assert full.content == served.content


def test_the_full_view_still_shows_everything_to_the_owner(client, seeded):
    detail = client.get(f"/api/slides/{seeded.slide_id}").json()
    assert detail["id"] == seeded.slide_id and detail["name"] == FILE_NAME
    assert detail["view"] == "full"
    assert set(detail["associated_images"]) == {"label", "macro", "thumbnail"}
    for name, url in detail["associated_images"].items():
        response = client.get(url)
        assert response.status_code == 200, name
        assert response.headers["content-type"] == "image/jpeg"
    label = client.get(detail["associated_images"]["label"]).content
    macro = client.get(detail["associated_images"]["macro"]).content
    assert label.startswith(b"\xff\xd8") and macro.startswith(b"\xff\xd8") and label != macro
    # The full list does not give away the opaque id: it is handed out per grant.
    listed = client.get("/api/slides").content
    assert seeded.slide_id.encode() in listed and seeded.public_id.encode() not in listed


def test_storage_errors_on_the_deidentified_view_name_no_key(settings, client, seeded):
    original = next((settings.home).rglob(FILE_NAME))
    original.unlink()
    # An uncached, off-grid region: the hub must fetch bytes that are no longer there.
    region = "/iiif/3/{}/100,100,700,500/350,/0/default.jpg"
    hidden = client.get(region.format(seeded.public_id))
    full = client.get(region.format(seeded.slide_id))
    # The reader reports the missing bytes as undecodable data (422).
    assert hidden.status_code == full.status_code == 422
    assert hidden.json() == {"detail": "the slide's data cannot be decoded"}
    assert leaks(hidden, seeded) == []
    # What the generic message hides: the owner's view quotes the storage key.
    assert FILE_NAME in full.json()["detail"]


def test_a_hub_from_before_opaque_ids_gets_them_on_upgrade(settings, client, seeded):
    # The hub's database as create_all made it before migrations and opaque ids existed.
    as_before_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_slides_public_id"))
        conn.execute(sa.text("ALTER TABLE slides DROP COLUMN public_id"))
        conn.execute(sa.text("ALTER TABLE slides DROP COLUMN public_metadata"))
    engine.dispose()
    catalogue = Catalogue.open(settings.database_url)
    slide = catalogue.get(seeded.slide_id)
    assert slide is not None and slide.public_id is not None
    assert len(slide.public_id) == PUBLIC_ID_LENGTH
    found = catalogue.resolve(slide.public_id)
    assert found is not None and found[0].id == seeded.slide_id
    assert found[1].value == "deidentified"
    with hub_client(settings) as upgraded:
        detail = upgraded.get(f"/api/slides/{slide.public_id}").json()
        assert detail["name"] == slide.public_id
        assert detail["metadata"]["mpp_x"] == MPP and "scanner_model" not in detail["metadata"]
