"""The case-centric worklist in the browser: cases as rows with their stains and their slides'
thumbnails, the hub's search (accents and case folded) and filters kept in the address,
paging by cursor ("Load more", and the next page on scrolling), the "To be linked" and
"Shared with me" sections, the slide page's case line and its editing form, next/previous
slide within a case, and a phone-sized screen.

A hub of its own: slides ingested for Caen, then placed into cases through the API
(PUT /api/slides/{id}/case, PATCH /api/cases/{id}) as a pathologist would; one slide of
Lille placed into a Lille case and shared with Caen. Browser fixtures are test_viewer.py's
(same prerequisites: /usr/bin/chromium and a built viewer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from iain.settings import Settings
from iain.synthetic import MPP, build
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import (
    LOAD_TIMEOUT_MS,
    SCREENSHOTS,
    VIEWPORT,
    Tab,
    wait_fully_loaded,
)
from tests.database import database_url
from tests.hub import auth_headers, ingest

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser

# reference -> (organ, specimen type, received on, status, [(block, stain), ...]); the
# slides in the order they are ingested (and so listed within a block).
CASES: dict[str, tuple[str, str, str, str, list[tuple[str, str]]]] = {
    "B26-00123": (
        "Breast",
        "Core biopsy",
        "2026-03-02",
        "in_progress",
        [("A1", "HE"), ("A1", "HER2"), ("A1", "ER"), ("A2", "Ki67"), ("A2", "PR")],
    ),
    "B26-00187": ("Colon", "Resection", "2026-03-05", "received", [("A1", "HE"), ("B1", "HE")]),
    "HÉM-26-0042": (
        "Lymph node",
        "Excision",
        "2026-02-20",
        "signed_out",
        [("A1", "HE"), ("A1", "CD20")],
    ),
    "B26-00201": ("Skin", "Punch biopsy", "2026-03-09", "received", [("A1", "HE")]),
    "C26-00012": ("Lung", "Biopsy", "2026-01-15", "signed_out", [("A1", "HE"), ("A1", "TTF1")]),
}
# Newest received first: the worklist's default order.
BY_DATE = ["B26-00201", "B26-00187", "B26-00123", "HÉM-26-0042", "C26-00012"]
UNLINKED = "scan-0007.tiff"
# Placed by hand in test_edit_form_sets_case_block_and_stain.
TO_PLACE = "scan-0008.tiff"
LILLE_REFERENCE = "L26-0009"
PHONE = {"width": 390, "height": 844}
IHC = {"HER2", "ER", "Ki67", "PR", "CD20", "TTF1"}


@dataclass
class CasesHub:
    url: str
    headers: dict[str, str]  # BROWSER_USER's: a pathologist of Caen
    home: Path
    # slide name -> id; case reference -> id (Caen's)
    slides: dict[str, str] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)
    shared_id: str = ""  # the Lille slide, as Caen sees it (opaque id)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def place(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.put(
            f"{self.url}/api/slides/{self.slides[name]}/case",
            json=body,
            headers=self.headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        placed: dict[str, Any] = response.json()
        return placed


def _write_slide(path: Path, seed: int, stain: str) -> None:
    """A small pyramidal TIFF like iain.synthetic's, H&E- or IHC-looking (thumbnails differ)."""
    image = build(1200, 900, seed, "ihc" if stain in IHC else "he")
    image.tiffsave(
        str(path),
        tile=True,
        pyramid=True,
        compression="jpeg",
        Q=80,
        tile_width=256,
        tile_height=256,
        bigtiff=True,
        resunit="cm",
        xres=1000.0 / MPP,
        yres=1000.0 / MPP,
    )


def slide_name(reference: str, block: str, stain: str) -> str:
    return f"{reference}_{block}_{stain}.tiff".replace("É", "E")


