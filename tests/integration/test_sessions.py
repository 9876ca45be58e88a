"""What hospital IT does with login sessions, against real hubs sharing one database: the
failed-login throttle across hub processes and restarts and behind a reverse proxy, pruning
expired sessions, and the admin commands (`iain sessions list|end|prune`,
`iain users disable|enable`) whose effect a running hub sees at the browser's next request."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select
from typer.testing import CliRunner

from exchange.core.models import AuditEvent, LoginFailure, LoginSession
from exchange.identity.accounts import REVOCATION_POLL_S, Identities
from exchange.identity.login import throttle_address
from iain.app import create_app
from iain.cli import cli
from iain.settings import Settings
from tests.browser.hub import free_port

PASSWORD = "lille-slides-2026"
WRONG = {"username": "lille.pathologist", "password": "wrong-guess-1"}
RIGHT = {"username": "lille.pathologist", "password": PASSWORD}


def hub_process(settings: Settings, client: tuple[str, int] = ("192.0.2.10", 50000)) -> TestClient:
    """A hub process of its own (own caches, own throttle) on the shared database; `client` is
    the TCP peer its requests come from."""
    return TestClient(create_app(settings), client=client)


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    with hub_process(settings) as c:
        identities: Identities = c.app.state.hub.identities  # type: ignore[attr-defined]
        identities.add_user("lille.pathologist", "lille", ["pathologist"], password=PASSWORD)
        identities.add_user("rouen.pathologist", "rouen", ["pathologist"], password=PASSWORD)
        yield c


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The `iain` command, run as an admin would: another process's view of the database."""
    monkeypatch.setenv("IAIN_HOME", str(settings.home))
    monkeypatch.setenv("IAIN_DATABASE_URL", settings.database_url)
    return CliRunner()


def audit_rows(client: TestClient, action: str) -> list[AuditEvent]:
    with client.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def login(client: TestClient, username: str = "lille.pathologist") -> str:
    response = client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


# --- The throttle ------------------------------------------------------------------------


def test_the_throttle_holds_across_hub_processes_and_a_restart(
    hub: TestClient, settings: Settings
) -> None:
    # Two failures on one hub process, three on another (a second worker behind the same
    # proxy): the five count together.
    for _ in range(2):
        assert hub.post("/api/login", json=WRONG).status_code == 401
    with hub_process(settings, client=("192.0.2.11", 50000)) as other:
        for _ in range(3):
            assert other.post("/api/login", json=WRONG).status_code == 401
        assert other.post("/api/login", json=RIGHT).status_code == 429
    assert hub.post("/api/login", json=RIGHT).status_code == 429
    # A restarted hub forgives nothing.
    with hub_process(settings, client=("192.0.2.12", 50000)) as restarted:
        refused = restarted.post("/api/login", json=RIGHT)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
        # Another account from another address is not locked out by them.
        login(restarted, "rouen.pathologist")


def test_failures_are_stored_under_keyed_hashes_only(hub: TestClient) -> None:
    typed = "my-secret-passw0rd"  # a password typed into the username field
    assert hub.post("/api/login", json={"username": typed, "password": "x" * 12}).status_code == 401
    with hub.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        keys = list(session.scalars(select(LoginFailure.key)))
    assert len(keys) == 2  # the username and the address
    assert not any(typed in key or "192.0.2.10" in key for key in keys)


def test_the_window_passing_lets_logins_in_again(settings: Settings) -> None:
    settings.login_max_failures = 2
    settings.login_window_s = 1.0
    with hub_process(settings) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "lille.pathologist", "lille", ["pathologist"], password=PASSWORD
        )
        for _ in range(2):
            assert c.post("/api/login", json=WRONG).status_code == 401
        assert c.post("/api/login", json=RIGHT).status_code == 429
        time.sleep(1.1)
        login(c)
        # The old failures were deleted on the way: the table does not grow without end.
        with c.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
            assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0


def proxied(settings: Settings) -> TestClient:
    """A hub behind a reverse proxy at 10.0.0.5, trusted through IAIN_TRUSTED_PROXIES."""
    settings.login_max_failures = 3
    settings.trusted_proxies = Settings(trusted_proxies="10.0.0.0/24").trusted_proxies  # type: ignore[arg-type]
    return hub_process(settings, client=("10.0.0.5", 44000))


