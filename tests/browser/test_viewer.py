"""The browser viewer end to end: the real hub in a subprocess, Debian's chromium via Playwright.

The hub serves a synthetic slide (always) and, when the shared test data is present, real
Aperio and Hamamatsu slides. Every page load is checked for console errors; every slide view
is checked against the hub's own rendering of the slide (its thumbnail), so a blank, shifted
or wrongly coloured canvas fails.

Prerequisites (these tests fail, never skip, without them): /usr/bin/chromium (apt-get
install chromium) and a built viewer (cd viewer && npm ci && npm run build).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests.browser.hub import running_hub
from tests.database import database_url
from tests.hub import auth_headers

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "viewer" / "dist"
# Where the screenshot tests write: an ignored folder, so that running the suite changes no
# tracked file; `make screenshots` points it at docs/screenshots to renew the docs' images.
SCREENSHOTS = Path(os.environ.get("IAIN_SCREENSHOTS_DIR") or REPO / "build" / "screenshots")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}


def _testdata() -> Path:
    path = Path(os.environ.get("IAIN_TESTDATA", "../shared/testdata"))
    return path if path.is_absolute() else (REPO / path).resolve()


TESTDATA = _testdata()
SYNTHETIC = "synthetic-HE.tiff"  # written by the fixture, ingested for centre "caen"
SYNTHETIC_MPP = 0.25  # iain.synthetic writes 0.25 µm/px: a 40x scan
# Real slides from the shared test data: (name in the catalogue, path, centre).
REAL_SLIDES = {
    "svs": ("CMU-1-Small-Region.svs", "aperio/CMU-1-Small-Region.svs", "caen"),
    "ndpi": ("test3-DAPI-2-(387).ndpi", "hamamatsu/test3-DAPI-2-(387).ndpi", "caen"),
}
# The browser is a pathologist of Caen (every slide above is Caen's: the full view); the
# pages send its API token (exchange.access.policy decides what it sees).
BROWSER_USER = "pathologist.caen"
CENTRE_NAMES = {"caen": "Centre François Baclesse", "lille": "Centre Oscar Lambret"}

LOAD_TIMEOUT_MS = 30_000
# The viewer's console may show this for a 404 the page asked for on purpose, nothing else.
HTTP_404 = "the server responded with a status of 404"
TIMES = "\N{MULTIPLICATION SIGN}"  # as in the viewer's "40x" and "2,220 x 2,967 px"


# ---- the hub ------------------------------------------------------------------------------


@dataclass
class Hub:
    url: str
    slides: dict[str, dict[str, Any]]  # catalogue name -> GET /api/slides entry
    missing: dict[str, str] = field(default_factory=dict)  # sample -> why it is absent
    # Authorization of BROWSER_USER: sent by every page (extra_http_headers) and API call.
    headers: dict[str, str] = field(default_factory=dict)

    def slide(self, name: str) -> dict[str, Any]:
        return self.slides[name]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, headers=self.headers)


def _hub_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAIN_")}
    env["IAIN_HOME"] = str(home / ".iain")
    env["IAIN_DATABASE_URL"] = database_url(home / ".iain")
    return env


def _ingest(env: dict[str, str], cwd: Path, path: Path, centre: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "iain.cli", "ingest", "--centre", centre, str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"iain ingest {path} failed:\n{run.stdout}\n{run.stderr}"


def browser_headers(home: Path, centre: str = "caen") -> dict[str, str]:
    """The API token of BROWSER_USER (a pathologist of `centre`) in the hub at `home`."""
    iain_home = home / ".iain"
    settings = Settings(home=iain_home, database_url=database_url(iain_home))
    return auth_headers(settings, BROWSER_USER, centre=centre)


def _require_prerequisites() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    if not (DIST / "index.html").is_file():
        pytest.fail(f"{DIST} is not built: run `cd viewer && npm ci && npm run build`")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("hub")
    env = _hub_env(home)

    synthetic = home / SYNTHETIC
    write_synthetic_slide(synthetic, 3000, 2000, seed=3)
    _ingest(env, home, synthetic, "caen")
    missing = {}
    for sample, (_name, relative, centre) in REAL_SLIDES.items():
        path = TESTDATA / relative
        if path.is_file():
            _ingest(env, home, path, centre)
        else:
            missing[sample] = f"test data not found: {path} (set IAIN_TESTDATA)"

    with running_hub(home, env) as url:
        headers = browser_headers(home)
        listed = httpx.get(url + "/api/slides", timeout=30, headers=headers).json()["items"]
        yield Hub(url, {s["name"]: s for s in listed}, missing, headers)


def _real_slide(hub: Hub, sample: str) -> dict[str, Any]:
    if sample in hub.missing:
        pytest.skip(hub.missing[sample])
    return hub.slide(REAL_SLIDES[sample][0])


# ---- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    _require_prerequisites()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Tab:
    page: Page
    console_errors: list[str]
    tile_responses: list[tuple[str, int]]  # (url, status) of every tile the page fetched

    def assert_no_console_errors(self, allow: str | None = None) -> None:
        errors = [e for e in self.console_errors if not (allow and allow in e)]
        assert errors == [], f"console errors: {errors}"


@pytest.fixture
def tab(browser: Browser, hub: Hub) -> Iterator[Tab]:
    context = browser.new_context(
        viewport=VIEWPORT,  # type: ignore[arg-type]
        extra_http_headers=hub.headers,
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
        lambda r: (
            tab.tile_responses.append((r.url, r.status))
            if "_files/" in r.url or ("/iiif/3/" in r.url and not r.url.endswith("info.json"))
            else None
        ),
    )
    yield tab
    context.close()


def open_slide(tab: Tab, hub: Hub, slide: dict[str, Any], protocol: str | None = None) -> None:
    query = f"?protocol={protocol}" if protocol else ""
    tab.page.goto(f"{hub.url}/viewer/{slide['id']}{query}")
    wait_fully_loaded(tab.page)


def wait_fully_loaded(page: Page) -> None:
    """Until OpenSeadragon has every tile of the view at the best resolution, and drew it."""
    page.wait_for_function("() => window.iain !== undefined && window.iain.fullyLoaded()")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def image_on_screen(tab: Tab) -> np.ndarray:
    """The slide as the viewer shows it: a screenshot of the image's rectangle, controls hidden."""
    page = tab.page
    rect = page.evaluate(
        """() => {
            const v = window.iain.viewer;
            const bounds = v.world.getItemAt(0).getBounds(true);
            const r = v.viewport.viewportToViewerElementRectangle(bounds);
            const e = v.element.getBoundingClientRect();
            const left = Math.max(e.left + r.x, e.left), top = Math.max(e.top + r.y, e.top);
            const right = Math.min(e.left + r.x + r.width, e.right);
            const bottom = Math.min(e.top + r.y + r.height, e.bottom);
            for (const c of v.controls) c.setVisible(false);
            return {x: left, y: top, width: right - left, height: bottom - top};
        }"""
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    # Whole pixels strictly inside the image: no background at the edges.
    x0, y0 = int(np.ceil(rect["x"])) + 1, int(np.ceil(rect["y"])) + 1
    x1 = int(np.floor(rect["x"] + rect["width"])) - 1
    y1 = int(np.floor(rect["y"] + rect["height"])) - 1
    png = page.screenshot(clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
    page.evaluate("() => { for (const c of window.iain.viewer.controls) c.setVisible(true); }")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def assert_matches_server_rendering(tab: Tab, hub: Hub, slide: dict[str, Any]) -> None:
    shown = image_on_screen(tab)
    thumbnail = Image.open(io.BytesIO(hub.get(f"{slide['thumbnail_url']}?size=512").content))
    reference = np.asarray(thumbnail.convert("RGB"), dtype=np.float64)
    # The whole slide is in view at the home zoom: same aspect ratio as the thumbnail.
    assert shown.shape[0] > 200 and shown.shape[1] > 100, (
        f"image too small on screen: {shown.shape}"
    )
    assert abs(shown.shape[1] / shown.shape[0] - reference.shape[1] / reference.shape[0]) < 0.02
    assert shown.std(axis=(0, 1)).max() > 10, "the canvas is (nearly) uniform: nothing drawn"
    mean_difference = np.abs(shown.mean(axis=(0, 1)) - reference.mean(axis=(0, 1)))
    assert mean_difference.max() < 6, (
        f"mean colour differs from the thumbnail's by {mean_difference}"
    )
    # Pixel by pixel at 64 pixels wide (sub-pixel resampling differences average out there):
    # a flipped view or one shifted by a tile scores ≥ 13 on average, a missing tile ≥ 100
    # over its area; the right view scores ~2.5 and ~20.
    difference = np.abs(
        _resized(shown, 64, reference.shape) - _resized(reference, 64, reference.shape)
    )
    per_pixel = difference.mean(axis=2)
    assert per_pixel.mean() < 6, f"the view differs from the thumbnail: {per_pixel.mean():.1f}"
    assert np.percentile(per_pixel, 99) < 40, "part of the view differs from the thumbnail"


def _resized(image: np.ndarray, width: int, shape: tuple[int, ...]) -> np.ndarray:
    size = (width, max(1, round(width * shape[0] / shape[1])))
    pil = Image.fromarray(image.astype(np.uint8)).resize(size, Image.Resampling.BOX)
    return np.asarray(pil, dtype=np.float64)


# ---- serving -----------------------------------------------------------------------------


def test_hub_serves_viewer_without_shadowing_api(hub: Hub) -> None:
    slide = hub.slide(SYNTHETIC)
    for path in ("/", f"/viewer/{slide['id']}", "/viewer/anything/at/all?protocol=iiif"):
        page = hub.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert '<div id="app">' in page.text
    assert hub.get("/openseadragon-images/zoomin_rest.png").headers["content-type"] == "image/png"
    assert hub.get("/api/slides").json()["items"][0]["id"]
    assert hub.get("/api/nope").status_code == 404
    assert hub.get("/api/nope").json() == {"detail": "Not Found"}
    assert hub.get("/api/slides/nope").status_code == 404
    assert "Size" in hub.get(slide["dzi_url"]).text
    assert hub.get(slide["iiif_url"]).json()["width"] == slide["width"]


# ---- worklist ------------------------------------------------------------------------------


def test_worklist_lists_slides_with_thumbnails(hub: Hub, tab: Tab) -> None:
    """No rule links these slides to a case: they are the worklist's "To be linked"."""
    page = tab.page
    page.goto(hub.url + "/")
    section = page.locator(".unlinked-section")
    rows = section.locator("tr.slide")
    rows.first.wait_for()
    assert rows.count() == len(hub.slides)
    page.wait_for_function(
        "() => [...document.querySelectorAll('td.thumb img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    for name, slide in hub.slides.items():
        row = section.locator(f"tr[data-slide-id='{slide['id']}']")
        assert row.locator("td.name").inner_text() == name
        assert row.locator("td.status").inner_text() == "Ready"
        assert (
            f"{slide['width']:,} {TIMES} {slide['height']:,} px"
            in row.locator("td.size").inner_text()
        )
    synthetic = section.locator(f"tr[data-slide-id='{hub.slide(SYNTHETIC)['id']}']")
    assert synthetic.locator("td.centre").inner_text() == CENTRE_NAMES["caen"]
    assert f"40{TIMES} · 0.25 µm/px" in synthetic.locator("td.size").inner_text()
    count = len(hub.slides)
    assert section.locator(".section-count").inner_text() == (
        f"{count} slide{'s' if count > 1 else ''}"
    )
    # No case yet, and nothing shared with this centre: those say so, or are not shown.
    assert page.locator(".case-count").inner_text() == "No cases"
    assert page.locator(".cases-message").inner_text().startswith("No cases yet.")
    assert page.locator(".shared-section").is_hidden()
    tab.assert_no_console_errors()


def test_worklist_search_asks_the_hub(hub: Hub, tab: Tab) -> None:
    """The search is the hub's (a word of the file name, accents and case folded), and the
    address keeps it."""
    page = tab.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/slides?" in r.url else None)
    page.goto(hub.url + "/")
    page.locator("tr.slide").first.wait_for()
    search = page.get_by_role("searchbox")
    rows = page.locator(".unlinked-section tr.slide td.name")

    search.fill("synth")  # the beginning of the slide's name
    expect(rows).to_have_text([SYNTHETIC])
    assert page.url.endswith("/?q=synth")  # kept in the address for "back"
    assert any(parse_qs(urlparse(u).query).get("q") == ["synth"] for u in asked)
    search.fill("SYNTHÉTIC")  # case and accents folded
    expect(rows).to_have_text([SYNTHETIC])
    search.fill("no such slide")
    expect(page.get_by_role("status")).to_have_text("No case or slide matches “no such slide”.")
    assert page.locator("tr.slide").count() == 0
    search.fill("")
    expect(rows).to_have_count(len(hub.slides))
    assert page.url == hub.url + "/"
    tab.assert_no_console_errors()


def test_click_in_worklist_opens_viewer(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slide = hub.slide(SYNTHETIC)
    page.goto(hub.url + "/")
    page.locator(f"tr[data-slide-id='{slide['id']}'] td.vendor").click()  # anywhere on the row
    page.wait_for_url(f"**/viewer/{slide['id']}")
    wait_fully_loaded(page)
    assert page.locator(".slide-name").inner_text() == SYNTHETIC
    assert CENTRE_NAMES["caen"] in page.locator(".slide-facts").inner_text()
    assert_matches_server_rendering(tab, hub, slide)
    page.get_by_role("link", name="Worklist").click()
    page.wait_for_url(hub.url + "/")
    tab.assert_no_console_errors()


# ---- viewer --------------------------------------------------------------------------------

SAMPLES = ["synthetic", "svs", "ndpi"]


@pytest.mark.parametrize("protocol", ["dzi", "iiif"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_viewer_draws_slide(hub: Hub, tab: Tab, sample: str, protocol: str) -> None:
    slide = hub.slide(SYNTHETIC) if sample == "synthetic" else _real_slide(hub, sample)
    open_slide(tab, hub, slide, protocol if protocol == "iiif" else None)
    assert tab.page.evaluate("() => window.iain.protocol") == protocol
    assert tab.tile_responses, "no tile was fetched"
    assert all(status == 200 for _url, status in tab.tile_responses), tab.tile_responses
    expected = f"/iiif/3/{slide['id']}/" if protocol == "iiif" else f"/slides/{slide['id']}_files/"
    assert all(expected in url for url, _status in tab.tile_responses), tab.tile_responses[:5]
    assert_matches_server_rendering(tab, hub, slide)
    assert (
        tab.page.get_by_role("button", name="IIIF").get_attribute("aria-pressed")
        == str(protocol == "iiif").lower()
    )
    tab.assert_no_console_errors()


def test_scale_bar_and_magnification_follow_zoom(hub: Hub, tab: Tab) -> None:
    page = tab.page
    open_slide(tab, hub, hub.slide(SYNTHETIC))

    def zoom_to(screen_pixels_per_image_pixel: float) -> tuple[str, str, float]:
        page.evaluate(
            """(ratio) => {
                const v = window.iain.viewer;
                v.viewport.zoomTo(v.world.getItemAt(0).imageToViewportZoom(ratio), null, true);
            }""",
            screen_pixels_per_image_pixel,
        )
        wait_fully_loaded(page)
        return (
            page.locator(".scale-control .magnification").inner_text(),
            page.locator(".scale-control .bar-label").inner_text(),
            page.locator(".scale-control .bar").bounding_box()["width"],  # type: ignore[index]
        )

    # One image pixel per screen pixel at 0.25 µm/px: 40x; 160 px at most is 40 µm -> 20 µm.
    magnification, label, width = zoom_to(1.0)
    assert (magnification, label) == (f"40{TIMES}", "20 µm")
    assert width == pytest.approx(20 / SYNTHETIC_MPP, abs=1)
    # A quarter of that: 10x, 1 µm/px -> 100 µm in 100 px.
    magnification, label, width = zoom_to(0.25)
    assert (magnification, label) == (f"10{TIMES}", "100 µm")
    assert width == pytest.approx(100, abs=1)
    # Far out (past the viewer's own zoom-out limit: constraints apply to user gestures):
    # 12.5 µm/px, 2 mm in 160 px.
    magnification, label, width = zoom_to(0.02)
    assert (magnification, label) == (f"0.8{TIMES}", "2 mm")
    assert width == pytest.approx(160, abs=1)
    tab.assert_no_console_errors()


def test_zoom_buttons_and_full_screen(hub: Hub, tab: Tab) -> None:
    page = tab.page
    open_slide(tab, hub, hub.slide(SYNTHETIC))
    zoom = "() => window.iain.viewer.viewport.getZoom()"
    before = page.evaluate(zoom)
    page.get_by_title("Zoom in").click()
    page.wait_for_function(f"() => ({zoom})() > {before} * 1.5")
    assert page.locator(".navigator").is_visible()  # the minimap
    page.get_by_title("Toggle full page").click()
    page.wait_for_function("() => window.iain.viewer.isFullPage()")
    box = page.evaluate("() => window.iain.viewer.container.getBoundingClientRect().toJSON()")
    assert (box["width"], box["height"]) == (VIEWPORT["width"], VIEWPORT["height"])
    page.get_by_title("Toggle full page").click()
    page.wait_for_function("() => !window.iain.viewer.isFullPage()")
    wait_fully_loaded(page)
    tab.assert_no_console_errors()


def test_switching_protocol_keeps_the_view(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slide = hub.slide(SYNTHETIC)
    open_slide(tab, hub, slide)
    page.evaluate(
        """() => {
            const v = window.iain.viewer;
            v.viewport.zoomTo(v.world.getItemAt(0).imageToViewportZoom(0.5), null, true);
        }"""
    )
    wait_fully_loaded(page)
    before = page.evaluate("() => window.iain.viewer.viewport.getBounds(true)")
    tab.tile_responses.clear()
    page.get_by_role("button", name="IIIF").click()
    page.wait_for_function("() => document.getElementById('app').dataset.state === 'ready'")
    wait_fully_loaded(page)
    # The address keeps the view too (?x=&y=&zoom=), see test_navigation.py.
    assert f"/viewer/{slide['id']}?" in page.url and page.url.endswith("&protocol=iiif")
    # Tiles of the DeepZoom image still in flight may land after the click: ask the image.
    assert any("/iiif/3/" in url for url, _ in tab.tile_responses)
    assert page.evaluate("() => window.iain.viewer.world.getItemCount()") == 1
    tile_url = page.evaluate(
        "() => window.iain.viewer.world.getItemAt(0).source.getTileUrl(8, 0, 0)"
    )
    assert f"/iiif/3/{slide['id']}/" in tile_url
    after = page.evaluate("() => window.iain.viewer.viewport.getBounds(true)")
    for key in ("x", "y", "width", "height"):
        assert after[key] == pytest.approx(before[key], abs=1e-3), key
    tab.assert_no_console_errors()


def test_unknown_slide_shows_message(hub: Hub, tab: Tab) -> None:
    page = tab.page
    page.goto(hub.url + "/viewer/no-such-slide")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Slide not found" in alert.inner_text()
    assert "no-such-slide" in alert.inner_text()
    assert page.evaluate("() => document.getElementById('app').dataset.state") == "error"
    alert.get_by_role("link", name="Back to the worklist").click()
    page.wait_for_url(hub.url + "/")
    # The 404 of /api/slides/no-such-slide is the only console message allowed.
    tab.assert_no_console_errors(allow=HTTP_404)


# ---- screenshots for the docs ---------------------------------------------------------------


def test_docs_screenshots(hub: Hub, tab: Tab) -> None:
    """docs/screenshots/{worklist,viewer}.png, with the real slides (never replaced by views
    of the synthetic one alone)."""
    slide = _real_slide(hub, "svs")
    page = tab.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(hub.url + "/")
    page.wait_for_function(
        "() => document.querySelectorAll('td.thumb img').length > 0 && "
        "[...document.querySelectorAll('td.thumb img')].every(i => i.complete && i.naturalWidth)"
    )
    page.screenshot(path=SCREENSHOTS / "worklist.png")
    open_slide(tab, hub, slide)
    page.evaluate(
        """() => {
            const v = window.iain.viewer;
            v.viewport.zoomTo(v.world.getItemAt(0).imageToViewportZoom(0.5), null, true);
        }"""
    )
    wait_fully_loaded(page)
    page.screenshot(path=SCREENSHOTS / "viewer.png")
    tab.assert_no_console_errors()
