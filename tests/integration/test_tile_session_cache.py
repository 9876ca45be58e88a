"""Browser sessions on the tile fast path: a logged-in viewer's cached tiles are answered
without the framework (tiles/fastpath.py, authenticated through exchange.access.policy's
per-cookie memory), and logging out, or another person's cookie, gets nothing from it.
A real hub on the suite's database, logins through /api/login."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.types import Scope
from typer.testing import CliRunner

from exchange.access.callers import FAST_AUTH_S, MAX_COOKIE_KEY, MAX_REMEMBERED, CallerMemory
from exchange.identity.accounts import REVOCATION_POLL_S, Identities
from iain.app import create_app
from iain.cli import cli
from iain.settings import Settings
from tests import database
from tests.hub import ingest
from tests.seeded_slide import write_seeded_svs

PASSWORD = "caen-slides-2026"
TILE = "11/0_0.jpeg"


@dataclass
class Hub:
    app: object
    settings: Settings
    slide_id: str
    public_id: str


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = database.settings(tmp_path / "home", tile_cache_mb=16)
    folder = tmp_path / "incoming"
    folder.mkdir()
    slide_id = ingest(settings, write_seeded_svs(folder), "caen")
    app = create_app(settings)
    identities: Identities = app.state.hub.identities
    identities.add_user("caen.pathologist", "caen", ["pathologist"], password=PASSWORD)
    identities.add_user("lille.pathologist", "lille", ["pathologist"], password=PASSWORD)
    identities.add_user("caen.teacher", "caen", ["teacher"], password=PASSWORD)
    slide = app.state.hub.catalogue.get(slide_id)
    assert slide is not None and slide.public_id is not None
    yield Hub(app, settings, slide_id, slide.public_id)


def logged_in(hub: Hub, username: str) -> tuple[TestClient, str]:
    """A browser (cookie jar) logged in as `username`, and its CSRF token."""
    client = TestClient(hub.app)  # type: ignore[arg-type]
    response = client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return client, csrf


def test_a_sessions_cached_tiles_come_from_the_fast_path_until_it_logs_out(hub: Hub) -> None:
    browser, csrf = logged_in(hub, "caen.pathologist")
    url = f"/slides/{hub.slide_id}_files/{TILE}"
    first = browser.get(url)
    assert first.status_code == 200
    for _ in range(5):
        again = browser.get(url)
        assert again.status_code == 200 and again.content == first.content
        assert again.headers["server-timing"] == "cache"
    assert browser.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    # The very next request: the session is over, cached tile or not.
    assert browser.get(url).status_code == 401


def test_a_cached_tile_is_not_served_to_another_sessions_cookie(hub: Hub) -> None:
    caen, _ = logged_in(hub, "caen.pathologist")
    url = f"/slides/{hub.slide_id}_files/{TILE}"
    assert caen.get(url).status_code == 200
    assert caen.get(url).headers["server-timing"] == "cache"
    # Another centre, no grant: the same 404 as an unknown slide.
    lille, _ = logged_in(hub, "lille.pathologist")
    refused = lille.get(url)
    assert refused.status_code == 404
    unknown = "z" * len(hub.slide_id)
    assert refused.json() == {"detail": f"no slide {hub.slide_id!r}"}
    assert lille.get(f"/slides/{unknown}_files/{TILE}").json() == {
        "detail": f"no slide {unknown!r}"
    }
    # A teacher of Caen sees only the de-identified view: not by the real id, by the opaque.
    teacher, _ = logged_in(hub, "caen.teacher")
    assert teacher.get(url).status_code == 404
    deid = teacher.get(f"/slides/{hub.public_id}_files/{TILE}")
    assert deid.status_code == 200 and deid.content == caen.get(url).content
    # A forged cookie that is not a session: no caller.
    stranger = TestClient(hub.app, cookies={"iain_session": "not-a-session"})  # type: ignore[arg-type]
    assert stranger.get(url).status_code == 401


def test_a_user_disabled_by_another_process_loses_cached_tiles_within_a_poll(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`iain users disable` (another process's view of the database) ends the user's
    sessions and revokes their tokens: the fast path, which remembers a caller, stops
    answering both once this hub has polled for revocations."""
    browser, _ = logged_in(hub, "caen.pathologist")
    identities: Identities = hub.app.state.hub.identities  # type: ignore[attr-defined]
    _, token = identities.create_token("caen.pathologist", name="script")
    script = TestClient(hub.app, headers={"Authorization": f"Bearer {token}"})  # type: ignore[arg-type]
    url = f"/slides/{hub.slide_id}_files/{TILE}"
    for client in (browser, script):
        assert client.get(url).status_code == 200
        assert client.get(url).headers["server-timing"] == "cache"

    monkeypatch.setenv("IAIN_HOME", str(hub.settings.home))
    monkeypatch.setenv("IAIN_DATABASE_URL", hub.settings.database_url)
    disabled = CliRunner().invoke(cli, ["users", "disable", "caen.pathologist"])
    assert disabled.exit_code == 0, disabled.output
    ended = time.monotonic()
    bound = REVOCATION_POLL_S + 1.0  # the last term: a slow test machine
    for client in (browser, script):
        while client.get(url).status_code == 200:
            assert time.monotonic() - ended < bound, "cached tiles still served"
            time.sleep(0.05)
        assert client.get(url).status_code == 401


