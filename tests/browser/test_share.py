"""Sharing a slide between centres in the browser, as issue 5's newcomer does it: a Lille
pathologist shares a Lille slide with Rouen from the slide page's "Share…" dialog; a Rouen
pathologist (another browser) finds it in the worklist marked "Shared with you", opens its
de-identified view only (its real id is "not found"); Lille revokes it in the dialog and
Rouen's page then finds nothing; `iain audit show` lists each step.

Both users log in through the login page (session cookie + CSRF token: the dialog's writes go
through the same checks as any page's). A real hub in a subprocess, Debian's chromium via
Playwright (same prerequisites as test_viewer.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from iain.synthetic import write_synthetic_slide
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_login import _iain
from tests.browser.test_viewer import (
    LOAD_TIMEOUT_MS,
    SCREENSHOTS,
    VIEWPORT,
    _hub_env,
    _ingest,
    _require_prerequisites,
    wait_fully_loaded,
)

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser

LILLE = ("lille.pathologist", "share-lille-2026")
ROUEN = ("rouen.pathologist", "share-rouen-2026")
ROUEN_NAME = "Centre Henri Becquerel"


@dataclass
class ShareHub:
    url: str
    home: Path
    env: dict[str, str]
    slide_id: str  # Lille's slide, by its real id
    rouen_token: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShareHub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("share-hub")
    env = _hub_env(home)
    slide = home / "lille-HE.tiff"
    write_synthetic_slide(slide, 2400, 1600, seed=11)
    _ingest(env, home, slide, "lille")
    for (username, password), centre in ((LILLE, "lille"), (ROUEN, "rouen")):
        _iain(env, home, "users", "add", username, "--centre", centre, "--role", "pathologist",
              "--password-stdin", stdin=password + "\n")  # fmt: skip
    lille_token = _iain(env, home, "tokens", "create", LILLE[0], "--name", "test").strip()
    rouen_token = _iain(env, home, "tokens", "create", ROUEN[0], "--name", "test").strip()
    with running_hub(home, env) as url:
        headers = {"Authorization": f"Bearer {lille_token}"}
        [listed] = httpx.get(url + "/api/slides", headers=headers, timeout=30).json()["items"]
        yield ShareHub(url, home, env, listed["id"], rouen_token)


def logged_in(
    browser: Browser, hub: ShareHub, user: tuple[str, str], path: str, french: bool = False
) -> Page:
    """A fresh browser context (its own cookies), signed in as `user` through the login page,
    then at `path`."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB")  # type: ignore[arg-type]
    if french:
        context.add_init_script("localStorage.setItem('iain.language', 'fr')")
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.goto(hub.url + path)
    page.wait_for_url(f"{hub.url}/login*")
    page.get_by_label("Identifiant" if french else "Username").fill(user[0])
    page.get_by_label("Mot de passe" if french else "Password").fill(user[1])
    page.get_by_role("button", name="Se connecter" if french else "Sign in").click()
    page.wait_for_url(hub.url + path)
    return page


def rouen_slides(hub: ShareHub) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {hub.rouen_token}"}
    listed: list[dict[str, object]] = httpx.get(
        hub.url + "/api/slides", headers=headers, timeout=30
    ).json()["items"]
    return listed


