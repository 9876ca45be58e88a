"""The worklist while slides are converted: queued, converting and failed slides are served
from their original, so they open in one click like ready ones; their status is named (the
percent of a conversion, the reason of a failure in a tooltip) and refreshed every few
seconds while some slide is queued or converting, not once none is.

A hub of its own, with no conversion worker (IAIN_CONVERT_WORKER=false), so the states the
test writes into the catalogue stay as written until it changes them. Browser fixtures are
test_viewer.py's (same prerequisites).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page
from sqlalchemy import update

from exchange.core.models import Conversion, Slide
from exchange.slides.catalogue import Catalogue
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import LOAD_TIMEOUT_MS, VIEWPORT, Tab, wait_fully_loaded
from tests.database import database_url
from tests.hub import ingest

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser

# The worklist's STATUS_POLL_MS (viewer/src/pages/worklist.ts) is 3 s.
POLL_S = 3.0
OUT_OF_MEMORY = "the conversion needs more memory than allowed"
NBSP = "\N{NO-BREAK SPACE}"
# A slide's detail (GET /api/slides/{id}): what a poll asks for.
DETAIL = re.compile(r"/api/slides/[^/?]+$")


@dataclass
class ConversionHub:
    url: str
    headers: dict[str, str]
    catalogue: Catalogue
    ids: dict[str, str]  # slide name -> id

    def set_state(
        self,
        name: str,
        slide_status: str,
        conversion_status: str,
        percent: float = 0.0,
        error: str | None = None,
    ) -> None:
        """What a conversion worker would record (exchange.slides.conversion), written directly."""
        slide_id = self.ids[name]
        with self.catalogue.session() as session, session.begin():
            session.execute(
                update(Conversion)
                .where(Conversion.slide_id == slide_id)
                .values(status=conversion_status, percent=percent, error=error)
            )
            session.execute(
                update(Slide).where(Slide.id == slide_id).values(status=slide_status, error=error)
            )


@pytest.fixture(scope="module")
def conversion_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConversionHub]:
    home = tmp_path_factory.mktemp("hub-conversions")
    env = test_viewer._hub_env(home)
    env["IAIN_CONVERT_WORKER"] = "false"  # the queue stays as the test writes it
    iain_home = home / ".iain"
    settings = Settings(home=iain_home, database_url=database_url(iain_home))
    ids = {}
    for seed, name in enumerate(("ready.tiff", "queued.tiff", "converting.tiff", "failed.tiff")):
        path = home / name
        write_synthetic_slide(path, 1600, 1200, seed=seed + 10)
        ids[name] = ingest(settings, path, "caen", convert=name != "ready.tiff")
    with running_hub(home, env) as url:
        hub = ConversionHub(
            url, test_viewer.browser_headers(home), Catalogue.open(settings.database_url), ids
        )
        yield hub


@pytest.fixture
def states(conversion_hub: ConversionHub) -> ConversionHub:
    """Each slide in the state its name says (a test may have moved them on)."""
    hub = conversion_hub
    hub.set_state("queued.tiff", "queued", "queued")
    hub.set_state("converting.tiff", "converting", "converting", percent=42.4)
    hub.set_state("failed.tiff", "failed", "failed", error=OUT_OF_MEMORY)
    return hub


@pytest.fixture
def tab(browser: Browser, conversion_hub: ConversionHub) -> Iterator[Tab]:
    context = browser.new_context(
        viewport=VIEWPORT,  # type: ignore[arg-type]
        extra_http_headers=conversion_hub.headers,
    )
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    tab = Tab(page, [], [])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.console_errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.console_errors.append(f"uncaught: {error}"))
    page.on(
        "response",
        lambda r: tab.tile_responses.append((r.url, r.status)) if "_files/" in r.url else None,
    )
    yield tab
    context.close()


def row(page: Page, hub: ConversionHub, name: str) -> Locator:
    return page.locator(f"tr[data-slide-id='{hub.ids[name]}']")


def badge(page: Page, hub: ConversionHub, name: str) -> Locator:
    return row(page, hub, name).locator("td.status .badge")


def wait_badge(page: Page, hub: ConversionHub, name: str, text: str) -> None:
    """Until the slide's status reads `text` (within a few polls: the badge is replaced)."""
    page.wait_for_function(
        "([id, text]) => document.querySelector(`tr[data-slide-id='${id}'] .badge`)"
        "?.textContent === text",
        arg=[hub.ids[name], text],
        timeout=3 * POLL_S * 1000,
    )


def open_worklist(page: Page, hub: ConversionHub) -> None:
    page.goto(hub.url + "/")
    page.wait_for_selector("table.slides tbody tr")


