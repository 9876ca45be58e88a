"""Sharing a slide over HTTP: grants, cases, revocation and expiry, on a real hub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.access.policy import DECISION_TTL_S
from exchange.core.models import AuditEvent
from iain.app import create_app
from iain.settings import Settings
from tests.hub import auth_headers, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"
TILE = "_files/9/0_0.jpeg"


@dataclass
class Hub:
    client: TestClient
    lille: dict[str, str]  # a pathologist of Lille, owner of the slide
    rouen: dict[str, str]  # a pathologist of Rouen
    rouen2: dict[str, str]  # another user of Rouen
    resident: dict[str, str]  # a resident of Lille (may not share)
    slide: dict[str, Any]  # as Lille sees it

    def get(self, path: str, who: dict[str, str]) -> Any:
        return self.client.get(path, headers=who)

    def grant(self, who: dict[str, str] | None = None, **body: Any) -> Any:
        # Defaults, overridden by `body`; a None there leaves the field out.
        default = {"slide_id": self.slide["id"], "centre": "rouen", "purpose": "second_opinion"}
        body = {k: v for k, v in (default | body).items() if v is not None}
        return self.client.post("/api/grants", json=body, headers=who or self.lille)

    def audit(self, action: str) -> list[AuditEvent]:
        catalogue = self.client.app.state.hub.catalogue  # type: ignore[attr-defined]
        with catalogue.session() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    slide_id = ingest(settings, sample(SVS), "lille")
    lille = auth_headers(settings, "path.lille", centre="lille")
    rouen = auth_headers(settings, "path.rouen", centre="rouen")
    rouen2 = auth_headers(settings, "tech.rouen", centre="rouen", roles=("technician",))
    resident = auth_headers(settings, "res.lille", centre="lille", roles=("resident",))
    with TestClient(create_app(settings)) as client:
        slide = client.get(f"/api/slides/{slide_id}", headers=lille).json()
        yield Hub(client, lille, rouen, rouen2, resident, slide)


def test_a_grant_shows_rouen_the_deidentified_view_only(hub: Hub) -> None:
    real = hub.slide["id"]
    assert hub.get("/api/slides", hub.rouen).json()["items"] == []
    created = hub.grant(legal_basis="RCP 2026-11")
    assert created.status_code == 201, created.text
    grant = created.json()
    assert (grant["slide_id"], grant["grantee_centre"], grant["live"]) == (real, "rouen", True)

    listed = hub.get("/api/slides", hub.rouen).json()["items"]
    assert len(listed) == 1
    public = listed[0]["id"]
    assert public != real and listed[0]["name"] == public and listed[0]["view"] == "deidentified"
    detail = hub.get(f"/api/slides/{public}", hub.rouen).json()
    assert detail["associated_images"] == {} and real not in str(detail)
    assert hub.get(f"{'/slides/'}{public}{TILE}", hub.rouen).status_code == 200
    # The real id, the label, the annotations: as if they did not exist.
    unknown = hub.get("/api/slides/zzzzzzzzzzzz", hub.rouen)
    for path in (
        f"/api/slides/{real}",
        f"/slides/{real}{TILE}",
        f"/api/slides/{public}/associated/label",
        f"/api/slides/{public}/annotations",
    ):
        assert hub.get(path, hub.rouen).status_code == 404, path
    assert unknown.status_code == 404

    # Each side lists the grant; Rouen sees the opaque id only.
    given = hub.get("/api/grants", hub.lille).json()
    received = hub.get("/api/grants", hub.rouen).json()
    assert [(g["direction"], g["slide_id"]) for g in given] == [("given", real)]
    assert [(g["direction"], g["slide_id"]) for g in received] == [("received", public)]
    assert real not in str(received)
    # Audited in the same transaction: who gave what to whom, why (no patient data).
    [event] = hub.audit("grant")
    assert (event.target_id, event.detail["grant_id"]) == (real, grant["id"])
    assert event.detail["purpose"] == "second_opinion" and event.actor_centre == "lille"


def test_revoking_stops_access_at_once_even_for_cached_tiles(hub: Hub) -> None:
    grant = hub.grant().json()
    public = hub.get("/api/slides", hub.rouen).json()["items"][0]["id"]
    tile = f"/slides/{public}{TILE}"
    for _ in range(2):  # the second is a cache hit, answered by tiles.fastpath
        response = hub.get(tile, hub.rouen)
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("private")
    # Rouen may not revoke what Lille gave; a Lille resident may not either.
    assert hub.client.delete(f"/api/grants/{grant['id']}", headers=hub.rouen).status_code == 404
    assert hub.client.delete(f"/api/grants/{grant['id']}", headers=hub.resident).status_code == 403
    assert hub.audit("revoke") == []

    assert hub.client.delete(f"/api/grants/{grant['id']}", headers=hub.lille).status_code == 204
    assert hub.get(tile, hub.rouen).status_code == 404
    assert hub.get(f"/api/slides/{public}", hub.rouen).status_code == 404
    assert hub.get("/api/slides", hub.rouen).json()["items"] == []
    [event] = hub.audit("revoke")
    assert event.detail["grant_id"] == grant["id"]
    listed = hub.get("/api/grants", hub.lille).json()
    assert listed[0]["revoked_at"] is not None and listed[0]["live"] is False


def test_an_expired_grant_stops_access_within_the_decision_ttl(hub: Hub) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    assert hub.grant(expires_at=expires.isoformat()).status_code == 201
    public = hub.get("/api/slides", hub.rouen).json()["items"][0]["id"]
    tile = f"/slides/{public}{TILE}"
    assert hub.get(tile, hub.rouen).status_code == 200
    deadline = expires + timedelta(seconds=DECISION_TTL_S + 0.5)
    while datetime.now(UTC) < expires:
        assert hub.get(tile, hub.rouen).status_code == 200
        time.sleep(0.2)
    while hub.get(tile, hub.rouen).status_code == 200:
        assert datetime.now(UTC) < deadline, "the expired grant still serves tiles"
        time.sleep(0.2)
    assert hub.get("/api/slides", hub.rouen).json()["items"] == []  # the list asks the database


def test_a_case_granted_to_one_user_shows_its_slides_to_that_user_only(hub: Hub) -> None:
    case = hub.client.post(
        "/api/cases", json={"reference": "C-0042", "organ": "breast"}, headers=hub.lille
    )
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    attach = f"/api/cases/{case_id}/slides/{hub.slide['id']}"
    assert hub.client.put(attach, headers=hub.rouen).status_code == 404  # Lille's case
    assert hub.client.put(attach, headers=hub.resident).status_code == 204  # not shared yet
    assert hub.client.put(attach, headers=hub.lille).status_code == 204
    created = hub.grant(slide_id=None, case_id=case_id, centre=None, user="path.rouen")
    assert created.status_code == 201, created.text
    # Putting a slide into a shared case shares it: only those who may share do.
    placed = hub.client.put(
        f"/api/slides/{hub.slide['id']}/case",
        json={"case_reference": "C-0042", "stain": "HE"},
        headers=hub.resident,
    )
    assert placed.status_code == 403, placed.text
    assert hub.client.put(attach, headers=hub.resident).status_code == 403
    assert created.json()["grantee_user"] == "path.rouen"
    assert len(hub.get("/api/slides", hub.rouen).json()["items"]) == 1
    assert hub.get("/api/slides", hub.rouen2).json()["items"] == []
    assert hub.audit("grant")[0].target_type == "case"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"case_id": "abc"}, 400, "exactly one of 'slide_id' and 'case_id'"),
        ({"user": "path.rouen"}, 400, "exactly one of 'centre' and 'user'"),
        ({"purpose": "curiosity"}, 400, "invalid request"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, 400, "in the past"),
        ({"expires_at": "2099-01-01T00:00:00"}, 400, "time zone"),
        ({"centre": "paris"}, 400, "unknown centre"),
        ({"centre": "lille"}, 400, "own slides already"),
        ({"centre": None, "user": "nobody"}, 400, "unknown user"),
        ({"slide_id": "zzzzzzzzzzzz"}, 404, "no slide"),
        ({"slide_id": "../etc"}, 404, "no such slide"),
    ],
)
def test_bad_grants_are_refused_with_a_reason(
    hub: Hub, body: dict[str, Any], status: int, words: str
) -> None:
    response = hub.grant(**body)
    assert response.status_code == status, response.text
    assert words in response.text
    assert hub.get("/api/grants", hub.lille).json() == []
    assert hub.audit("grant") == []


def test_rouen_cannot_share_lilles_slide_and_a_resident_cannot_share_at_all(hub: Hub) -> None:
    rouen = hub.grant(who=hub.rouen, centre="caen")
    unknown = hub.grant(who=hub.rouen, centre="caen", slide_id="zzzzzzzzzzzz")
    assert (rouen.status_code, unknown.status_code) == (404, 404)
    assert rouen.json()["detail"].split("'")[0] == unknown.json()["detail"].split("'")[0]
    assert hub.grant(who=hub.resident).status_code == 403
    assert hub.audit("grant") == []
