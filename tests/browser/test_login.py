"""The login page end to end: a real hub in a subprocess with a local account made by
`iain users add`, Debian's chromium via Playwright."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page

from iain.synthetic import write_synthetic_slide
from tests.browser.hub import oidc_provider, running_hub
from tests.browser.test_viewer import (
    CHROMIUM_ARGS,
    LOAD_TIMEOUT_MS,
    VIEWPORT,
    _hub_env,
    _ingest,
    _require_prerequisites,
)

pytestmark = pytest.mark.browser

USERNAME = "lille.pathologist"
PASSWORD = "lille-slides-2026"


class LoginHub:
    def __init__(self, url: str, slide_id: str) -> None:
        self.url = url
        self.slide_id = slide_id


def _iain(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> str:
    run = subprocess.run(
        [sys.executable, "-m", "iain.cli", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"iain {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginHub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("login-hub")
    env = _hub_env(home)
    slide = home / "login-HE.tiff"
    write_synthetic_slide(slide, 1200, 800, seed=5)
    _ingest(env, home, slide, "lille")
    _iain(env, home, "users", "add", USERNAME, "--centre", "lille", "--role", "pathologist",
          "--name", "Dr Lille", "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    token = _iain(env, home, "tokens", "create", USERNAME, "--name", "test").strip()
    with running_hub(home, env) as url:
        headers = {"Authorization": f"Bearer {token}"}
        [listed] = httpx.get(url + "/api/slides", headers=headers, timeout=30).json()["items"]
        yield LoginHub(url, listed["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    from tests.browser.test_viewer import CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser: Browser, locale: str = "en-GB") -> Page:
    context = browser.new_context(viewport=VIEWPORT, locale=locale)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    return page


def sign_in(page: Page, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_log_in_see_the_worklist_and_log_out(hub: LoginHub, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(hub.url + "/")
    # Not signed in: the worklist's request gets 401 and the page sends us to log in.
    page.wait_for_url(f"{hub.url}/login*")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    cookies = page.context.cookies()
    assert not [c for c in cookies if c["name"] == "iain_session"]

    sign_in(page)
    page.wait_for_url(hub.url + "/")
    page.locator(f"tr[data-slide-id='{hub.slide_id}']").wait_for()
    account = page.locator(".account")
    account.wait_for()
    assert account.locator(".account-name").inner_text() == "Signed in as Dr Lille (lille)"
    [session] = [c for c in page.context.cookies() if c["name"] == "iain_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    # No script can read the session cookie.
    assert "iain_session" not in page.evaluate("() => document.cookie")

    account.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{hub.url}/login*")
    assert page.evaluate("() => fetch('/api/me').then(r => r.status)") == 401
    page.goto(hub.url + "/")
    page.wait_for_url(f"{hub.url}/login*")
    page.context.close()


def test_a_deep_link_comes_back_after_login(hub: LoginHub, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(f"{hub.url}/viewer/{hub.slide_id}?x=600&y=400&zoom=0.5")
    page.wait_for_url(f"{hub.url}/login*")
    next_url = parse_qs(urlparse(page.url).query)["next"][0]
    assert next_url == f"/viewer/{hub.slide_id}?x=600&y=400&zoom=0.5"
    sign_in(page)
    page.wait_for_url(f"{hub.url}/viewer/{hub.slide_id}*")
    page.wait_for_function("() => window.iain !== undefined && window.iain.fullyLoaded()")
    page.context.close()


def test_a_wrong_password_says_so(hub: LoginHub, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(hub.url + "/login")
    sign_in(page, password="not-the-password")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == "Wrong username or password."
    assert page.url == hub.url + "/login"
    assert page.get_by_label("Password").input_value() == ""
    page.context.close()

    french = new_page(browser, locale="fr-FR")
    french.goto(hub.url + "/login")
    assert french.get_by_role("heading", name="Connexion").is_visible()
    french.get_by_label("Identifiant").fill(USERNAME)
    french.get_by_label("Mot de passe").fill("pas-le-bon-mot")
    french.get_by_role("button", name="Se connecter").click()
    french.get_by_role("alert").wait_for()
    assert french.get_by_role("alert").inner_text() == "Identifiant ou mot de passe incorrect."
    # The hub offers no OpenID Connect here: no button for it.
    assert french.locator(".login-oidc-button").count() == 0
    french.context.close()


def test_sign_in_with_openid_connect(tmp_path: Path, browser: Browser) -> None:
    """The login page's OpenID Connect button, through a real provider process."""
    _require_prerequisites()
    with oidc_provider() as issuer:
        env = _hub_env(tmp_path) | {
            "IAIN_OIDC_ISSUER": issuer,
            "IAIN_OIDC_CLIENT_ID": "iain-hub",
            "IAIN_OIDC_CLIENT_SECRET": "a-real-client-secret-0123",
            "IAIN_OIDC_LABEL": "Keycloak",
            "IAIN_OIDC_CENTRE_MAP": '{"CLCC-ROUEN": "rouen"}',
        }
        claims = {"centre": "CLCC-ROUEN", "roles": ["pathologist"], "name": "Dr Rouen"}
        assert httpx.put(f"{issuer}/users/psc-42", json=claims).status_code == 204
        with running_hub(tmp_path, env) as url:
            page = new_page(browser)
            page.goto(url + "/login")
            page.get_by_role("link", name="Sign in with Keycloak").click()
            page.wait_for_url(f"{issuer}/oauth2/authorize*")
            page.locator("input[name=sub]").fill("psc-42")
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(url + "/")
            account = page.locator(".account-name")
            account.wait_for()
            assert account.inner_text() == "Signed in as Dr Rouen (rouen)"
            page.context.close()