def test_behind_a_trusted_proxy_each_client_address_is_throttled_on_its_own(
    settings: Settings,
) -> None:
    with proxied(settings) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        for name in ("someone", "someone.else", "nobody"):
            answer = c.post(
                "/api/login", json={"username": name, "password": "x" * 12}, headers=attacker
            )
            assert answer.status_code == 401
        good = {"username": "caen.pathologist", "password": PASSWORD}
        assert c.post("/api/login", json=good, headers=attacker).status_code == 429
        # The proxy's other clients are not locked out with the attacker...
        assert (
            c.post("/api/login", json=good, headers={"X-Forwarded-For": "198.51.100.9"}).status_code
            == 200
        )
        # ...and the attacker cannot escape by writing addresses of its own in front of the
        # one the proxy appended: the address is read from the right.
        forged = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
        assert c.post("/api/login", json=good, headers=forged).status_code == 429


def test_an_ipv6_client_is_throttled_by_its_slash_64_an_ipv4_one_by_its_address(
    settings: Settings,
) -> None:
    """An IPv6 subscriber usually holds a whole /64: a fresh address per guess must not
    make a fresh throttle key. IPv4 clients (also written as ::ffff:a.b.c.d) stay apart."""
    settings.login_max_failures = 3
    good = {"username": "caen.pathologist", "password": PASSWORD}
    with hub_process(settings, client=("2001:db8:7:1::10", 41000)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )

        def peer(address: str) -> TestClient:
            """Requests to the same hub from another TCP peer."""
            return TestClient(c.app, client=(address, 41000))

        for name in ("someone", "someone.else", "nobody"):
            answer = c.post("/api/login", json={"username": name, "password": "x" * 12})
            assert answer.status_code == 401
        assert peer("2001:db8:7:1:ffff::99").post("/api/login", json=good).status_code == 429
        assert peer("2001:db8:7:2::10").post("/api/login", json=good).status_code == 200

        # An IPv4 client, whichever way its address is written, is itself and no other.
        v4 = peer("::ffff:192.0.2.1")
        for n in range(3):
            answer = v4.post("/api/login", json={"username": f"guess{n}", "password": "x" * 12})
            assert answer.status_code == 401
        assert peer("192.0.2.1").post("/api/login", json=good).status_code == 429
        assert peer("::ffff:192.0.2.2").post("/api/login", json=good).status_code == 200
    assert throttle_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle_address("2001:DB8:7:1::10") == "2001:db8:7:1::/64"


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/24"])
def test_a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(
    settings: Settings, trusted: str
) -> None:
    settings.login_max_failures = 3
    settings.trusted_proxies = Settings(trusted_proxies=trusted).trusted_proxies  # type: ignore[arg-type]
    # The peer is not the proxy: its X-Forwarded-For is the client's own word.
    with hub_process(settings, client=("203.0.113.7", 41000)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )
        for n, name in enumerate(("someone", "someone.else", "nobody")):
            forged = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
            answer = c.post(
                "/api/login", json={"username": name, "password": "x" * 12}, headers=forged
            )
            assert answer.status_code == 401
        good = {"username": "caen.pathologist", "password": PASSWORD}
        fresh = {"X-Forwarded-For": "198.51.100.200"}
        assert c.post("/api/login", json=good, headers=fresh).status_code == 429