@pytest.fixture(scope="module")
def cases_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasesHub]:
    home = tmp_path_factory.mktemp("hub-cases")
    env = test_viewer._hub_env(home)
    iain_home = home / ".iain"
    settings = Settings(home=iain_home, database_url=database_url(iain_home))
    ids: dict[str, str] = {}
    seed = 20
    for reference, (*_facts, slides) in CASES.items():
        for block, stain in slides:
            name = slide_name(reference, block, stain)
            _write_slide(home / name, seed, stain)
            ids[name] = ingest(settings, home / name, "caen")
            seed += 1
    for name in (UNLINKED, TO_PLACE, "lille-scan.tiff"):
        _write_slide(home / name, seed, "HE")
        seed += 1
    for name in (UNLINKED, TO_PLACE):
        ids[name] = ingest(settings, home / name, "caen")
    lille_slide = ingest(settings, home / "lille-scan.tiff", "lille")
    with running_hub(home, env) as url:
        hub = CasesHub(url, test_viewer.browser_headers(home), home, ids)
        for reference, (organ, specimen, received, status, slides) in CASES.items():
            for block, stain in slides:
                placed = hub.place(
                    slide_name(reference, block, stain),
                    {"case_reference": reference, "block": block, "stain": stain},
                )
            hub.cases[reference] = placed["case_id"]
            patched = httpx.patch(
                f"{url}/api/cases/{placed['case_id']}",
                json={
                    "organ": organ,
                    "specimen_type": specimen,
                    "received_on": received,
                    "status": status,
                },
                headers=hub.headers,
                timeout=30,
            )
            assert patched.status_code == 200, patched.text
        # Lille places its slide into a case of its own and shares it with Caen.
        lille = auth_headers(settings, "pathologist.lille", centre="lille")
        linked = httpx.put(
            f"{url}/api/slides/{lille_slide}/case",
            json={"case_reference": LILLE_REFERENCE, "block": "A1", "stain": "HE"},
            headers=lille,
            timeout=30,
        )
        assert linked.status_code == 200, linked.text
        grant = {"slide_id": lille_slide, "centre": "caen", "purpose": "second_opinion"}
        created = httpx.post(url + "/api/grants", json=grant, headers=lille, timeout=30)
        assert created.status_code == 201, created.text
        (shared,) = hub.get("/api/slides", shared="true")["items"]
        hub.shared_id = shared["id"]
        yield hub


def new_tab(browser: Browser, hub: CasesHub, **options: Any) -> Tab:
    context = browser.new_context(
        viewport=options.pop("viewport", VIEWPORT),
        extra_http_headers=options.pop("headers", hub.headers),
        **options,
    )
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    tab = Tab(page, [], [])

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.console_errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.console_errors.append(f"uncaught: {error}"))
    return tab


@pytest.fixture
def tab(browser: Browser, cases_hub: CasesHub) -> Iterator[Tab]:
    tab = new_tab(browser, cases_hub)
    yield tab
    tab.page.context.close()


def references(page: Page) -> Any:
    """The case rows' references, in order (a locator: expect() retries until it matches)."""
    return page.locator("li.case .case-reference")


def open_worklist(page: Page, hub: CasesHub, query: str = "") -> None:
    page.goto(f"{hub.url}/{query}")
    page.wait_for_selector("main.worklist[data-state='ready']")


def case_row(page: Page, reference: str) -> Any:
    return page.locator("li.case").filter(
        has=page.locator(".case-reference", has_text=re.compile(f"^{re.escape(reference)}$"))
    )


