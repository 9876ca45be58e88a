"""What a user sees of the admin's session commands and of a failed OpenID Connect login:
a real hub in a subprocess, `iain sessions end` run as the admin would, Debian's chromium
via Playwright."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page

from exchange.identity.accounts import REVOCATION_POLL_S
from tests.browser.hub import oidc_provider, running_hub
from tests.browser.test_login import PASSWORD, USERNAME, _iain, browser, new_page, sign_in
from tests.browser.test_viewer import _hub_env, _require_prerequisites
from tests.seeded_slide import write_seeded_svs

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module-scoped chromium fixture, shared with test_login


@dataclass(frozen=True)
class AdminHub:
    url: str
    home: Path
    env: dict[str, str]
    slide_id: str  # a slide of Lille's


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminHub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("admin-hub")
    env = _hub_env(home)
    _iain(env, home, "users", "add", USERNAME, "--centre", "lille", "--role", "pathologist",
          "--name", "Dr Lille", "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    folder = home / "incoming"
    folder.mkdir()
    ingested = _iain(env, home, "ingest", str(write_seeded_svs(folder)), "--centre", "lille")
    slide_id = ingested.split()[0]
    with running_hub(home, env) as url:
        yield AdminHub(url, home, env, slide_id)


def test_an_ended_session_sends_the_browser_back_to_the_login_page(
    hub: AdminHub, browser: Browser
) -> None:
    page = new_page(browser)
    page.goto(hub.url + "/login")
    sign_in(page)
    page.wait_for_url(hub.url + "/")
    page.locator(".account-name").wait_for()

    # The laptop is lost: the admin ends the user's sessions from the hub's machine.
    ended = _iain(hub.env, hub.home, "sessions", "end", USERNAME)
    assert f"ended 1 session of {USERNAME}" in ended
    time.sleep(REVOCATION_POLL_S + 0.2)
    page.reload()
    page.wait_for_url(f"{hub.url}/login*")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.evaluate("() => fetch('/api/me').then(r => r.status)") == 401
    # Signing in again works: the account is not disabled.
    sign_in(page)
    page.wait_for_url(hub.url + "/")
    page.locator(".account-name").wait_for()
    sign_out(page)


def test_one_refused_call_of_a_page_is_enough_to_go_back_to_the_login_page(
    hub: AdminHub, browser: Browser
) -> None:
    """Whichever of a page load's calls is the first to find the session ended, the page
    goes to the login page: here only /api/me (the header's) is refused."""
    page = new_page(browser)
    page.goto(hub.url + "/login")
    sign_in(page)
    page.wait_for_url(hub.url + "/")
    page.locator(".account-name").wait_for()
    page.route(
        "**/api/me",
        lambda route: route.fulfill(
            status=401, content_type="application/json", body='{"detail": "log in"}'
        ),
    )
    page.reload()
    page.wait_for_url(f"{hub.url}/login*")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.unroute("**/api/me")
    page.goto(hub.url + "/")
    sign_out(page)


def test_a_session_ended_while_viewing_a_slide_goes_to_the_login_page_at_the_next_tiles(
    hub: AdminHub, browser: Browser
) -> None:
    """Panning and zooming fetch only tiles (images, whose status no script reads): a
    refused tile makes the viewer ask the hub, and an ended session goes to the login page,
    which brings the user back to the slide and the view."""
    page = new_page(browser)
    page.goto(hub.url + "/login")
    sign_in(page)
    page.wait_for_url(hub.url + "/")
    viewer = f"/viewer/{hub.slide_id}"
    page.goto(hub.url + viewer)
    page.wait_for_function("() => window.iain !== undefined && window.iain.fullyLoaded()")

    _iain(hub.env, hub.home, "sessions", "end", USERNAME)
    time.sleep(REVOCATION_POLL_S + 0.2)
    page.evaluate("() => window.iain.viewer.viewport.zoomBy(8).applyConstraints()")
    page.wait_for_url(f"{hub.url}/login*")
    # Back to the same slide, where the user was looking (the viewport is in the URL).
    [back] = parse_qs(urlsplit(page.url).query)["next"]
    assert urlsplit(back).path == viewer and "zoom=" in back
    sign_in(page)
    page.wait_for_url(f"{hub.url}{viewer}?*")
    sign_out(page)


def sign_out(page: Page) -> None:
    """Ends the test's session through the page, so that the next test's
    `iain sessions end` finds only its own."""
    scheme, netloc = urlsplit(page.url)[:2]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{scheme}://{netloc}/login*")
    page.context.close()


@pytest.mark.parametrize(
    ("locale", "query", "message"),
    [
        ("en-GB", "error=oidc_unknown_centre",
         "Your account at the identity provider is not linked to an IAIN centre. "
         "Ask your administrator."),
        ("fr-FR", "error=oidc_disabled",
         "Ce compte est désactivé sur IAIN. Contactez votre administrateur."),
        # A code the page does not know, or text slipped into the URL: a generic message,
        # never the URL's own words.
        ("en-GB", "error=oidc_%3Cb%3Eyour+bank+called%3C%2Fb%3E",
         "Signing in through the identity provider failed. Please try again."),
    ],
)  # fmt: skip
def test_a_failed_openid_connect_login_is_explained_on_the_login_page(
    hub: AdminHub, browser: Browser, locale: str, query: str, message: str
) -> None:
    page = new_page(browser, locale=locale)
    page.goto(f"{hub.url}/login?{query}")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == message
    assert page.locator(".login-message b").count() == 0
    # The form is there to try again.
    assert page.locator("#login-username").is_visible()
    page.context.close()


def test_a_centre_unknown_to_iain_brings_the_browser_back_to_the_login_page(
    tmp_path: Path, browser: Browser
) -> None:
    """Through a real provider process: the provider vouches for the user, but its centre
    is not an IAIN one; the user reads why on the login page, not a JSON error."""
    _require_prerequisites()
    with oidc_provider() as issuer:
        env = _hub_env(tmp_path) | {
            "IAIN_OIDC_ISSUER": issuer,
            "IAIN_OIDC_CLIENT_ID": "iain-hub",
            "IAIN_OIDC_CLIENT_SECRET": "a-real-client-secret-0123",
            "IAIN_OIDC_LABEL": "Pro Santé Connect",
        }
        claims = {"centre": "CHU-NANTES", "roles": ["pathologist"]}
        assert httpx.put(f"{issuer}/users/psc-77", json=claims).status_code == 204
        with running_hub(tmp_path, env) as url:
            page = new_page(browser, locale="fr-FR")
            page.goto(url + "/login")
            page.get_by_role("link", name="Se connecter avec Pro Santé Connect").click()
            page.wait_for_url(f"{issuer}/oauth2/authorize*")
            page.locator("input[name=sub]").fill("psc-77")
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(url + "/login?error=oidc_unknown_centre")
            alert = page.get_by_role("alert")
            alert.wait_for()
            assert alert.inner_text() == (
                "Votre compte chez le fournisseur d’identité n’est rattaché à aucun centre "
                "IAIN. Contactez votre administrateur."
            )
            assert "NANTES" not in page.content()
            assert page.evaluate("() => fetch('/api/me').then(r => r.status)") == 401
            page.context.close()
