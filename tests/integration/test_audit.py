"""The audit trail: events written by real actions (annotations, exports, label views,
grants, views of a shared slide), one chain under concurrent writers, `iain audit verify`
catching an edited, deleted or reordered row, export for the data-protection officer,
retention by pruning that keeps the chain verifiable, and no patient identifier in events
or logs. Runs on the suite's database (IAIN_TEST_DATABASE: SQLite or PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.models import AuditEvent
from exchange.identity.accounts import Identities
from exchange.slides.catalogue import Catalogue
from iain.app import create_app
from iain.cli import cli
from iain.settings import Settings
from tests import database
from tests.hub import auth_headers, ingest
from tests.seeded_slide import FILE_NAME, identifiers, write_seeded_svs

RECTANGLE = {
    "type": "Polygon",
    "coordinates": [[[100, 100], [400, 100], [400, 300], [100, 300], [100, 100]]],
}


@dataclass
class Hub:
    settings: Settings
    app: Any
    lille: TestClient
    rouen: TestClient
    slide_id: str
    public_id: str

    def catalogue(self) -> Catalogue:
        return Catalogue.open(self.settings.database_url)

    def events(self) -> list[AuditEvent]:
        with self.catalogue().session() as session:
            return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))

    def actions(self) -> list[str]:
        return [e.action for e in self.events()]

    def sql(self, statement: str, **params: Any) -> None:
        """Raw SQL, as someone with write access to the database would tamper."""
        with self.catalogue().engine.begin() as conn:
            conn.execute(text(statement), params)

    def cli(self, *args: str) -> tuple[int, str]:
        env = {**database.hub_env(self.settings.home, {}), "COLUMNS": "300"}
        result = CliRunner().invoke(cli, list(args), env=env)
        return result.exit_code, result.output


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = database.settings(tmp_path / "home", tile_cache_mb=16)
    folder = tmp_path / "incoming"
    folder.mkdir()
    slide_id = ingest(settings, write_seeded_svs(folder), "lille")
    slide = Catalogue.open(settings.database_url).get(slide_id)
    assert slide is not None and slide.public_id is not None
    lille_headers = auth_headers(settings, "patho.lille", centre="lille")
    rouen_headers = auth_headers(settings, "patho.rouen", centre="rouen")
    app = create_app(settings)
    with (
        TestClient(app, headers=lille_headers) as lille,
        TestClient(app, headers=rouen_headers) as rouen,
    ):
        yield Hub(settings, app, lille, rouen, slide_id, slide.public_id)


def annotate_export_and_share(hub: Hub) -> None:
    """Lille annotates its slide, exports the annotations, looks at the label, shares the
    slide with Rouen; Rouen opens the de-identified view."""
    base = f"/api/slides/{hub.slide_id}/annotations"
    created = hub.lille.post(base, json={"type": "Feature", "geometry": RECTANGLE})
    assert created.status_code == 201, created.text
    annotation_id = created.json()["id"]
    changed = hub.lille.put(
        f"{base}/{annotation_id}",
        json={"type": "Feature", "geometry": RECTANGLE, "properties": {"version": 1}},
    )
    assert changed.status_code == 200, changed.text
    assert hub.lille.get(base, params={"format": "qupath"}).status_code == 200
    assert hub.lille.delete(f"{base}/{annotation_id}", params={"version": 2}).status_code == 204
    assert hub.lille.get(f"/api/slides/{hub.slide_id}/associated/label").status_code == 200
    granted = hub.lille.post(
        "/api/grants",
        json={"slide_id": hub.slide_id, "centre": "rouen", "purpose": "second_opinion"},
    )
    assert granted.status_code == 201, granted.text
    view_shared_slide(hub, hub.rouen)


def view_shared_slide(hub: Hub, client: TestClient) -> None:
    """What the viewer does: the descriptor, then tiles (several twice: cache hits)."""
    assert client.get(f"/slides/{hub.public_id}.dzi").status_code == 200
    for _ in range(2):
        for level, col, row in ((9, 0, 0), (10, 0, 0), (10, 1, 0), (11, 0, 0), (11, 1, 1)):
            tile = client.get(f"/slides/{hub.public_id}_files/{level}/{col}_{row}.jpeg")
            assert tile.status_code == 200, tile.text


def test_actions_write_their_events_and_the_chain_verifies(hub: Hub) -> None:
    annotate_export_and_share(hub)
    events = hub.events()
    actions = [e.action for e in events]
    for expected in (
        "annotation_create",
        "annotation_update",
        "export_annotations",
        "annotation_delete",
        "view_label",
        "grant",
        "view_shared_slide",
    ):
        assert expected in actions, f"{expected} missing from {actions}"
    users = {e.action: e.actor_id for e in events}
    identities = Identities(hub.catalogue().db)
    lille_user = identities.user("patho.lille")
    rouen_user = identities.user("patho.rouen")
    assert lille_user is not None and rouen_user is not None
    assert users["annotation_create"] == lille_user.id
    assert users["view_label"] == lille_user.id
    assert users["view_shared_slide"] == rouen_user.id
    shared = next(e for e in events if e.action == "view_shared_slide")
    assert shared.target_id == hub.slide_id
    assert shared.detail["purpose"] == "second_opinion"
    assert shared.detail["slide_centre"] == "lille"
    # seq without gaps, each event chained to the one before.
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    code, output = hub.cli("audit", "verify")
    assert code == 0, output
    assert f"chain intact, {len(events)} events" in output
    # What a centre admin reads: who did what, by user name.
    code, output = hub.cli("audit", "show", "--last", "3")
    assert code == 0, output
    lines = [line for line in output.splitlines() if "view_shared_slide" in line]
    assert len(lines) == 1 and "patho.rouen" in lines[0] and "rouen" in lines[0]
    assert "annotation_create" not in output  # older than the last three


def test_a_shared_slide_view_is_one_event_per_user_slide_and_viewing_session(hub: Hub) -> None:
    annotate_export_and_share(hub)
    assert hub.actions().count("view_shared_slide") == 1
    # The same viewing session again (tiles from the cache, the descriptor): nothing new.
    view_shared_slide(hub, hub.rouen)
    assert hub.actions().count("view_shared_slide") == 1
    # Another hub process on the same database, same token: its memory is empty, the
    # database's unique key keeps it to one event.
    with TestClient(create_app(hub.settings), headers=dict(hub.rouen.headers)) as other:
        view_shared_slide(hub, other)
    assert hub.actions().count("view_shared_slide") == 1
    # A new token of the same user is a new viewing session.
    headers = auth_headers(hub.settings, "patho.rouen", centre="rouen")
    with TestClient(hub.app, headers=headers) as again:
        view_shared_slide(hub, again)
    assert hub.actions().count("view_shared_slide") == 2
    # Lille's own views of its slide are not views of a shared slide.
    assert hub.lille.get(f"/slides/{hub.slide_id}.dzi").status_code == 200
    assert hub.actions().count("view_shared_slide") == 2


def test_a_view_of_tiles_the_fast_path_would_answer_is_recorded(hub: Hub) -> None:
    """A client that fetches only a cached tile (no descriptor) views the slide too: the
    fast path leaves the first tile of a viewing session to the route, which records it,
    then answers the following ones itself without writing."""
    tile = "11/0_0.jpeg"
    assert hub.lille.get(f"/slides/{hub.slide_id}_files/{tile}").status_code == 200  # cached
    granted = hub.lille.post(
        "/api/grants",
        json={"slide_id": hub.slide_id, "centre": "rouen", "purpose": "tumour_board"},
    )
    assert granted.status_code == 201, granted.text
    assert hub.rouen.get(f"/slides/{hub.public_id}_files/{tile}").status_code == 200
    views = [e for e in hub.events() if e.action == "view_shared_slide"]
    assert len(views) == 1
    assert views[0].detail["purpose"] == "tumour_board"
    for _ in range(20):
        again = hub.rouen.get(f"/slides/{hub.public_id}_files/{tile}")
        assert again.status_code == 200
        assert again.headers["server-timing"] == "cache"  # the fast path's answer
    assert hub.actions().count("view_shared_slide") == 1


def test_concurrent_writers_form_one_chain(hub: Hub) -> None:
    """Threads appending at once, each in its own transactions: no two events may chain to
    the same predecessor (a fork), and no seq is lost."""
    catalogue = hub.catalogue()
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def append(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with catalogue.session() as session, session.begin():
                    audit.record(session, AuditAction.AUDIT_EXPORT, detail={"thread": n, "i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    events = hub.events()
    assert len(events) == threads * per_thread
    assert len({e.prev_hash for e in events}) == len(events), "two events share a predecessor"
    with catalogue.session() as session:
        result = audit.verify(session)
    assert result.intact, result
    assert result.count == threads * per_thread


def _row(hub: Hub, seq: int) -> dict[str, Any]:
    with hub.catalogue().engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM audit_events WHERE seq = :s"), {"s": seq})
        return dict(row.mappings().one())


def test_tampering_is_detected_and_named(hub: Hub) -> None:
    annotate_export_and_share(hub)
    events = hub.events()
    last = events[-1].seq
    victim = next(e for e in events if e.action == "grant")

    # An edited detail (a grant's purpose changed after the fact).
    original = _row(hub, victim.seq)
    edited = {**victim.detail, "purpose": "teaching"}
    hub.sql(
        "UPDATE audit_events SET detail = :d WHERE seq = :s", d=json.dumps(edited), s=victim.seq
    )
    code, output = hub.cli("audit", "verify")
    assert code == 1
    assert f"chain broken at seq {victim.seq}" in output
    hub.sql(
        "UPDATE audit_events SET detail = :d WHERE seq = :s",
        d=original["detail"]
        if isinstance(original["detail"], str)
        else json.dumps(original["detail"]),
        s=victim.seq,
    )
    code, output = hub.cli("audit", "verify")
    assert code == 0, output

    # A deleted row, then put back.
    hub.sql("DELETE FROM audit_events WHERE seq = :s", s=victim.seq)
    code, output = hub.cli("audit", "verify")
    assert code == 1
    assert f"chain broken at seq {victim.seq}" in output
    _reinsert(hub, original)
    code, output = hub.cli("audit", "verify")
    assert code == 0, output

    # Two rows swapped (reordered).
    hub.sql("UPDATE audit_events SET seq = -1 WHERE seq = 2")
    hub.sql("UPDATE audit_events SET seq = 2 WHERE seq = 3")
    hub.sql("UPDATE audit_events SET seq = 3 WHERE seq = -1")
    code, output = hub.cli("audit", "verify")
    assert code == 1
    assert "chain broken at seq 2" in output
    hub.sql("UPDATE audit_events SET seq = -1 WHERE seq = 3")
    hub.sql("UPDATE audit_events SET seq = 3 WHERE seq = 2")
    hub.sql("UPDATE audit_events SET seq = 2 WHERE seq = -1")
    assert hub.cli("audit", "verify")[0] == 0

    # The newest event deleted: the head still names it.
    tail = _row(hub, last)
    hub.sql("DELETE FROM audit_events WHERE seq = :s", s=last)
    code, output = hub.cli("audit", "verify")
    assert code == 1
    assert f"chain broken at seq {last}" in output
    # Pruning refuses to run over a broken chain (it would remove the evidence).
    code, output = hub.cli("audit", "prune", "--days", "1")
    assert code == 1
    assert "not pruned" in output
    _reinsert(hub, tail)
    assert hub.cli("audit", "verify")[0] == 0


def _reinsert(hub: Hub, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}
    hub.sql(f"INSERT INTO audit_events ({columns}) VALUES ({values})", **params)


def test_prune_removes_old_events_and_the_chain_still_verifies(hub: Hub) -> None:
    annotate_export_and_share(hub)
    before = len(hub.events())
    catalogue = hub.catalogue()
    # Nothing is older than the retention yet: only the prune's own event is added.
    code, output = hub.cli("audit", "prune")
    assert code == 0, output
    assert "0 events older than 3650 days removed" in output
    assert hub.actions()[-1] == "audit_prune"
    # Ten years and a day later, everything but the prune's own event goes.
    later = datetime.now(UTC) + timedelta(days=3651)
    with catalogue.session() as session, session.begin():
        pruned = audit.prune(session, 3650, now=later)
    assert pruned.events == before + 1
    events = hub.events()
    assert [e.action for e in events] == ["audit_prune"]
    assert events[0].detail["events"] == before + 1
    code, output = hub.cli("audit", "verify")
    assert code == 0, output
    assert "chain intact, 1 events" in output
    # New actions chain on; deleting the first kept event is still caught.
    headers = auth_headers(hub.settings, "patho.rouen", centre="rouen")
    with TestClient(hub.app, headers=headers) as new_session:
        view_shared_slide(hub, new_session)
    assert hub.cli("audit", "verify")[0] == 0
    first = events[0].seq
    hub.sql("DELETE FROM audit_events WHERE seq = :s", s=first)
    code, output = hub.cli("audit", "verify")
    assert code == 1
    assert f"chain broken at seq {first}" in output


def test_export_for_the_data_protection_officer(hub: Hub, tmp_path: Path) -> None:
    annotate_export_and_share(hub)
    count = len(hub.events())
    today = datetime.now(UTC).date().isoformat()
    out = tmp_path / "audit.json"
    code, output = hub.cli(
        "audit", "export", "--since", today, "--format", "json", "--out", str(out)
    )
    assert code == 0, output
    rows = json.loads(out.read_text())
    assert len(rows) == count
    assert {r["action"] for r in rows} >= {"grant", "view_shared_slide", "annotation_create"}
    assert rows[0]["seq"] == 1 and rows[0]["detail"] is not None
    # The export is itself an event, with what was exported.
    last = hub.events()[-1]
    assert last.action == "audit_export"
    assert last.detail["count"] == count and last.detail["format"] == "json"

    code, output = hub.cli("audit", "export", "--since", today, "--format", "csv")
    assert code == 0
    lines = output.strip().splitlines()
    assert lines[0].startswith("seq,at,actor_id,actor_centre,action")
    assert len(lines) == count + 2  # header, the events, the JSON export's own event

    # Nothing before the period asked for.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, output = hub.cli("audit", "export", "--since", tomorrow, "--format", "csv")
    assert code == 0 and output.strip().splitlines() == [
        "seq,at,actor_id,actor_centre,action,target_type,target_id,detail,prev_hash,hash"
    ]
    code, output = hub.cli("audit", "export", "--since", "last tuesday")
    assert code == 2
    assert "not a date" in output
    code, output = hub.cli("audit", "export", "--since", today, "--until", "2000-01-01")
    assert code == 2
    assert "--until must come after --since" in output
    code, output = hub.cli("audit", "export", "--since", today, "--out", str(tmp_path / "no" / "x"))
    assert code == 2
    assert "cannot write" in output
    assert hub.cli("audit", "verify")[0] == 0


def test_no_patient_identifier_in_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The seeded slide carries fake identifiers in its file name, label, macro and
    metadata; after a whole flow (ingest, annotate, export, label view, share, shared view,
    a failed login, audit export) none is in any audit row or any log record."""
    settings = database.settings(tmp_path / "home", tile_cache_mb=16)
    folder = tmp_path / "incoming"
    folder.mkdir()
    seeded = write_seeded_svs(folder)  # before capturing: writing it is not the hub's doing
    # Everything at INFO (a hub's usual level), IAIN's own packages down to DEBUG.
    caplog.set_level(logging.INFO)
    for package in ("exchange", "tiles", "storage", "iain"):
        caplog.set_level(logging.DEBUG, logger=package)
    slide_id = ingest(settings, seeded, "lille")
    slide = Catalogue.open(settings.database_url).get(slide_id)
    assert slide is not None and slide.public_id is not None
    app = create_app(settings)
    lille = TestClient(app, headers=auth_headers(settings, "patho.lille", centre="lille"))
    rouen = TestClient(app, headers=auth_headers(settings, "patho.rouen", centre="rouen"))
    with lille, rouen:
        flow = Hub(settings, app, lille, rouen, slide_id, slide.public_id)
        annotate_export_and_share(flow)
        assert rouen.get(f"/api/slides/{slide.public_id}").status_code == 200
        failed = TestClient(app).post(
            "/api/login", json={"username": "nobody", "password": "x" * 8}
        )
        assert failed.status_code in (401, 429)
    code, output = flow.cli("audit", "export", "--since", "2000-01-01", "--format", "json")
    assert code == 0
    events = flow.events()
    assert {"grant", "view_shared_slide", "view_label", "login_failed"} <= {
        e.action for e in events
    }
    rows = "\n".join(json.dumps(_row(flow, e.seq), default=str) for e in events)
    needles = {*identifiers(), FILE_NAME.removesuffix(".svs")}
    for needle in needles:
        for text_ in (needle, needle.lower()):
            assert text_ not in rows, f"{needle!r} in an audit event"
            assert text_ not in output, f"{needle!r} in the audit export"
            assert text_ not in caplog.text, f"{needle!r} in the application logs"
    assert len(caplog.records) > 0  # the logs were captured