def wait_thumbnails(page: Page) -> None:
    """Until every thumbnail on the screen is drawn (those below load as they scroll in)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.case-slide img, td.thumb img')]"
        ".filter(img => img.getBoundingClientRect().top < innerHeight)"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


def whole_page(page: Page) -> None:
    """The screen as tall as the page (for a screenshot of all of it, thumbnails loaded)."""
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": height})  # type: ignore[index]
    wait_thumbnails(page)


# ---- cases as rows --------------------------------------------------------------------------


def test_cases_are_rows_with_stains_and_slide_thumbnails(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    api = hub.get("/api/cases")
    assert [c["reference"] for c in api["items"]] == BY_DATE
    open_worklist(page, hub)
    expect(references(page)).to_have_text(BY_DATE)
    assert page.locator(".case-count").inner_text() == "5 cases"
    wait_thumbnails(page)
    for case in api["items"]:
        row = case_row(page, case["reference"])
        organ, specimen, _received, _status, slides = CASES[case["reference"]]
        # The case's stains as chips, as the hub lists them (every stain once).
        assert row.locator(".stains .chip").all_inner_texts() == case["stains"]
        assert set(case["stains"]) == {stain for _block, stain in slides}
        assert row.locator(".case-about").inner_text() == f"{organ} · {specimen}"
        # One thumbnail per slide, in block order, its stain and block under it.
        thumbnails = row.locator(".case-slide")
        assert [
            thumbnails.nth(i).get_attribute("data-slide-id") for i in range(thumbnails.count())
        ] == [s["id"] for s in case["slides"]]
        captions = [
            (
                s.locator(".case-slide-stain").inner_text(),
                s.locator(".case-slide-block").inner_text(),
            )
            for s in thumbnails.all()
        ]
        assert sorted(captions) == sorted((stain, block) for block, stain in slides)
    breast = case_row(page, "B26-00123")
    assert breast.locator(".case-status").inner_text() == "In progress"
    assert case_row(page, "C26-00012").locator(".case-status").inner_text() == "Signed out"
    assert "Received 2 Mar 2026" in breast.locator(".case-facts").inner_text()
    assert "5 slides" in breast.locator(".case-facts").inner_text()

    # A thumbnail opens its slide, whose header names its case, block and stain.
    her2 = hub.slides[slide_name("B26-00123", "A1", "HER2")]
    breast.locator(f".case-slide[data-slide-id='{her2}'] a").click()
    page.wait_for_url(f"**/viewer/{her2}")
    wait_fully_loaded(page)
    assert page.locator(".slide-case-text").inner_text() == "Case B26-00123 · Block A1 · HER2"
    tab.assert_no_console_errors()


def test_open_side_by_side_shows_the_cases_first_slides(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    case = hub.get(f"/api/cases/{hub.cases['B26-00123']}")
    open_worklist(page, hub)
    # A one-slide case has nothing to put side by side.
    assert case_row(page, "B26-00201").locator(".case-compare").count() == 0
    case_row(page, "B26-00123").get_by_role("link", name="Open side by side").click()
    page.wait_for_url("**/compare?slides=*")
    slides = parse_qs(urlparse(page.url).query)["slides"][0].split(",")
    assert slides == [s["id"] for s in case["slides"]][:4]  # the first four, in block order
    page.wait_for_function(
        "() => window.iain && window.iain.compare && window.iain.compare.fullyLoaded()"
    )
    assert page.locator(".compare-cell").count() == 4
    tab.assert_no_console_errors()


def test_next_and_previous_slide_stay_within_the_case(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    order = [s["id"] for s in hub.get(f"/api/cases/{hub.cases['C26-00012']}")["slides"]]
    assert len(order) == 2
    page.goto(f"{hub.url}/viewer/{order[0]}")
    wait_fully_loaded(page)
    page.keyboard.press("p")  # the case's first slide: no previous one (not another case's)
    page.keyboard.press("n")
    page.wait_for_url(f"**/viewer/{order[1]}")
    wait_fully_loaded(page)
    page.keyboard.press("n")  # the case's last: stays (the worklist's next slide is elsewhere)
    page.wait_for_timeout(1000)
    assert urlparse(page.url).path == f"/viewer/{order[1]}"
    page.keyboard.press("p")
    page.wait_for_url(f"**/viewer/{order[0]}")
    tab.assert_no_console_errors()


# ---- search and filters -------------------------------------------------------------------


def test_search_by_reference_prefix_folds_accents_and_case(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/cases" in r.url else None)
    open_worklist(page, hub)
    expect(references(page)).to_have_text(BY_DATE)
    search = page.get_by_role("searchbox")
    before = len(asked)
    search.press_sequentially("hem-26", delay=40)  # typed without its accent, in lower case
    expect(references(page)).to_have_text(["HÉM-26-0042"])
    # The hub searched (the page holds no list to filter), once the typing paused.
    searched = asked[before:]
    assert 1 <= len(searched) <= 2, searched
    assert parse_qs(urlparse(searched[-1]).query)["q"] == ["hem-26"]
    assert page.url == f"{hub.url}/?q=hem-26"
    assert page.locator(".case-count").inner_text() == "1 case"

    search.fill("HÉM 0042")  # accented, upper case, two words
    expect(references(page)).to_have_text(["HÉM-26-0042"])
    search.fill("b26-001")  # a prefix of two references
    expect(references(page)).to_have_text(["B26-00187", "B26-00123"])
    search.fill("ki67")  # a stain of one case's slides
    expect(references(page)).to_have_text(["B26-00123"])
    search.fill("zzz nothing")
    expect(page.get_by_role("status")).to_have_text("No case or slide matches “zzz nothing”.")
    assert references(page).count() == 0
    search.fill("")
    expect(references(page)).to_have_text(BY_DATE)
    assert page.url == hub.url + "/"
    tab.assert_no_console_errors()


def test_filters_live_in_the_url_and_a_reload_restores_them(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    open_worklist(page, hub)
    page.locator(".filter-status").select_option("received")
    expect(references(page)).to_have_text(["B26-00201", "B26-00187"])
    page.locator(".filter-sort").select_option("reference")
    expect(references(page)).to_have_text(["B26-00187", "B26-00201"])  # A to Z
    page.locator(".filter-order").select_option("desc")
    expect(references(page)).to_have_text(["B26-00201", "B26-00187"])
    page.locator(".filter-stain").fill("he")
    expect(page).to_have_url(re.compile(r"stain=he"))
    params = parse_qs(urlparse(page.url).query)
    assert params == {
        "status": ["received"],
        "stain": ["he"],
        "sort": ["reference"],
        "order": ["desc"],
    }
    shown = references(page).all_inner_texts()

    page.reload()
    page.wait_for_selector("main.worklist[data-state='ready']")
    expect(references(page)).to_have_text(shown)
    assert page.locator(".filter-status").input_value() == "received"
    assert page.locator(".filter-stain").input_value() == "he"
    assert page.locator(".filter-sort").input_value() == "reference"
    assert page.locator(".filter-order").input_value() == "desc"

    # Received dates: a link with them shows those cases only.
    open_worklist(page, hub, "?since=2026-02-01&until=2026-03-04")
    expect(references(page)).to_have_text(["B26-00123", "HÉM-26-0042"])
    assert page.locator(".filter-since").input_value() == "2026-02-01"
    page.locator(".filter-status").select_option("signed_out")
    expect(references(page)).to_have_text(["HÉM-26-0042"])
    assert parse_qs(urlparse(page.url).query)["status"] == ["signed_out"]

    # "Back" from a slide, and the slide page's own way back, return to the same list.
    filtered = page.url
    case_row(page, "HÉM-26-0042").locator(".case-slide a").first.click()
    page.wait_for_url("**/viewer/**")
    page.go_back()
    page.wait_for_url(filtered)
    expect(references(page)).to_have_text(["HÉM-26-0042"])
    case_row(page, "HÉM-26-0042").locator(".case-slide a").first.click()
    page.wait_for_url("**/viewer/**")
    page.get_by_role("link", name="Worklist").click()
    page.wait_for_url(filtered)
    expect(references(page)).to_have_text(["HÉM-26-0042"])

    page.get_by_role("button", name="Clear").click()
    expect(references(page)).to_have_text(BY_DATE)
    assert page.url == hub.url + "/"
    tab.assert_no_console_errors()


# ---- paging ---------------------------------------------------------------------------------


def test_load_more_pages_through_the_cases(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    # A screen the whole list fits on: no scrolling, so only the button loads more.
    page.set_viewport_size({"width": 1280, "height": 2400})
    open_worklist(page, hub, "?limit=2")
    expect(references(page)).to_have_text(BY_DATE[:2])
    count = page.locator(".case-count")
    assert count.inner_text() == "1–2 of 5 cases"
    more = page.locator(".cases-section .load-more")
    # The list fits on the screen: nothing is loaded until asked.
    page.wait_for_timeout(800)
    assert references(page).count() == 2
    more.click()
    expect(references(page)).to_have_text(BY_DATE[:4])
    assert count.inner_text() == "1–4 of 5 cases"
    more.click()
    expect(references(page)).to_have_text(BY_DATE)
    assert count.inner_text() == "5 cases"
    assert more.is_hidden()  # the last page
    tab.assert_no_console_errors()


def test_the_next_page_comes_on_scrolling(browser: Browser, cases_hub: CasesHub) -> None:
    hub = cases_hub
    tab = new_tab(browser, hub, viewport={"width": 1000, "height": 420})
    page = tab.page
    try:
        open_worklist(page, hub, "?limit=2")
        expect(references(page)).to_have_text(BY_DATE[:2])
        page.wait_for_timeout(500)
        assert references(page).count() == 2  # not before the user scrolls
        page.mouse.move(500, 300)
        for _ in range(12):
            page.mouse.wheel(0, 400)
            page.wait_for_timeout(150)
        expect(references(page)).to_have_text(BY_DATE)
        tab.assert_no_console_errors()
    finally:
        page.context.close()


# ---- the other sections ---------------------------------------------------------------------


def test_to_be_linked_and_shared_sections(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    open_worklist(page, hub)
    unlinked = page.locator(".unlinked-section")
    expect(unlinked).to_be_visible()
    row = unlinked.locator(f"tr[data-slide-id='{hub.slides[UNLINKED]}']")
    assert row.locator("td.name a").inner_text() == UNLINKED
    assert row.locator("td.status .badge").inner_text() == "Ready"
    wait_thumbnails(page)
    assert row.locator("td.thumb img").evaluate("img => img.naturalWidth") > 0
    # Slides in a case are not there; the shared slide neither (it is Lille's to link).
    listed = set(
        unlinked.locator("tr.slide").evaluate_all("rows => rows.map(r => r.dataset.slideId)")
    )
    api = {s["id"] for s in hub.get("/api/slides", linked="false", centre="caen")["items"]}
    assert listed == api and hub.slides[UNLINKED] in listed
    assert not listed & {s["id"] for c in hub.get("/api/cases")["items"] for s in c["slides"]}
    assert hub.shared_id not in listed

    shared = page.locator(".shared-section")
    row = shared.locator(f"tr[data-slide-id='{hub.shared_id}']")
    assert row.locator(".shared-badge").inner_text() == "Shared with you"
    assert row.locator(".shared-purpose").inner_text().strip() == "Second opinion"
    assert row.locator(".slide-place").inner_text() == f"Case {LILLE_REFERENCE} · Block A1 · HE"
    # A search narrows the sections too (the hub's search of file names and stains).
    page.get_by_role("searchbox").fill("scan-0007")
    expect(unlinked.locator("tr.slide")).to_have_count(1)
    expect(shared).to_be_hidden()
    expect(references(page)).to_have_count(0)
    assert page.locator(".cases-message").inner_text() == "No case matches “scan-0007”."
    tab.assert_no_console_errors()


# ---- the slide page's case line -------------------------------------------------------------


def test_edit_form_sets_case_block_and_stain(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    slide_id = hub.slides[TO_PLACE]
    page.goto(f"{hub.url}/viewer/{slide_id}")
    wait_fully_loaded(page)
    line = page.locator(".slide-case-text")
    expect(line).to_have_text("Not linked to a case")
    page.get_by_role("button", name="Edit case / block / stain").click()
    dialog = page.locator(".placement-dialog")
    expect(dialog).to_be_visible()
    # A reference with no letter or digit: the hub's reason, the form still open.
    dialog.get_by_label("Case reference").fill("---")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".placement-message")).to_contain_text("Not saved:")
    expect(dialog).to_be_visible()
    assert hub.get(f"/api/slides/{slide_id}")["case_id"] is None

    dialog.get_by_label("Case reference").fill("B26-00201")
    dialog.get_by_label("Block").fill("A2")
    dialog.get_by_label("Stain").fill("PAS")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(line).to_have_text("Case B26-00201 · Block A2 · PAS")
    detail = hub.get(f"/api/slides/{slide_id}")
    assert (detail["case_reference"], detail["block"], detail["stain"]) == (
        "B26-00201",
        "A2",
        "PAS",
    )
    assert detail["case_id"] == hub.cases["B26-00201"]

    # The stain changed again: the header follows without a reload.
    page.get_by_role("button", name="Edit case / block / stain").click()
    assert dialog.get_by_label("Stain").input_value() == "PAS"
    dialog.get_by_label("Stain").fill("Giemsa")
    dialog.get_by_role("button", name="Save").click()
    expect(line).to_have_text("Case B26-00201 · Block A2 · Giemsa")
    assert hub.get(f"/api/slides/{slide_id}")["stain"] == "Giemsa"
    # Its case now lists it, with that stain.
    case = hub.get(f"/api/cases/{hub.cases['B26-00201']}")
    assert "Giemsa" in case["stains"] and slide_id in [s["id"] for s in case["slides"]]
    # Back out of the case, as it was (the other tests count the cases' slides).
    hub.place(TO_PLACE, {"case_reference": None})
    tab.assert_no_console_errors(allow="400")


def test_no_edit_button_on_a_deidentified_slide(browser: Browser, cases_hub: CasesHub) -> None:
    """The form is for those who may place the slide: the user's own centre's slide, seen in
    full by an editing role. Not another centre's slide shared with a pathologist, nor the
    de-identified view an AI engineer has of their own centre's slides."""
    hub = cases_hub
    settings = Settings(home=hub.home / ".iain", database_url=database_url(hub.home / ".iain"))
    engineer = auth_headers(settings, "engineer.caen", centre="caen", roles=("ai_engineer",))
    listed = httpx.get(
        hub.url + "/api/slides", params={"q": "b26-00187"}, headers=engineer, timeout=30
    ).json()["items"]
    seen = [s for s in listed if s["block"] == "B1"]
    assert [(s["view"], s["stain"]) for s in seen] == [("deidentified", "HE")]
    for headers, slide_id, line in (
        (engineer, seen[0]["id"], "Case B26-00187 · Block B1 · HE"),
        (hub.headers, hub.shared_id, f"Case {LILLE_REFERENCE} · Block A1 · HE"),
    ):
        tab = new_tab(browser, hub, headers=headers)
        page = tab.page
        try:
            page.goto(f"{hub.url}/viewer/{slide_id}")
            wait_fully_loaded(page)
            expect(page.locator(".slide-case-text")).to_have_text(line)
            page.wait_for_function("() => document.querySelector('.account:not([hidden])')")
            assert page.locator(".placement-edit").is_hidden()  # /api/me has answered
            refused = httpx.put(
                f"{hub.url}/api/slides/{slide_id}/case",
                json={"case_reference": "X1", "stain": "PAS"},
                headers=headers,
                timeout=30,
            )
            assert refused.status_code in (403, 404), refused.text  # the hub refuses it too
            tab.assert_no_console_errors()
        finally:
            page.context.close()


