"""Password login, browser sessions and CSRF, failed-login throttling, and the users/tokens
commands, against a real hub (SQLite under a temporary IAIN_HOME)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from exchange.core.models import AuditEvent, LoginSession, User
from exchange.identity.accounts import Identities, hash_secret
from iain.app import create_app
from iain.cli import cli
from iain.demo import DEMO_USERS, prepare_demo
from iain.settings import Settings

PASSWORD = "lille-slides-2026"


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        identities: Identities = c.app.state.hub.identities  # type: ignore[attr-defined]
        identities.add_user(
            "lille.pathologist", "lille", ["pathologist"], password=PASSWORD, display_name="Dr L"
        )
        identities.add_user("rouen.pathologist", "rouen", ["pathologist"], password=PASSWORD)
        yield c


def audit_rows(client: TestClient, *actions: str) -> list[AuditEvent]:
    catalogue = client.app.state.hub.catalogue  # type: ignore[attr-defined]
    with catalogue.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.seq)
            )
        )


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def test_login_sets_a_hardened_cookie_and_me_names_the_user(hub: TestClient) -> None:
    response = hub.post("/api/login", json={"username": "Lille.Pathologist", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "lille.pathologist"
    assert body["user"]["centre"] == "lille"
    assert body["user"]["roles"] == ["pathologist"]
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("iain_session=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    # Development over plain http: a Secure cookie would never come back.
    assert "secure" not in cookie

    me = hub.get("/api/me")
    assert me.status_code == 200
    assert me.json()["user"]["display_name"] == "Dr L"
    assert me.json()["csrf_token"] == body["csrf_token"]
    assert me.json()["auth"] == "session"

    [event] = audit_rows(hub, "login")
    assert event.actor_centre == "lille" and event.detail["method"] == "password"


def test_only_the_hash_of_the_cookie_is_stored(hub: TestClient) -> None:
    login(hub, "lille.pathologist")
    secret = hub.cookies["iain_session"]
    catalogue = hub.app.state.hub.catalogue  # type: ignore[attr-defined]
    with catalogue.session() as session:
        [row] = session.scalars(select(LoginSession)).all()
    assert row.secret_hash == hash_secret(secret) and secret not in row.secret_hash


def test_a_write_with_the_cookie_needs_the_csrf_token(hub: TestClient) -> None:
    csrf = login(hub, "lille.pathologist")
    assert hub.post("/api/logout").status_code == 403
    refused = hub.post("/api/logout", headers={"X-CSRF-Token": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert hub.get("/api/me").status_code == 200  # still logged in

    cookie = hub.cookies["iain_session"]
    assert hub.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    # The cookie is gone from the browser, and the session is over even if it is replayed
    # (logging out clears the session cache at once).
    assert hub.get("/api/me").status_code == 401
    hub.cookies.set("iain_session", cookie)
    assert hub.get("/api/me").status_code == 401
    assert [e.action for e in audit_rows(hub, "login", "logout")] == ["login", "logout"]


def test_bearer_token_calls_are_exempt_from_csrf(hub: TestClient) -> None:
    identities: Identities = hub.app.state.hub.identities  # type: ignore[attr-defined]
    _, secret = identities.create_token("rouen.pathologist", name="script")
    response = hub.post("/api/logout", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.json() == {"logged_out": False}
    me = hub.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json()["user"]["centre"] == "rouen" and me.json()["auth"] == "token"


def test_failed_logins_are_audited_then_throttled_per_username(hub: TestClient) -> None:
    for _ in range(5):
        response = hub.post(
            "/api/login", json={"username": "lille.pathologist", "password": "wrong-guess-1"}
        )
        assert response.status_code == 401
        assert response.json() == {"detail": "wrong username or password"}
    # The right password does not help while the username is throttled.
    blocked = hub.post("/api/login", json={"username": "lille.pathologist", "password": PASSWORD})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 300
    assert "iain_session" not in hub.cookies

    failures = audit_rows(hub, "login_failed")
    assert [e.detail["reason"] for e in failures] == ["bad_credentials"] * 5 + ["rate_limited"]
    assert all(e.target_id == "lille.pathologist" for e in failures)
    assert all(e.actor_centre == "lille" for e in failures)
    # Never a password in the audit trail.
    assert not any("wrong-guess-1" in str(e.detail) or PASSWORD in str(e.detail) for e in failures)
    # Another user is not locked out by these failures... unless they share the address:
    # the test client is one address, so it is throttled too (see the next test).


def test_failed_logins_are_throttled_per_address(settings: Settings) -> None:
    settings.login_max_failures = 3
    with TestClient(create_app(settings)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )
        for name in ("someone", "someone.else", "nobody"):
            answer = c.post("/api/login", json={"username": name, "password": "x" * 12})
            assert answer.status_code == 401
        answer = c.post("/api/login", json={"username": "caen.pathologist", "password": PASSWORD})
        assert answer.status_code == 429


def test_parallel_guesses_get_no_more_password_checks_than_the_limit(settings: Settings) -> None:
    """A burst of guesses sent at once (one thread each) must not all slip past the
    throttle before the first failure is written: at most `login_max_failures` of them
    get their password checked (401), the others are refused (429)."""
    settings.login_max_failures = 5
    with TestClient(create_app(settings)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "lille.pathologist", "lille", ["pathologist"], password=PASSWORD
        )
        start = threading.Barrier(24)

        def guess(n: int) -> int:
            start.wait()
            body = {"username": "lille.pathologist", "password": f"wrong-guess-{n}"}
            status: int = c.post("/api/login", json=body).status_code
            return status

        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(guess, range(24)))
        # Up to 15 pooled connections: given back now, not whenever the app is collected.
        c.app.state.hub.catalogue.engine.dispose()  # type: ignore[attr-defined]
        assert set(answers) <= {401, 429}
        assert answers.count(401) <= 5
        # The failures that were checked are what counts next: five lock the account.
        checked = answers.count(401)
        later = c.post("/api/login", json={"username": "lille.pathologist", "password": PASSWORD})
        assert later.status_code == (429 if checked == 5 else 200)


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(hub: TestClient) -> None:
    typed = "my-secret-passw0rd"  # typed into the username field by mistake
    response = hub.post("/api/login", json={"username": typed, "password": "whatever-12"})
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong username or password"}
    # Audited, but what was typed is not kept: it may be a password.
    [event] = audit_rows(hub, "login_failed")
    assert event.detail["known_user"] is False
    assert typed not in f"{event.target_id} {event.detail}"
    assert hub.post("/api/login", json={"username": ""}).status_code == 400


def test_an_expired_session_is_refused(settings: Settings) -> None:
    settings.session_hours = 1 / 3600  # one second
    with TestClient(create_app(settings)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )
        login(c, "caen.pathologist")
        assert c.get("/api/me").status_code == 200
        time.sleep(1.2)
        assert c.get("/api/me").status_code == 401


def test_production_cookies_are_secure(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "prod", mode="production", secret_key=SecretStr("s" * 40))
    with TestClient(create_app(settings)) as c:
        c.app.state.hub.identities.add_user(  # type: ignore[attr-defined]
            "caen.pathologist", "caen", ["pathologist"], password=PASSWORD
        )
        response = c.post("/api/login", json={"username": "caen.pathologist", "password": PASSWORD})
        assert response.status_code == 200
        assert "secure" in response.headers["set-cookie"].lower()


def test_production_refuses_default_secrets(tmp_path: Path) -> None:
    home = tmp_path / "prod"
    with pytest.raises(ValueError, match="IAIN_SECRET_KEY"):
        create_app(Settings(home=home, mode="production"))
    oidc = {"oidc_issuer": "https://auth.example.org/realms/iain", "oidc_client_id": "iain"}
    for weak in ("", "secret", "change-me"):
        with pytest.raises(ValueError, match="IAIN_OIDC_CLIENT_SECRET"):
            create_app(
                Settings(
                    home=home,
                    mode="production",
                    secret_key=SecretStr("s" * 40),
                    oidc_client_secret=SecretStr(weak),
                    **oidc,  # type: ignore[arg-type]
                )
            )
    # A real client secret starts (the provider is only contacted at the first login).
    settings = Settings(
        home=home,
        mode="production",
        secret_key=SecretStr("s" * 40),
        oidc_client_secret=SecretStr("k7Hq2-xP9vL4mN8rT3wZ"),
        **oidc,  # type: ignore[arg-type]
    )
    assert create_app(settings).state.hub.oidc is not None
    # Development accepts the defaults.
    create_app(Settings(home=home, oidc_client_secret=SecretStr(""), **oidc))  # type: ignore[arg-type]


def test_users_and_tokens_commands(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IAIN_HOME", str(settings.home))
    runner = CliRunner()

    added = runner.invoke(
        cli,
        ["users", "add", "Lille.Tech", "--centre", "lille", "--role", "technician",
         "--role", "resident", "--rpps", "10101010101", "--name", "Tech L", "--password-stdin"],
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "added lille.tech (lille: technician, resident)" in added.output

    listed = runner.invoke(cli, ["users", "list"])
    assert "lille.tech" in listed.output and "technician,resident" in listed.output

    for args, stdin, message in [
        (["users", "add", "a.b", "--centre", "nice", "--role", "teacher"], "", "unknown centre"),
        (["users", "add", "a.b", "--centre", "caen", "--role", "wizard"], "", "unknown role"),
        (["users", "add", "a.b", "--centre", "caen", "--role", "pathologist", "--password-stdin"],
         "short\n", "at least 10 characters"),
        (["users", "add", "lille.tech", "--centre", "caen", "--role", "pathologist"], "", "exists"),
        (["tokens", "create", "nobody"], "", "no user 'nobody'"),
        (["tokens", "revoke", "nope"], "", "no live token"),
    ]:  # fmt: skip
        result = runner.invoke(cli, args, input=stdin)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)

    created = runner.invoke(cli, ["tokens", "create", "lille.tech", "--name", "gpu-1"])
    assert created.exit_code == 0
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("iain_")
    token_id = created.output.split("token ")[1].split()[0]

    # The password works in the browser login, the token as a bearer token.
    with TestClient(create_app(Settings(home=settings.home))) as c:
        login(c, "lille.tech")
        me = c.get("/api/me", headers={"Authorization": f"Bearer {secret}"}).json()
        assert me["user"]["username"] == "lille.tech" and me["auth"] == "token"
        revoked = runner.invoke(cli, ["tokens", "revoke", token_id])
        assert revoked.exit_code == 0
    # A fresh hub process (no cache) refuses it at once.
    with TestClient(create_app(Settings(home=settings.home))) as c:
        assert c.get("/api/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_demo_creates_one_pathologist_per_centre_and_says_how_to_log_in(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "demo", testdata=tmp_path / "absent")
    output = io.StringIO()
    prepare_demo(settings, Console(file=output, width=200), synthetic_size=(600, 400))
    prepare_demo(settings, Console(file=output, width=200), synthetic_size=(600, 400))
    printed = output.getvalue()
    assert "http://127.0.0.1:8000/login" in printed
    with TestClient(create_app(settings)) as c:
        for username, centre, _name, password in DEMO_USERS:
            assert f"{username:20} password {password}" in printed
            c.cookies.clear()
            login(c, username, password)
            assert c.get("/api/me").json()["user"]["centre"] == centre
        assert {u.username for u in users_of(c)} == {u[0] for u in DEMO_USERS}


def test_demo_accounts_are_never_made_in_production(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "demo",
        testdata=tmp_path / "absent",
        mode="production",
        secret_key=SecretStr("s" * 40),
    )
    output = io.StringIO()
    prepare_demo(settings, Console(file=output, width=200), synthetic_size=(600, 400))
    assert "no demo accounts" in output.getvalue()
    assert DEMO_USERS[0][3] not in output.getvalue()
    with TestClient(create_app(settings)) as c:
        assert users_of(c) == []


def users_of(client: TestClient) -> list[User]:
    with client.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(User)))