def session_cookie(hub: Hub, username: str) -> str:
    """A logged-in session's cookie value, to be sent by hand."""
    browser, _ = logged_in(hub, username)
    value: str | None = browser.cookies.get("iain_session")
    assert value
    return value


def test_a_caller_sent_over_several_cookie_headers_is_never_remembered_for_one(
    hub: Hub,
) -> None:
    """HTTP/2 sends each cookie as a Cookie header of its own, and authentication merges
    them: the fast path must not remember the caller under one of those headers (then a
    request bearing only `lang=fr`, or another person's session beside it, would be served
    as the first caller)."""
    lille = session_cookie(hub, "lille.pathologist")
    caen = session_cookie(hub, "caen.pathologist")
    url = f"/slides/{hub.slide_id}_files/{TILE}"
    raw = TestClient(hub.app)  # type: ignore[arg-type]  # no cookie jar: headers as written
    assert raw.get(url, headers=[("cookie", f"iain_session={caen}")]).status_code == 200
    for first, second, answer in (
        (lille, caen, 200),  # caen's session read last: caen (its tile is cached by now)
        (caen, lille, 404),  # lille's: a slide of Caen lille may not see
    ):
        for _ in range(3):
            got = raw.get(
                url, headers=[("cookie", "lang=fr"), ("cookie", f"iain_session={second}")]
            )
            assert got.status_code == answer
            both = raw.get(
                url,
                headers=[("cookie", f"iain_session={first}"), ("cookie", f"iain_session={second}")],
            )
            assert both.status_code == answer
            # No session cookie at all: nobody, whatever came before.
            assert raw.get(url, headers=[("cookie", "lang=fr")]).status_code == 401
            assert raw.get(url, headers=[("cookie", f"iain_session={first}; x=1")]).status_code == (
                404 if first == lille else 200
            )
    assert raw.get("/api/me", headers=[("cookie", "lang=fr")]).status_code == 401


def request_scope(hub: Hub, cookie: bytes) -> Scope:
    """A raw ASGI request for a tile of the hub's slide, as the fast path sees it."""
    return {
        "type": "http",
        "method": "GET",
        "path": f"/slides/{hub.slide_id}_files/{TILE}",
        "query_string": b"",
        "headers": [(b"cookie", cookie)],
        "app": hub.app,
    }


def test_the_fast_paths_memory_of_callers_stays_bounded(hub: Hub) -> None:
    """One valid session with ever-changing junk cookies beside it (each request a new
    Cookie header): served every time, never more than a bounded memory."""
    session = session_cookie(hub, "caen.pathologist")
    memory: CallerMemory = hub.app.state.hub.callers  # type: ignore[attr-defined]
    scope_locator = hub.app.state.scope_locator  # type: ignore[attr-defined]
    for n in range(2 * MAX_REMEMBERED + 10):
        scope = request_scope(hub, f"junk={n}; iain_session={session}".encode())
        locator = scope_locator(scope)
        assert locator is not None and locator.locate(hub.slide_id) is not None
        assert len(memory.cookies) <= MAX_REMEMBERED
    # A header too long to be remembered is authenticated afresh, each time.
    memory.cookies.clear()
    long = f"junk={'j' * MAX_COOKIE_KEY}; iain_session={session}".encode()
    for _ in range(2):
        locator = scope_locator(request_scope(hub, long))
        assert locator is not None and locator.locate(hub.slide_id) is not None
    assert memory.cookies == {}
    browser = TestClient(hub.app, cookies={"junk": "j" * MAX_COOKIE_KEY, "iain_session": session})  # type: ignore[arg-type]
    assert browser.get(f"/slides/{hub.slide_id}_files/{TILE}").status_code == 200
    assert memory.cookies == {}


def test_the_fast_paths_memory_adds_no_delay_to_the_revocation_poll(hub: Hub) -> None:
    """Remembering a caller for FAST_AUTH_S must not stack on top of the poll: a session
    ended elsewhere right after a poll, whose cookie the fast path authenticates again (from
    the session cache) just before the next one, gets no tile once the end is older than
    REVOCATION_POLL_S (it used to work for up to FAST_AUTH_S more)."""
    browser, _ = logged_in(hub, "caen.pathologist")
    url = f"/slides/{hub.slide_id}_files/{TILE}"
    assert browser.get(url).status_code == 200
    [row] = hub.app.state.hub.sessions.listing("caen.pathologist")  # type: ignore[attr-defined]
    elsewhere = create_app(hub.settings)  # another hub process on the same database
    time.sleep(max(FAST_AUTH_S, REVOCATION_POLL_S) + 0.1)  # the memory is stale, a poll due
    polled = time.monotonic()
    assert browser.get("/api/me").status_code == 200  # this request polls
    assert elsewhere.state.hub.sessions.end(row.id)
    ended = time.monotonic()
    time.sleep(max(0.0, polled + 0.6 * REVOCATION_POLL_S - time.monotonic()))
    # Before the next poll: the fast path authenticates the cookie again, from the cache.
    before_next_poll = browser.get(url)
    assert before_next_poll.status_code in (200, 401)
    time.sleep(max(0.0, ended + REVOCATION_POLL_S + 0.2 - time.monotonic()))
    assert browser.get(url).status_code == 401
    assert browser.get("/api/me").status_code == 401