def test_converting_slides_are_labelled_and_open_in_one_click(
    states: ConversionHub, tab: Tab
) -> None:
    hub, page = states, tab.page
    api = httpx.get(hub.url + "/api/slides", headers=hub.headers, timeout=30).json()["items"]
    assert {s["name"]: s["status"] for s in api} == {
        "ready.tiff": "ready",
        "queued.tiff": "queued",
        "converting.tiff": "converting",
        "failed.tiff": "failed",
    }
    open_worklist(page, hub)
    assert badge(page, hub, "ready.tiff").inner_text() == "Ready"
    assert badge(page, hub, "queued.tiff").inner_text() == "Queued for conversion"
    # The percent is the detail's: asked at once for a converting slide.
    wait_badge(page, hub, "converting.tiff", "Converting 42%")
    failed = badge(page, hub, "failed.tiff")
    assert failed.inner_text() == "Conversion failed"
    assert OUT_OF_MEMORY in (failed.get_attribute("title") or "")
    assert "original file" in (failed.get_attribute("title") or "")
    assert "original file" in (badge(page, hub, "queued.tiff").get_attribute("title") or "")
    # Every one of them opens: a link on its name, a box to compare it.
    for name in hub.ids:
        assert row(page, hub, name).locator("td.name a").count() == 1, name
        assert row(page, hub, name).locator("input.select-slide").count() == 1, name

    # One click on the queued slide's row (not on the link) opens it, drawn from the original.
    row(page, hub, "queued.tiff").locator("td.size").click()
    page.wait_for_url(f"**/viewer/{hub.ids['queued.tiff']}**")
    wait_fully_loaded(page)
    assert page.locator(".slide-name").inner_text() == "queued.tiff"
    shown = test_viewer.image_on_screen(tab)
    assert shown.std(axis=(0, 1)).max() > 10, "the canvas is (nearly) uniform: nothing drawn"
    assert tab.tile_responses and all(status == 200 for _, status in tab.tile_responses)

    # The converting and failed slides open too.
    for name in ("converting.tiff", "failed.tiff"):
        page.goto(f"{hub.url}/viewer/{hub.ids[name]}")
        wait_fully_loaded(page)
        assert page.locator(".slide-name").inner_text() == name
    tab.assert_no_console_errors()


def test_labels_in_french(states: ConversionHub, tab: Tab) -> None:
    hub, page = states, tab.page
    page.add_init_script("localStorage.setItem('iain.language', 'fr')")
    open_worklist(page, hub)
    assert badge(page, hub, "ready.tiff").inner_text() == "Prête"
    assert (
        badge(page, hub, "queued.tiff").inner_text()
        == "En file d\N{RIGHT SINGLE QUOTATION MARK}attente"
    )
    wait_badge(page, hub, "converting.tiff", f"Conversion 42{NBSP}%")
    failed = badge(page, hub, "failed.tiff")
    assert failed.inner_text() == "Échec de la conversion"
    assert OUT_OF_MEMORY in (failed.get_attribute("title") or "")
    tab.assert_no_console_errors()


def test_statuses_refresh_while_converting_then_polling_stops(
    states: ConversionHub, tab: Tab
) -> None:
    hub, page = states, tab.page
    # Each poll asks for the details of the slides still queued or converting.
    listed: list[float] = []
    page.on(
        "request",
        lambda r: listed.append(time.monotonic()) if DETAIL.search(r.url) else None,
    )
    open_worklist(page, hub)
    wait_badge(page, hub, "converting.tiff", "Converting 42%")

    # The worker gets on: the page follows without a reload.
    hub.set_state("converting.tiff", "converting", "converting", percent=77.9)
    wait_badge(page, hub, "converting.tiff", "Converting 77%")
    hub.set_state("queued.tiff", "converting", "converting", percent=5.0)
    wait_badge(page, hub, "queued.tiff", "Converting 5%")
    # Both done (the pyramid was not needed: the original serves).
    hub.set_state("converting.tiff", "ready", "skipped")
    hub.set_state("queued.tiff", "ready", "skipped")
    for name in ("converting.tiff", "queued.tiff"):
        wait_badge(page, hub, name, "Ready")
        assert "status-ready" in (badge(page, hub, name).get_attribute("class") or "")
    # Only the failed slide is left, which no poll can change: the page stops asking.
    polls = len(listed)
    assert polls >= 4, "the worklist did not ask the hub again"
    page.wait_for_timeout(POLL_S * 2.5 * 1000)
    assert len(listed) == polls, "the worklist still polls with nothing being converted"
    assert badge(page, hub, "failed.tiff").inner_text() == "Conversion failed"
    tab.assert_no_console_errors()


def test_nothing_polled_when_nothing_converts(conversion_hub: ConversionHub, tab: Tab) -> None:
    hub, page = conversion_hub, tab.page
    hub.set_state("queued.tiff", "ready", "skipped")
    hub.set_state("converting.tiff", "ready", "skipped")
    hub.set_state("failed.tiff", "failed", "failed", error=OUT_OF_MEMORY)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/slides" in r.url else None)
    open_worklist(page, hub)
    page.wait_for_timeout(POLL_S * 1.5 * 1000)
    # The worklist's two slide lists once each ("Shared with me", "To be linked"), and the
    # thumbnails; no slide detail, no second list.
    lists = [u for u in requests if "/api/slides?" in u]
    assert len(lists) == 2, lists
    assert {parse_qs(urlparse(u).query).get("linked", ["-"])[0] for u in lists} == {"-", "false"}
    assert [u for u in requests if DETAIL.search(u)] == []
    assert [u for u in requests if "/thumbnail" not in u and "/api/slides?" not in u] == []
    tab.assert_no_console_errors()
