"""The slide page on a de-identified slide (another centre's, shared through a grant, opened
by its opaque id): the hub keeps annotations and layers to the owning centre (404 there), so
the page never asks for them, shows no panel for them and says it is a de-identified view;
the slide itself is drawn as the hub renders it.

A hub of its own (a synthetic slide of Caen's, shared with Rouen); browser fixtures are
test_viewer.py's (same prerequisites).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser

from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import (
    LOAD_TIMEOUT_MS,
    SYNTHETIC,
    VIEWPORT,
    Hub,
    Tab,
    assert_matches_server_rendering,
    wait_fully_loaded,
)
from tests.database import database_url
from tests.hub import auth_headers, ingest

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser


@dataclass
class Shared:
    url: str
    slide_id: str  # Caen's own id: the full view, for Caen
    public_id: str  # the same slide as Rouen sees it
    caen: dict[str, str]  # Authorization headers of a pathologist of each centre
    rouen: dict[str, str]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    home = tmp_path_factory.mktemp("hub-deidentified")
    env = test_viewer._hub_env(home)
    iain_home = home / ".iain"
    settings = Settings(home=iain_home, database_url=database_url(iain_home))
    write_synthetic_slide(home / SYNTHETIC, 3000, 2000, seed=3)
    slide_id = ingest(settings, home / SYNTHETIC, "caen")
    with running_hub(home, env) as url:
        caen = test_viewer.browser_headers(home, "caen")
        rouen = auth_headers(settings, "pathologist.rouen", centre="rouen")
        # Caen annotates its slide: there is something Rouen's page must not ask for.
        note = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [100, 100]},
            "properties": {"label": "Tumour"},
        }
        made = httpx.post(
            f"{url}/api/slides/{slide_id}/annotations", json=note, headers=caen, timeout=30
        )
        assert made.status_code == 201, made.text
        grant = {"slide_id": slide_id, "centre": "rouen", "purpose": "second_opinion"}
        created = httpx.post(url + "/api/grants", json=grant, headers=caen, timeout=30)
        assert created.status_code == 201, created.text
        (seen,) = httpx.get(url + "/api/slides", headers=rouen, timeout=30).json()["items"]
        assert seen["view"] == "deidentified"
        yield Shared(url, slide_id, seen["id"], caen, rouen)


@pytest.fixture
def tab(browser: Browser, shared: Shared) -> Iterator[Tab]:
    context = browser.new_context(
        viewport=VIEWPORT,  # type: ignore[arg-type]
        extra_http_headers=shared.rouen,
    )
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    tab = Tab(page, [], [])
    page.on(
        "console",
        lambda m: tab.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda error: tab.console_errors.append(f"uncaught: {error}"))
    page.on(
        "response",
        lambda r: tab.tile_responses.append((r.url, r.status)) if "_files/" in r.url else None,
    )
    yield tab
    context.close()


def panel_requests(tab: Tab) -> list[str]:
    requests: list[str] = []
    tab.page.on(
        "request",
        lambda r: (
            requests.append(r.url) if "/annotations" in r.url or "/overlays" in r.url else None
        ),
    )
    return requests


def test_deidentified_slide_has_no_annotations_or_layers(shared: Shared, tab: Tab) -> None:
    # What the page must not call: the hub refuses it on this view.
    for route in ("annotations", "overlays"):
        refused = httpx.get(
            f"{shared.url}/api/slides/{shared.public_id}/{route}", headers=shared.rouen, timeout=30
        )
        assert refused.status_code == 404, route
    page = tab.page
    requests = panel_requests(tab)
    page.goto(f"{shared.url}/viewer/{shared.public_id}")
    wait_fully_loaded(page)
    notice = page.locator(".app-header .deidentified-notice")
    assert notice.is_visible()
    assert notice.inner_text() == "De-identified view"
    assert "another centre" in (notice.get_attribute("title") or "")
    assert page.locator(".slide-name").inner_text() == shared.public_id
    assert page.locator(".annotations-panel").count() == 0
    assert page.locator(".overlays-panel").count() == 0
    assert page.evaluate("() => [window.iain.annotations, window.iain.overlays]") == [None, None]
    # The keys that toggle them do nothing, and ask for nothing.
    page.locator("#osd").click()
    for key in ("a", "o"):
        page.keyboard.press(key)
    page.wait_for_timeout(500)
    assert requests == []
    # The slide is drawn as the hub renders it (its de-identified thumbnail).
    hub = Hub(shared.url, {}, headers=shared.rouen)
    slide = httpx.get(
        f"{shared.url}/api/slides/{shared.public_id}", headers=shared.rouen, timeout=30
    ).json()
    assert_matches_server_rendering(tab, hub, slide)
    assert tab.tile_responses and all(status == 200 for _, status in tab.tile_responses)
    tab.assert_no_console_errors()


def test_notice_in_french(shared: Shared, tab: Tab) -> None:
    page = tab.page
    page.add_init_script("localStorage.setItem('iain.language', 'fr')")
    page.goto(f"{shared.url}/viewer/{shared.public_id}")
    wait_fully_loaded(page)
    assert page.locator(".deidentified-notice").inner_text() == "Vue dé-identifiée"
    tab.assert_no_console_errors()


def test_owning_centre_keeps_annotations_and_layers(shared: Shared, tab: Tab) -> None:
    page = tab.page
    page.set_extra_http_headers(shared.caen)
    requests = panel_requests(tab)
    page.goto(f"{shared.url}/viewer/{shared.slide_id}")
    wait_fully_loaded(page)
    page.wait_for_function("() => window.iain.annotations.store.features.length === 1")
    assert page.locator(".deidentified-notice").count() == 0
    assert page.locator(".annotations-panel").is_visible()
    # No layer on this slide: no panel, but the list was asked for.
    assert page.evaluate("() => window.iain.overlays !== null")
    assert any("/annotations" in u for u in requests)
    assert any("/overlays" in u for u in requests)
    tab.assert_no_console_errors()
