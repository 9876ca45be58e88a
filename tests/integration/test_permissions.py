"""The permission matrix, generated: every role x relation to the slide's centre x address
(its id, its opaque id) x resource and action, against one real hub.

The expected answer comes from the rules as README.md states them, written out here
independently of exchange.access.policy: a call the rules refuse must get its status (404 for a
slide the caller may not see, 403 for an action their role may not do) and change
nothing (annotations, overlays, grants, audit rows); an allowed write must write exactly
what it says, and a grant or revocation exactly one audit row."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.core.models import Annotation, AuditEvent, Grant, Overlay, Slide, Upload
from exchange.slides.catalogue import Catalogue
from iain.app import create_app
from iain.settings import Settings
from tests import database
from tests.hub import auth_headers, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"  # has a label image
OWNER = "lille"  # every slide of the matrix belongs to Lille
OTHER = "rouen"  # the other centre's users; grants go to it

ROLES = (
    "pathologist",
    "resident",
    "technician",
    "teacher",
    "ai_engineer",
    "centre_admin",
    "hub_admin",
)
RELATIONS = ("own", "granted", "not_granted", "revoked", "expired")
ADDRESSES = ("id", "opaque_id")
RESOURCES = (
    "list",
    "metadata",
    "dzi",
    "tile",
    "iiif_info",
    "iiif_image",
    "iiif_tile",
    "thumbnail",
    "associated_label",
    "annotations_read",
    "annotation_write",
    "overlays_read",
    "overlay_write",
    "grant_create",
    "grant_revoke",
)

# The rules (README.md, "Access rules"), independent of the code under test.
FULL_VIEW = {"pathologist", "resident", "technician", "centre_admin"}
SEES_SLIDES = FULL_VIEW | {"teacher", "ai_engineer"}
ANNOTATE = {"pathologist", "resident"}
WRITE_OVERLAYS = {"pathologist", "resident", "technician"}
GRANT = {"pathologist", "centre_admin"}

FEATURE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [100.0, 100.0]},
    "properties": {"label": "mitosis"},
}
FEATURES = {
    "name": "cells",
    "features": [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [50.0, 50.0]},
            "properties": {"class": "tumour"},
        }
    ],
}


@dataclass
class Matrix:
    client: TestClient
    catalogue: Catalogue
    settings: Settings
    slides: dict[str, Slide]  # relation -> slide (all of Lille)
    tokens: dict[tuple[str, str], dict[str, str]]  # (centre, role) -> auth headers
    admin: dict[str, str]  # a pathologist of Lille: sets grants up

    def headers(self, role: str, relation: str) -> dict[str, str]:
        return self.tokens[(OWNER if relation == "own" else OTHER, role)]


def _grant(client: TestClient, headers: dict[str, str], slide_id: str, **extra: Any) -> str:
    body = {"slide_id": slide_id, "centre": OTHER, "purpose": "second_opinion", **extra}
    response = client.post("/api/grants", json=body, headers=headers)
    assert response.status_code == 201, response.text
    grant_id: str = response.json()["id"]
    return grant_id


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    home: Path = tmp_path_factory.mktemp("matrix") / "home"
    settings = database.settings(home, tile_cache_mb=16)
    slide_ids = {relation: ingest(settings, sample(SVS), OWNER) for relation in RELATIONS}
    tokens = {
        (centre, role): auth_headers(settings, f"{role}.{centre}", centre=centre, roles=(role,))
        for centre in (OWNER, OTHER)
        for role in ROLES
    }
    admin = tokens[(OWNER, "pathologist")]
    with TestClient(create_app(settings)) as client:
        catalogue: Catalogue = client.app.state.hub.catalogue  # type: ignore[attr-defined]
        _grant(client, admin, slide_ids["granted"])
        revoked = _grant(client, admin, slide_ids["revoked"])
        assert client.delete(f"/api/grants/{revoked}", headers=admin).status_code == 204
        soon = datetime.now(UTC) + timedelta(seconds=1)
        _grant(client, admin, slide_ids["expired"], expires_at=soon.isoformat())
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
        # The owner has fetched everything once: the tile cache (and the fast path) hold
        # the tiles, so a refused caller is refused on a cache hit too.
        for slide_id in slide_ids.values():
            assert client.get(f"/slides/{slide_id}_files/9/0_0.jpeg", headers=admin).is_success
        slides = {r: s for r, i in slide_ids.items() if (s := catalogue.get(i)) is not None}
        yield Matrix(client, catalogue, settings, slides, tokens, admin)


# -- the expected answers ---------------------------------------------------------------


def sees(role: str, relation: str, address: str) -> bool:
    if role not in SEES_SLIDES:
        return False
    if relation == "own":
        return address == "opaque_id" or role in FULL_VIEW
    return relation == "granted" and address == "opaque_id"


def full(role: str, relation: str, address: str) -> bool:
    return relation == "own" and address == "id" and role in FULL_VIEW


def expected_status(resource: str, role: str, relation: str, address: str) -> int:
    visible = sees(role, relation, address)
    on_full = full(role, relation, address)
    if resource in ("metadata", "dzi", "tile", "iiif_info", "iiif_image", "iiif_tile", "thumbnail"):
        return 200 if visible else 404
    if resource in ("associated_label", "annotations_read", "overlays_read"):
        return 200 if on_full else 404
    if resource == "annotation_write":
        return (201 if role in ANNOTATE else 403) if on_full else 404
    if resource == "overlay_write":
        return (201 if role in WRITE_OVERLAYS else 403) if on_full else 404
    if resource == "grant_create":
        # Sharing is for roles that share; they share their own centre's slides, by id.
        if role not in GRANT:
            return 403
        return 201 if relation == "own" and address == "id" else 404
    if resource == "grant_revoke":
        # Only the giving centre knows the grant exists; there, only sharing roles revoke.
        if relation != "own":
            return 404
        return 204 if role in GRANT else 403
    raise AssertionError(resource)


# -- the state a refused call must leave unchanged ----------------------------------------


def state(catalogue: Catalogue) -> dict[str, Any]:
    with catalogue.session() as session:
        count = session.scalar
        return {
            "annotations": count(select(func.count()).select_from(Annotation)),
            "overlays": count(select(func.count()).select_from(Overlay)),
            "grants": count(select(func.count()).select_from(Grant)),
            "revoked": count(
                select(func.count()).select_from(Grant).where(Grant.revoked_at.is_not(None))
            ),
            "audit": Counter(session.scalars(select(AuditEvent.action))),
        }


def call(
    m: Matrix, resource: str, role: str, relation: str, address: str
) -> tuple[httpx.Response, list[str]]:
    slide = m.slides[relation]
    addr = slide.id if address == "id" else slide.public_id
    headers = m.headers(role, relation)
    c = m.client
    notes: list[str] = []
    paths = {
        "metadata": f"/api/slides/{addr}",
        "dzi": f"/slides/{addr}.dzi",
        "tile": f"/slides/{addr}_files/9/0_0.jpeg",
        "iiif_info": f"/iiif/3/{addr}/info.json",
        "iiif_image": f"/iiif/3/{addr}/full/64,/0/default.jpg",
        # A tile of the stored grid: answered by the fast path once cached (tiles.fastpath).
        "iiif_tile": f"/iiif/3/{addr}/0,0,256,256/256,256/0/default.jpg",
        "thumbnail": f"/api/slides/{addr}/thumbnail?size=64",
        "associated_label": f"/api/slides/{addr}/associated/label",
        "annotations_read": f"/api/slides/{addr}/annotations",
        "overlays_read": f"/api/slides/{addr}/overlays",
    }
    if resource in paths:
        return c.get(paths[resource], headers=headers), notes
    if resource == "annotation_write":
        return c.post(f"/api/slides/{addr}/annotations", json=FEATURE, headers=headers), notes
    if resource == "overlay_write":
        return c.post(f"/api/slides/{addr}/overlays", json=FEATURES, headers=headers), notes
    if resource == "grant_create":
        body = {"slide_id": addr, "centre": "caen", "purpose": "teaching"}
        return c.post("/api/grants", json=body, headers=headers), notes
    if resource == "grant_revoke":
        # To Caen: a grant to Rouen would share the slide with the other cases' callers.
        grant_id = _grant(c, m.admin, slide.id, purpose="tumour_board", centre="caen")
        notes.append(grant_id)
        return c.delete(f"/api/grants/{grant_id}", headers=headers), notes
    raise AssertionError(resource)


CASES = [
    (resource, role, relation, address)
    for resource in RESOURCES
    if resource not in ("list", "grant_revoke")
    for role in ROLES
    for relation in RELATIONS
    for address in ADDRESSES
] + [
    ("grant_revoke", role, relation, "id") for role in ROLES for relation in ("own", "not_granted")
]


@pytest.mark.parametrize(("resource", "role", "relation", "address"), CASES)
def test_permission(matrix: Matrix, resource: str, role: str, relation: str, address: str) -> None:
    expected = expected_status(resource, role, relation, address)
    before = state(matrix.catalogue)
    response, notes = call(matrix, resource, role, relation, address)
    if notes:  # grant_revoke set a grant up first (one grant, one audit row)
        before = _plus(before, grants=1, audit={"grant": 1})
    assert response.status_code == expected, response.text
    after = state(matrix.catalogue)
    if expected >= 400:
        # Refused: the same body as an unknown id, and nothing changed, audit included.
        body = response.json()
        assert set(body) == {"detail"}
        if expected == 404 and not sees(role, relation, address) and resource != "grant_revoke":
            unknown = _unknown_answer(matrix, resource, role, relation)
            assert (response.status_code, _shape(body)) == unknown
        assert after == before
        return
    # Allowed: only what the call says was written.
    if resource in ("annotation_write", "overlay_write"):
        kind = resource.removesuffix("_write")
        grew = _plus(before, annotations=1) if kind == "annotation" else _plus(before, overlays=1)
        assert _counts(after) == _counts(grew)
        # Annotation and overlay changes are audited (exchange.audit.chain): at most one event,
        # of that kind.
        added = after["audit"] - before["audit"]
        assert sum(added.values()) <= 1 and all(a.startswith(kind) for a in added), added
    elif resource == "grant_create":
        assert after == _plus(before, grants=1, audit={"grant": 1})
    elif resource == "grant_revoke":
        assert after == _plus(before, revoked=1, audit={"revoke": 1})
    else:
        # A read: nothing but view events (exchange.audit.chain) may be added.
        assert _counts(after) == _counts(before)
        added = after["audit"] - before["audit"]
        assert set(added) <= {"view_shared_slide", "view_label", "view_associated"}, added
    if resource == "tile":
        assert response.headers["cache-control"].startswith("private")
        # The second fetch is a cache hit (tiles.fastpath): still this caller's.
        again = matrix.client.get(response.request.url.path, headers=matrix.headers(role, relation))
        assert again.status_code == 200 and again.content == response.content


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("centre", [OWNER, OTHER])
def test_slide_list(matrix: Matrix, role: str, centre: str) -> None:
    """The list shows each slide under the address the caller may use, and no other."""
    listed = matrix.client.get("/api/slides", headers=matrix.tokens[(centre, role)])
    assert listed.status_code == 200
    ids: set[str | None] = {s["id"] for s in listed.json()["items"]}
    expected: set[str | None] = set()
    for relation, slide in matrix.slides.items():
        # Every matrix slide is Lille's; the "own" one is not shared with Rouen.
        rel = "own" if centre == OWNER else ("not_granted" if relation == "own" else relation)
        if sees(role, rel, "id"):
            expected.add(slide.id)
        elif sees(role, rel, "opaque_id"):
            expected.add(slide.public_id)
    assert ids == expected
    for item in listed.json()["items"]:
        if item["id"] != item.get("name") and item["view"] == "deidentified":
            raise AssertionError(f"a de-identified entry shows a name: {item}")


def test_anonymous_calls_get_401_and_health_answers(matrix: Matrix) -> None:
    slide = matrix.slides["own"]
    for path in (
        "/api/slides",
        "/api/centres",
        f"/api/slides/{slide.id}",
        f"/slides/{slide.id}.dzi",
        f"/slides/{slide.id}_files/9/0_0.jpeg",  # a cache hit for the owner
        f"/iiif/3/{slide.id}/info.json",
        f"/api/slides/{slide.id}/thumbnail",
        f"/api/slides/{slide.id}/annotations",
        "/api/grants",
    ):
        response = matrix.client.get(path)
        assert response.status_code == 401, path
        assert set(response.json()) == {"detail"}
    assert matrix.client.get("/api/health").json()["status"] == "ok"


# -- helpers ----------------------------------------------------------------------------


def _plus(
    before: dict[str, Any], audit: dict[str, int] | None = None, **counts: int
) -> dict[str, Any]:
    out = dict(before)
    for key, n in counts.items():
        out[key] = before[key] + n
    out["audit"] = before["audit"] + Counter(audit or {})
    return out


def _counts(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "audit"}


def _shape(body: dict[str, Any]) -> str:
    # The message names the id asked for: compare it with that id masked.
    return str(body["detail"]).split("'")[0]


def _unknown_answer(m: Matrix, resource: str, role: str, relation: str) -> tuple[int, str]:
    """What the same call on an id that exists nowhere gets."""
    fake = Slide(id="zzzzzzzzzzzz", public_id="z" * 24)
    saved = m.slides[relation]
    m.slides[relation] = fake
    try:
        response, _ = call(m, resource, role, relation, "id")
    finally:
        m.slides[relation] = saved
    return response.status_code, _shape(response.json())


UPLOAD_ROLES = {"pathologist", "resident", "technician", "centre_admin"}
UPLOAD_BODY = {"centre": OWNER, "files": [{"path": "a.svs", "size": 10, "sha256": "0" * 64}]}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("centre", [OWNER, OTHER])
def test_uploads_go_to_ones_own_centre_by_roles_that_upload(
    matrix: Matrix, role: str, centre: str
) -> None:
    """Starting an upload into Lille: Lille's uploading roles only; an upload is unknown
    (404) to every other centre, and a refused start leaves no upload behind."""
    c, headers = matrix.client, matrix.tokens[(centre, role)]
    before = _uploads(matrix)
    started = c.post("/api/uploads", json=UPLOAD_BODY, headers=headers)
    if centre != OWNER or role not in UPLOAD_ROLES:
        assert started.status_code == 403, started.text
        assert _uploads(matrix) == before
        return
    assert started.status_code == 201, started.text
    upload = started.json()["id"]
    other = matrix.tokens[(OTHER, "pathologist")]
    for method in ("GET", "DELETE"):
        assert c.request(method, f"/api/uploads/{upload}", headers=other).status_code == 404
    assert c.get(f"/api/uploads/{upload}", headers=headers).json()["centre"] == OWNER
    assert c.delete(f"/api/uploads/{upload}", headers=headers).status_code == 204


def _uploads(m: Matrix) -> int:
    with m.catalogue.session() as session:
        return int(session.scalar(select(func.count()).select_from(Upload)) or 0)
