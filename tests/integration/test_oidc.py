"""OpenID Connect login against a real provider process (oidc-provider-mock, started here on
127.0.0.1): the browser's redirects are followed by hand, the provider's authorisation form
is submitted with the subject whose claims the test set, and the hub exchanges the code and
checks the ID token itself over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from exchange.core.models import AuditEvent, User
from exchange.identity.oidc import OidcClient, OidcError
from iain.app import create_app
from iain.settings import Settings
from tests.browser.hub import free_port, oidc_provider

CLIENT_ID = "iain-hub"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The provider's issuer URL, while its process runs."""
    with oidc_provider() as issuer:
        yield issuer


@pytest.fixture
def hub(provider: str, settings: Settings) -> Iterator[TestClient]:
    settings.oidc_issuer = provider
    settings.oidc_client_id = CLIENT_ID
    settings.oidc_client_secret = SecretStr("a-real-client-secret-0123")
    settings.oidc_label = "Pro Santé Connect"
    settings.oidc_centre_map = {"CLCC-LILLE": "lille", "CLCC-ROUEN": "rouen"}
    settings.oidc_role_map = {"anapath": "pathologist", "interne": "resident"}
    with TestClient(create_app(settings)) as c:
        yield c


def set_claims(issuer: str, sub: str, **claims: object) -> None:
    response = httpx.put(f"{issuer}/users/{sub}", json=claims)
    assert response.status_code == 204, response.text


def authorize(hub: TestClient, sub: str, *, next_url: str = "/", nonce: str | None = None) -> str:
    """Starts a login at the hub and approves it at the provider as `sub`: the callback URL
    the provider sends the browser back to. `nonce` replaces the hub's nonce on the way."""
    start = hub.get("/api/login/oidc", params={"next": next_url}, follow_redirects=False)
    assert start.status_code == 303
    location = start.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["client_id"] == [CLIENT_ID] and query["state"] and query["nonce"]
    if nonce is not None:
        query["nonce"] = [nonce]
        parts = urlsplit(location)
        location = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    with httpx.Client() as browser:
        form = browser.get(location)
        assert form.status_code == 200 and 'name="sub"' in form.text
        approved = browser.post(location, data={"sub": sub}, follow_redirects=False)
    assert approved.status_code == 302, approved.text
    callback = approved.headers["location"]
    assert callback.startswith("http://testserver/api/login/oidc/callback?")
    return callback


def users(hub: TestClient) -> list[User]:
    with hub.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(User)))


def failures(hub: TestClient) -> list[AuditEvent]:
    with hub.app.state.hub.catalogue.session() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "login_failed")))


def test_login_options_name_the_provider(hub: TestClient) -> None:
    options = hub.get("/api/login/options").json()
    assert options == {"password": True, "oidc": True, "oidc_label": "Pro Santé Connect"}


def test_oidc_login_creates_the_user_from_mapped_claims(provider: str, hub: TestClient) -> None:
    set_claims(
        provider,
        "psc-8100001",
        centre="CLCC-LILLE",
        roles=["anapath", "offline_access"],
        rpps="10003456789",
        preferred_username="Marie.Curie",
        name="Marie Curie",
    )
    callback = authorize(hub, "psc-8100001", next_url="/viewer/abc?x=1")
    done = hub.get(callback, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/viewer/abc?x=1"

    me = hub.get("/api/me").json()
    assert me["user"]["username"] == "marie.curie"
    assert me["user"]["centre"] == "lille"
    assert me["user"]["roles"] == ["pathologist"]  # offline_access is no IAIN role
    assert me["user"]["display_name"] == "Marie Curie"
    [user] = users(hub)
    assert user.oidc_subject == f"{provider}|psc-8100001"
    assert user.rpps == "10003456789" and user.password_hash is None

    # The next login of the same person finds the same account; the provider's claims win.
    set_claims(provider, "psc-8100001", centre="CLCC-ROUEN", roles="interne", name="M. Curie")
    hub.cookies.clear()
    assert hub.get(authorize(hub, "psc-8100001"), follow_redirects=False).status_code == 303
    [user] = users(hub)
    assert (user.centre, user.roles, user.username) == ("rouen", ["resident"], "marie.curie")
    assert hub.get("/api/me").json()["user"]["centre"] == "rouen"


def test_a_tampered_state_is_refused(provider: str, hub: TestClient) -> None:
    set_claims(provider, "psc-2", centre="lille", roles=["pathologist"])
    callback = authorize(hub, "psc-2")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    query["state"] = ["forged-" + query["state"][0]]
    forged = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    answer = hub.get(forged, follow_redirects=False)
    assert answer.status_code == 400
    assert "state" in answer.json()["detail"]
    assert hub.get("/api/me").status_code == 401
    assert users(hub) == []
    # Without the pending-login cookie (another browser) the answer is refused too.
    hub.cookies.clear()
    assert hub.get(callback, follow_redirects=False).status_code == 400


def test_a_wrong_nonce_is_refused(provider: str, hub: TestClient) -> None:
    set_claims(provider, "psc-3", centre="lille", roles=["pathologist"])
    callback = authorize(hub, "psc-3", nonce="a-nonce-the-hub-never-sent")
    answer = hub.get(callback, follow_redirects=False)
    assert answer.status_code == 400
    assert "nonce" in answer.json()["detail"]
    assert hub.get("/api/me").status_code == 401
    assert [e.detail["reason"] for e in failures(hub)] == ["OidcError"]


def test_an_unknown_centre_is_refused_clearly(provider: str, hub: TestClient) -> None:
    set_claims(provider, "psc-4", centre="CHU-NANTES", roles=["anapath"])
    answer = hub.get(authorize(hub, "psc-4"), follow_redirects=False)
    assert answer.status_code == 403
    detail = answer.json()["detail"]
    assert "'CHU-NANTES'" in detail and "not an IAIN centre" in detail
    assert users(hub) == [] and hub.get("/api/me").status_code == 401
    assert [e.detail["reason"] for e in failures(hub)] == ["OidcRefused"]


def test_no_role_is_refused(provider: str, hub: TestClient) -> None:
    set_claims(provider, "psc-5", centre="rouen", roles=["offline_access"])
    answer = hub.get(authorize(hub, "psc-5"), follow_redirects=False)
    assert answer.status_code == 403 and "no IAIN role" in answer.json()["detail"]


def test_an_id_token_signed_by_another_key_is_refused(provider: str, hub: TestClient) -> None:
    oidc: OidcClient = hub.app.state.hub.oidc  # type: ignore[attr-defined]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = jwt.encode(
        {"iss": provider, "aud": CLIENT_ID, "sub": "x", "iat": now, "exp": now + 60, "nonce": "n"},
        key,
        algorithm="RS256",
    )
    with pytest.raises(OidcError):
        oidc.validate_id_token(forged, "n")