# ---- small screens, French, screenshots -----------------------------------------------------


def test_phone_sized_worklist_has_no_horizontal_overflow(
    browser: Browser, cases_hub: CasesHub
) -> None:
    hub = cases_hub
    tab = new_tab(browser, hub, viewport=PHONE, is_mobile=True, has_touch=True)
    page = tab.page
    try:
        open_worklist(page, hub)
        expect(references(page)).to_have_text(BY_DATE)
        wait_thumbnails(page)
        overflow = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert overflow[0] <= overflow[1], f"the page scrolls sideways: {overflow}"
        # Every case row, thumbnail and the search box lie within the screen's width.
        boxes = page.locator("li.case, .case-slide, .search, .worklist-filters").evaluate_all(
            "els => els.map(e => [e.getBoundingClientRect().left, e.getBoundingClientRect().right])"
        )
        assert boxes and all(left >= 0 and right <= PHONE["width"] for left, right in boxes), boxes
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "worklist-phone.png")
        whole_page(page)
        page.screenshot(path=SCREENSHOTS / "worklist-phone-whole.png")
        page.set_viewport_size(PHONE)  # type: ignore[arg-type]
        # A thumbnail opens its slide with a tap.
        first = case_row(page, "B26-00187").locator(".case-slide a").first
        first.tap()
        page.wait_for_url("**/viewer/**")
        wait_fully_loaded(page)
        tab.assert_no_console_errors()
    finally:
        page.context.close()