def test_lille_shares_with_rouen_then_revokes(hub: ShareHub, browser: Browser) -> None:
    # Before any grant, Rouen sees nothing of Lille's.
    assert rouen_slides(hub) == []
    lille = logged_in(browser, hub, LILLE, f"/viewer/{hub.slide_id}")
    wait_fully_loaded(lille)
    share = lille.locator(".share-button")
    share.wait_for()
    assert share.inner_text() == "Share…"
    share.click()
    dialog = lille.locator("dialog.share-dialog")
    dialog.wait_for()
    expect(dialog.locator(".share-none")).to_have_text("This slide is not shared.")
    # Keys typed while the dialog is open are not the slide's shortcuts ("+" zooms).
    zoom = "() => window.iain.viewer.viewport.getZoom()"
    before = lille.evaluate(zoom)
    dialog.locator(".share-submit").focus()
    lille.keyboard.press("+")
    lille.wait_for_timeout(500)
    assert lille.evaluate(zoom) == before
    # The own centre is not offered: it sees the slide already.
    expect(dialog.locator(".share-centre option")).not_to_have_count(0)
    centres = dialog.locator(".share-centre option").all_inner_texts()
    assert ROUEN_NAME in centres and "Centre Oscar Lambret" not in centres

    # A refusal is shown with the hub's own reason, and nothing is shared.
    dialog.get_by_label("A user").check()
    dialog.locator(".share-user").fill("nobody.here")
    dialog.get_by_role("button", name="Share", exact=True).click()
    message = dialog.locator(".share-message.error")
    message.wait_for()
    assert message.inner_text() == "Not shared: unknown user 'nobody.here'"
    assert rouen_slides(hub) == []

    dialog.get_by_label("A centre").check()
    dialog.locator(".share-centre").select_option(label=ROUEN_NAME)
    dialog.locator(".share-purpose").select_option(label="Second opinion")
    dialog.locator(".share-legal-basis").fill("care agreement C3 2026")
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(dialog.locator(".share-message")).to_have_text(f"Shared with {ROUEN_NAME}.")
    grant = dialog.locator(".share-grant")
    grant.wait_for()
    grant_id = grant.get_attribute("data-grant-id") or ""
    assert grant.locator(".share-who").inner_text() == ROUEN_NAME
    assert grant.locator(".share-facts").inner_text() == "Second opinion · care agreement C3 2026"
    assert grant.locator(".share-state").inner_text() == "Live"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lille.screenshot(path=str(SCREENSHOTS / "share.png"))

    # Rouen, in another browser: the slide is in the worklist, marked as shared, by its
    # opaque id only.
    [seen] = rouen_slides(hub)
    public_id = str(seen["id"])
    assert public_id != hub.slide_id and seen["view"] == "deidentified"
    rouen = logged_in(browser, hub, ROUEN, "/")
    row = rouen.locator(f"tr[data-slide-id='{public_id}']")
    row.wait_for()
    assert row.locator(".shared-badge").inner_text() == "Shared with you"
    assert row.locator(".shared-purpose").inner_text().strip() == "Second opinion"
    assert row.locator("td.name a").inner_text() == public_id
    row.locator("td.name a").click()
    rouen.wait_for_url(f"{hub.url}/viewer/{public_id}*")
    wait_fully_loaded(rouen)
    assert rouen.locator(".deidentified-notice").inner_text() == "De-identified view"
    assert not rouen.locator(".associated-button").is_visible()
    assert rouen.locator(".share-button").count() == 0  # not Rouen's to share on
    # The real id stays unknown to Rouen.
    rouen.goto(f"{hub.url}/viewer/{hub.slide_id}")
    rouen.locator(".error-panel h1").wait_for()
    assert rouen.locator(".error-panel h1").inner_text() == "Slide not found"

    # Lille revokes in the dialog; Rouen's next load finds nothing.
    grant.locator(".share-revoke").click()
    expect(grant.locator(".share-state")).to_have_text("Revoked")
    assert not grant.locator(".share-revoke").is_visible()
    rouen.goto(f"{hub.url}/viewer/{public_id}")
    rouen.locator(".error-panel h1").wait_for()
    assert rouen.locator(".error-panel h1").inner_text() == "Slide not found"
    rouen.goto(hub.url + "/")
    rouen.locator(".worklist .notice").wait_for()
    assert rouen.locator("tr.slide").count() == 0
    lille.context.close()
    rouen.context.close()

    # The audit trail has each step, as an operator reads it.
    env = {**hub.env, "COLUMNS": "400"}
    shown = _iain(env, hub.home, "audit", "show", "--last", "50")
    lines = shown.splitlines()
    grants = [line for line in lines if " grant " in line and grant_id in line]
    views = [line for line in lines if " view_shared_slide " in line]
    revokes = [line for line in lines if " revoke " in line and grant_id in line]
    assert len(grants) == 1 and LILLE[0] in grants[0] and hub.slide_id in grants[0]
    assert views and all(ROUEN[0] in line for line in views)
    assert len(revokes) == 1 and LILLE[0] in revokes[0]
    assert lines.index(grants[0]) < lines.index(views[0]) < lines.index(revokes[0])


def test_share_with_one_user_in_french(hub: ShareHub, browser: Browser) -> None:
    lille = logged_in(browser, hub, LILLE, f"/viewer/{hub.slide_id}", french=True)
    wait_fully_loaded(lille)
    lille.get_by_role("button", name="Partager…").click()
    dialog = lille.locator("dialog.share-dialog")
    expect(dialog.get_by_role("heading", name="Partager cette lame")).to_be_visible()
    dialog.get_by_label("Un·e utilisateur·rice").check()
    assert not dialog.locator(".share-centre").is_visible()
    dialog.get_by_label("Identifiant").fill(ROUEN[0])
    dialog.locator(".share-purpose").select_option(label="Enseignement")
    dialog.locator(".share-expires").fill("2099-12-31")
    dialog.get_by_role("button", name="Partager", exact=True).click()
    expect(dialog.locator(".share-message")).to_have_text(f"Partagée avec {ROUEN[0]}.")
    grant = dialog.locator(".share-grant.state-live")
    expect(grant.locator(".share-who")).to_have_text(ROUEN[0])
    expect(grant.locator(".share-facts")).to_have_text("Enseignement · jusqu’au 31 déc. 2099")
    expect(grant.locator(".share-state")).to_have_text("Actif")

    # The hub kept the end of that day, with its time zone.
    headers = {"Authorization": f"Bearer {hub.rouen_token}"}
    grants = httpx.get(hub.url + "/api/grants", headers=headers, timeout=30).json()
    [received] = [g for g in grants if g["live"]]
    assert received["grantee_user"] == ROUEN[0] and received["purpose"] == "teaching"
    assert received["expires_at"].startswith("2099-12-3")

    rouen = logged_in(browser, hub, ROUEN, "/", french=True)
    row = rouen.locator(f"tr[data-slide-id='{received['slide_id']}']")
    expect(row.locator(".shared-badge")).to_have_text("Partagée avec vous")
    expect(row.locator(".shared-purpose")).to_have_text(" Enseignement")
    assert "Centre Oscar Lambret" in (row.locator(".shared-with-you").get_attribute("title") or "")

    grant = dialog.locator(f".share-grant[data-grant-id='{received['id']}']")
    grant.locator(".share-revoke").click()
    expect(grant.locator(".share-state")).to_have_text("Révoqué")
    assert rouen_slides(hub) == []
    lille.context.close()
    rouen.context.close()