def test_an_open_redirect_is_not_offered(provider: str, hub: TestClient) -> None:
    set_claims(provider, "psc-6", centre="caen", roles=["teacher"])
    callback = authorize(hub, "psc-6", next_url="//evil.example.org/")
    done = hub.get(callback, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_without_configuration_there_is_no_oidc_login(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/login/options").json()["oidc"] is False
        assert c.get("/api/login/oidc", follow_redirects=False).status_code == 404


# A browser navigating: it asks for HTML, so a failed login brings it back to the login page.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_browser_lands_on_the_login_page_when_the_state_is_tampered(
    provider: str, hub: TestClient
) -> None:
    set_claims(provider, "psc-7", centre="lille", roles=["pathologist"])
    callback = authorize(hub, "psc-7")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    query["state"] = ["forged-" + query["state"][0]]
    forged = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    answer = hub.get(forged, headers=BROWSER, follow_redirects=False)
    assert answer.status_code == 303
    # A reason code for the page to explain, never the detail nor the provider's answer.
    assert answer.headers["location"] == "/login?error=oidc_invalid"
    assert "iain_oidc=" in answer.headers["set-cookie"]  # the pending login is cleared
    assert hub.get("/api/me").status_code == 401 and users(hub) == []
    [event] = failures(hub)
    assert event.detail["code"] == "invalid" and "state" in event.detail["why"]


def test_a_browser_is_told_when_its_centre_or_role_is_unknown(
    provider: str, hub: TestClient
) -> None:
    set_claims(provider, "psc-8", centre="CHU-NANTES", roles=["anapath"])
    answer = hub.get(authorize(hub, "psc-8"), headers=BROWSER, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?error=oidc_unknown_centre"
    assert "NANTES" not in answer.headers["location"]

    set_claims(provider, "psc-9", centre="rouen", roles=["offline_access"])
    answer = hub.get(authorize(hub, "psc-9"), headers=BROWSER, follow_redirects=False)
    assert answer.headers["location"] == "/login?error=oidc_no_role"
    assert users(hub) == []


def test_a_login_denied_at_the_provider(provider: str, hub: TestClient) -> None:
    start = hub.get("/api/login/oidc", follow_redirects=False)
    with httpx.Client() as browser:
        denied = browser.post(start.headers["location"], data={"sub": "psc-10", "action": "deny"})
    assert denied.status_code == 302, denied.text
    callback = denied.headers["location"]
    assert "error=access_denied" in callback
    # A script gets the JSON refusal; a browser, the login page.
    api = hub.get(callback, follow_redirects=False)
    assert api.status_code == 403 and "refused the login" in api.json()["detail"]
    page = hub.get(callback, headers=BROWSER, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?error=oidc_provider"


def test_a_disabled_account_cannot_log_in_through_the_provider(
    provider: str, hub: TestClient
) -> None:
    set_claims(provider, "psc-11", centre="lille", roles=["anapath"], preferred_username="a.b")
    assert hub.get(authorize(hub, "psc-11"), follow_redirects=False).status_code == 303
    [user] = users(hub)
    with hub.app.state.hub.catalogue.session() as session, session.begin():  # type: ignore[attr-defined]
        session.get(User, user.id).active = False  # what `iain users disable` sets
    hub.cookies.clear()
    answer = hub.get(authorize(hub, "psc-11"), headers=BROWSER, follow_redirects=False)
    assert answer.headers["location"] == "/login?error=oidc_disabled"
    assert hub.get("/api/me").status_code == 401


def test_an_unreachable_provider(settings: Settings) -> None:
    settings.oidc_issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.oidc_client_id = CLIENT_ID
    with TestClient(create_app(settings)) as c:
        api = c.get("/api/login/oidc", follow_redirects=False)
        assert api.status_code == 502
        # The reason (refused connection to that address) is the operator's, in the log.
        assert api.json() == {"detail": "the login provider did not answer"}
        page = c.get("/api/login/oidc", headers=BROWSER, follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?error=oidc_unavailable"