def test_trusted_proxies_setting_reads_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IAIN_TRUSTED_PROXIES", "10.0.0.0/8, ::1,192.168.1.7")
    assert [str(n) for n in Settings().trusted_proxies] == [
        "10.0.0.0/8",
        "::1/128",
        "192.168.1.7/32",
    ]
    monkeypatch.setenv("IAIN_TRUSTED_PROXIES", "10.0.0.1/8")  # host bits set: a typo
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings()
    monkeypatch.delenv("IAIN_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []


@pytest.mark.parametrize(("trusted", "fourth"), [("", 429), ("127.0.0.1", 401)])
def test_iain_serve_believes_forwarded_for_only_from_trusted_proxies(
    settings: Settings, tmp_path: Path, trusted: str, fourth: int
) -> None:
    """Under `iain serve`, uvicorn's own proxy-header handling (which trusts 127.0.0.1 by
    default) follows IAIN_TRUSTED_PROXIES too: a local peer's forged X-Forwarded-For does not
    give each attempt an address of its own."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAIN_")} | {
        "IAIN_HOME": str(settings.home),
        "IAIN_DATABASE_URL": settings.database_url,
        "IAIN_LOGIN_MAX_FAILURES": "3",
        "IAIN_TRUSTED_PROXIES": trusted,
        "IAIN_CONVERT_WORKER": "false",
    }
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "iain.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the hub did not start"
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answers = [
            httpx.post(
                url + "/api/login",
                json={"username": f"nobody-{n}", "password": "x" * 12},
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(4)
        ]
        assert answers == [401, 401, 401, fourth]
    finally:
        server.terminate()
        server.wait(10)
        log.close()


# --- Pruning -------------------------------------------------------------------------------


def session_ids(client: TestClient) -> set[str]:
    with client.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        return set(session.scalars(select(LoginSession.id)))


def test_expired_sessions_are_pruned_by_the_hub_at_login(settings: Settings) -> None:
    settings.session_hours = 1 / 3600  # one second
    with hub_process(settings) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "lille.pathologist", "lille", ["pathologist"], password=PASSWORD
        )
        login(c)
        [old] = session_ids(c)
    time.sleep(1.2)
    settings.session_hours = 12.0
    with hub_process(settings) as c:
        login(c)
        ids = session_ids(c)
        assert old not in ids and len(ids) == 1


def test_sessions_prune_command(hub: TestClient, runner: CliRunner) -> None:
    login(hub)
    login(hub, "rouen.pathologist")
    ids = sorted(session_ids(hub))
    catalogue = hub.app.state.hub.catalogue  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with catalogue.session() as session, session.begin():
        expired, ended_long_ago = (session.get(LoginSession, i) for i in ids)
        assert expired is not None and ended_long_ago is not None
        expired.expires_at = now - timedelta(minutes=1)
        ended_long_ago.revoked_at = now - timedelta(hours=2)
    login(hub)  # a live one stays
    live = session_ids(hub) - set(ids)
    hub.post("/api/logout", headers={"X-CSRF-Token": login(hub)})  # ended just now: kept a while
    just_ended = session_ids(hub) - set(ids) - live

    result = runner.invoke(cli, ["sessions", "prune"])
    assert result.exit_code == 0, result.output
    assert "pruned 2 sessions" in result.output
    assert session_ids(hub) == live | just_ended


# --- Admin commands --------------------------------------------------------------------------


def test_sessions_list_shows_who_is_logged_in_without_secrets(
    hub: TestClient, runner: CliRunner
) -> None:
    csrf = login(hub)
    cookie = hub.cookies["iain_session"]
    listed = runner.invoke(cli, ["sessions", "list"])
    assert listed.exit_code == 0, listed.output
    [session_id] = session_ids(hub)
    assert session_id in listed.output and "lille.pathologist" in listed.output
    assert "live" in listed.output
    assert cookie not in listed.output and csrf not in listed.output
    only_rouen = runner.invoke(cli, ["sessions", "list", "rouen.pathologist"])
    assert only_rouen.exit_code == 0 and session_id not in only_rouen.stdout


def test_ending_a_users_sessions_logs_the_browser_out_at_its_next_request(
    hub: TestClient, runner: CliRunner
) -> None:
    login(hub)
    assert hub.get("/api/me").status_code == 200  # now in this hub's 30 s session cache
    with hub_process(hub.app.state.settings, client=("192.0.2.20", 50000)) as rouen:  # type: ignore[attr-defined]
        login(rouen, "rouen.pathologist")

        ended = runner.invoke(cli, ["sessions", "end", "Lille.Pathologist"])
        assert ended.exit_code == 0, ended.output
        assert "ended 1 session of lille.pathologist" in ended.output
        # The command ran in another process: the hub learns of it from the database, at
        # most a second later.
        time.sleep(REVOCATION_POLL_S + 0.1)
        assert hub.get("/api/me").status_code == 401
        assert rouen.get("/api/me").status_code == 200  # another user's session lives on

    [event] = audit_rows(hub, "sessions_ended")
    assert event.actor_id is None and event.detail["via"] == "cli"
    assert len(event.detail["sessions"]) == 1
    listed = runner.invoke(cli, ["sessions", "list", "lille.pathologist"])
    assert "lille.pathologist" not in listed.stdout
    # A fresh login works: ending sessions is not disabling the account.
    login(hub)

    unknown = runner.invoke(cli, ["sessions", "end", "nobody"])
    assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output


def test_disabling_a_user_ends_sessions_revokes_tokens_and_refuses_logins(
    hub: TestClient, runner: CliRunner
) -> None:
    identities: Identities = hub.app.state.hub.identities  # type: ignore[attr-defined]
    _, token = identities.create_token("lille.pathologist", name="script")
    bearer = {"Authorization": f"Bearer {token}"}
    login(hub)
    assert hub.get("/api/me").status_code == 200
    assert hub.get("/api/me", headers=bearer).status_code == 200  # both cached now

    disabled = runner.invoke(cli, ["users", "disable", "lille.pathologist"])
    assert disabled.exit_code == 0, disabled.output
    assert "1 sessions ended, 1 tokens revoked" in disabled.output
    time.sleep(REVOCATION_POLL_S + 0.1)
    assert hub.get("/api/me").status_code == 401
    assert hub.get("/api/me", headers=bearer).status_code == 401
    refused = hub.post("/api/login", json=RIGHT)
    assert refused.status_code == 401 and refused.json() == {"detail": "wrong username or password"}
    listed = runner.invoke(cli, ["users", "list"])
    assert "(inactive)" in listed.output

    enabled = runner.invoke(cli, ["users", "enable", "lille.pathologist"])
    assert enabled.exit_code == 0, enabled.output
    login(hub)
    assert hub.get("/api/me", headers=bearer).status_code == 401  # revoked stays revoked

    events = audit_rows(hub, "user_disabled") + audit_rows(hub, "user_enabled")
    assert [e.action for e in events] == ["user_disabled", "user_enabled"]
    assert events[0].detail["via"] == "cli" and len(events[0].detail["tokens_revoked"]) == 1
    assert all(e.target_id == identities.user("lille.pathologist").id for e in events)  # type: ignore[union-attr]

    again = runner.invoke(cli, ["users", "enable", "lille.pathologist"])
    assert again.exit_code == 0 and "already enabled" in again.output
    missing = runner.invoke(cli, ["users", "disable", "nobody"])
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


# --- Ending a credential while a request is reading it -------------------------------------


@contextmanager
def ended_while_read(engine: Engine, table: str, end: Callable[[], object]) -> Iterator[None]:
    """Runs `end` (in another thread, as a logout's request would) just after the first
    query of `table` by secret hash has read its row, before the reader caches it."""
    fired = threading.Event()

    def after(conn: object, cursor: object, statement: str, *args: object) -> None:
        if fired.is_set() or f"FROM {table}" not in statement or "_hash" not in statement:
            return
        fired.set()
        ender = threading.Thread(target=end)
        ender.start()
        ender.join()

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert fired.is_set()


def test_a_logout_committed_while_a_request_reads_the_session_is_not_undone_by_its_cache(
    hub: TestClient,
) -> None:
    """A request that read the session just before the logout committed answers as it
    found it; but the session it read must not go into the cache after the logout's
    forgetting, or the cookie would work on until the next revocation poll."""
    login(hub)
    cookie = hub.cookies["iain_session"]
    with hub_process(hub.app.state.settings, client=("192.0.2.20", 50000)) as other:  # type: ignore[attr-defined]
        # Another session's lookup fills the cache and polls for ended ones: the next poll
        # is a second away, so only the cache can answer in between.
        login(other, "rouen.pathologist")
        assert other.get("/api/me").status_code == 200
        [lille] = [
            s.id
            for s in other.app.state.hub.sessions.listing("lille.pathologist")  # type: ignore[attr-defined]
        ]
        sessions = other.app.state.hub.sessions  # type: ignore[attr-defined]
        engine = other.app.state.hub.catalogue.engine  # type: ignore[attr-defined]
        browser = TestClient(other.app, cookies={"iain_session": cookie})
        with ended_while_read(engine, "login_sessions", lambda: sessions.end(lille)):
            assert browser.get("/api/me").status_code == 200
        assert browser.get("/api/me").status_code == 401
        engine.dispose()


def test_a_token_revoked_while_a_request_reads_it_is_not_undone_by_its_cache(
    hub: TestClient,
) -> None:
    identities: Identities = hub.app.state.hub.identities  # type: ignore[attr-defined]
    _, first = identities.create_token("rouen.pathologist", name="warm")
    token, secret = identities.create_token("lille.pathologist", name="script")
    with hub_process(hub.app.state.settings) as other:  # type: ignore[attr-defined]
        assert other.get("/api/me", headers={"Authorization": f"Bearer {first}"}).status_code == 200
        mine: Identities = other.app.state.hub.identities  # type: ignore[attr-defined]
        engine = other.app.state.hub.catalogue.engine  # type: ignore[attr-defined]
        bearer = {"Authorization": f"Bearer {secret}"}
        with ended_while_read(engine, "api_tokens", lambda: mine.revoke_token(token.id)):
            assert other.get("/api/me", headers=bearer).status_code == 200
        assert other.get("/api/me", headers=bearer).status_code == 401
        engine.dispose()


# --- Requests racing the revocation poll ---------------------------------------------------


@contextmanager
def poll_held_while(engine: Engine, rival: Callable[[], object]) -> Iterator[None]:
    """While the first revocation poll's query runs, `rival` (another request of the same
    page load) runs in another thread; the poll goes on once it answered, or after 2 s
    (a rival that waits for the poll, as it should, answers after it)."""
    fired = threading.Event()
    answered = threading.Event()

    def run_rival() -> None:
        try:
            rival()
        finally:
            answered.set()

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        if fired.is_set() or "revoked_at >=" not in statement:
            return
        fired.set()
        threading.Thread(target=run_rival).start()
        answered.wait(2.0)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert fired.is_set()
    assert answered.wait(10.0)


@pytest.mark.parametrize("credential", ["session", "token"])
def test_no_request_racing_the_revocation_poll_answers_with_an_ended_credential(
    hub: TestClient, runner: CliRunner, credential: str
) -> None:
    """A page load sends several requests at once (/api/me, /api/slides, /api/centres…).
    Once an end is older than REVOCATION_POLL_S, none of them may still work: the request
    that finds another one polling for revocations waits for that poll's answer instead of
    answering from its cache (it used to, and the page stayed on the worklist with only
    /api/me refused)."""
    identities: Identities = hub.app.state.hub.identities  # type: ignore[attr-defined]
    token, secret = identities.create_token("lille.pathologist", name="script")
    login(hub)
    with hub_process(hub.app.state.settings) as other:  # type: ignore[attr-defined]
        if credential == "session":
            browser = TestClient(other.app, cookies={"iain_session": hub.cookies["iain_session"]})
            end = ["sessions", "end", "lille.pathologist"]
        else:
            browser = TestClient(other.app, headers={"Authorization": f"Bearer {secret}"})
            end = ["tokens", "revoke", token.id]
        assert browser.get("/api/me").status_code == 200  # in `other`'s cache now
        ended = runner.invoke(cli, end)
        assert ended.exit_code == 0, ended.output
        time.sleep(REVOCATION_POLL_S + 0.1)

        statuses: dict[str, int] = {}

        def rival() -> None:
            statuses["rival"] = browser.get("/api/centres").status_code

        engine = other.app.state.hub.catalogue.engine  # type: ignore[attr-defined]
        with poll_held_while(engine, rival):
            statuses["first"] = browser.get("/api/me").status_code
        assert statuses == {"first": 401, "rival": 401}
        engine.dispose()