def test_labels_in_french(cases_hub: CasesHub, tab: Tab) -> None:
    hub, page = cases_hub, tab.page
    page.add_init_script("localStorage.setItem('iain.language', 'fr')")
    open_worklist(page, hub, "?limit=2")
    expect(page.locator(".case-count")).to_have_text("1–2 sur 5 cas")
    row = case_row(page, "B26-00187")
    assert row.locator(".case-status").inner_text() == "Reçu"
    assert "Reçu le 5 mars 2026" in row.locator(".case-facts").inner_text()
    assert page.locator(".unlinked-section h2").inner_text() == "À rattacher"
    assert page.locator(".shared-section h2").inner_text() == "Partagées avec moi"
    assert page.locator(".cases-section .load-more").inner_text() == "Afficher plus"
    tab.assert_no_console_errors()


def test_screenshots(cases_hub: CasesHub, tab: Tab) -> None:
    """The worklist with its cases, and a slide page's header with its case line and form
    (under build/screenshots, or docs/screenshots with `make screenshots`)."""
    hub, page = cases_hub, tab.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    open_worklist(page, hub)
    whole_page(page)
    page.screenshot(path=SCREENSHOTS / "worklist-cases.png")
    page.set_viewport_size(VIEWPORT)  # type: ignore[arg-type]
    page.goto(f"{hub.url}/viewer/{hub.slides[slide_name('B26-00123', 'A1', 'HER2')]}")
    wait_fully_loaded(page)
    page.screenshot(path=SCREENSHOTS / "viewer-case.png")
    page.get_by_role("button", name="Edit case / block / stain").click()
    page.locator(".placement-dialog").wait_for()
    page.screenshot(path=SCREENSHOTS / "viewer-case-form.png")
    tab.assert_no_console_errors()
