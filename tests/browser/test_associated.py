"""The slide page's "Label / Macro" panel: shown only for the associated images the hub lists
(none for a de-identified slide), fetched only when the user opens it.

The hub, browser and tab fixtures are test_viewer.py's (same prerequisites). The Aperio
sample has a label (387 x 463), a macro (1280 x 431) and a thumbnail; the synthetic slide has
no associated image.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image

from iain.settings import Settings
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import SCREENSHOTS, SYNTHETIC, Hub, Tab, open_slide
from tests.database import database_url
from tests.hub import auth_headers

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser
hub = test_viewer.hub
tab = test_viewer.tab


def associated_requests(tab: Tab) -> list[str]:
    requests: list[str] = []
    tab.page.on("request", lambda r: requests.append(r.url) if "/associated/" in r.url else None)
    return requests


def test_label_and_macro_shown_on_request(hub: Hub, tab: Tab) -> None:
    if "svs" in hub.missing:
        pytest.skip(hub.missing["svs"])
    slide = test_viewer.REAL_SLIDES["svs"][0]
    detail = hub.get(f"/api/slides/{hub.slide(slide)['id']}").json()
    assert set(detail["associated_images"]) == {"label", "macro", "thumbnail"}
    page = tab.page
    requests = associated_requests(tab)
    open_slide(tab, hub, hub.slide(slide))
    button = page.get_by_role("button", name="Label / Macro")
    assert button.is_visible()
    assert button.get_attribute("aria-expanded") == "false"
    assert requests == [], "nothing is fetched before the user asks"

    button.click()
    panel = page.locator(".associated-panel")
    assert panel.is_visible()
    assert button.get_attribute("aria-expanded") == "true"
    # Label and macro first, each image drawn at the size the hub serves it.
    figures = panel.locator("figure")
    assert figures.evaluate_all("fs => fs.map(f => f.dataset.name)") == [
        "label",
        "macro",
        "thumbnail",
    ]
    assert panel.locator("figcaption").all_inner_texts()[:2] == ["Label", "Macro (overview)"]
    page.wait_for_function(
        "() => [...document.querySelectorAll('.associated-panel img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    for name, url in detail["associated_images"].items():
        served = Image.open(io.BytesIO(hub.get(url).content))
        shown = panel.locator(f"figure[data-name='{name}'] img").evaluate(
            "img => [img.naturalWidth, img.naturalHeight]"
        )
        assert tuple(shown) == served.size, name
    assert tuple(
        panel.locator("figure[data-name='label'] img").evaluate(
            "img => [img.naturalWidth, img.naturalHeight]"
        )
    ) == (387, 463)
    assert sorted(u.rsplit("/", 1)[1] for u in requests) == ["label", "macro", "thumbnail"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "label-macro.png"))

    panel.get_by_role("button", name="Close").click()
    assert panel.is_hidden()
    button.click()  # open again: the images are not fetched twice
    assert panel.is_visible()
    assert len(requests) == 3
    tab.assert_no_console_errors()


def test_no_panel_without_associated_images(hub: Hub, tab: Tab) -> None:
    slide = hub.slide(SYNTHETIC)
    assert hub.get(f"/api/slides/{slide['id']}").json()["associated_images"] == {}
    page = tab.page
    requests = associated_requests(tab)
    open_slide(tab, hub, slide)
    assert page.locator(".associated-button").count() == 1
    assert page.locator(".associated-button").is_hidden()
    assert page.locator(".associated-panel").count() == 0
    assert requests == []
    tab.assert_no_console_errors()


@dataclass
class SharedSlide:
    url: str
    public_id: str  # the slide as Rouen sees it: de-identified
    rouen: dict[str, str]  # a pathologist of Rouen's Authorization header


@pytest.fixture(scope="module")
def shared_slide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedSlide]:
    """The Aperio sample, Caen's, shared with Rouen (a grant): Rouen gets the de-identified view."""
    path = test_viewer.TESTDATA / test_viewer.REAL_SLIDES["svs"][1]
    if not path.is_file():
        pytest.skip(f"test data not found: {path} (set IAIN_TESTDATA)")
    home = tmp_path_factory.mktemp("hub-shared")
    env = test_viewer._hub_env(home)
    test_viewer._ingest(env, home, path, "caen")
    with running_hub(home, env) as url:
        caen = test_viewer.browser_headers(home, "caen")
        iain_home = home / ".iain"
        settings = Settings(home=iain_home, database_url=database_url(iain_home))
        rouen = auth_headers(settings, "pathologist.rouen", centre="rouen")
        (slide,) = httpx.get(url + "/api/slides", headers=caen, timeout=30).json()["items"]
        grant = {"slide_id": slide["id"], "centre": "rouen", "purpose": "second_opinion"}
        created = httpx.post(url + "/api/grants", json=grant, headers=caen, timeout=30)
        assert created.status_code == 201, created.text
        (shared,) = httpx.get(url + "/api/slides", headers=rouen, timeout=30).json()["items"]
        assert shared["view"] == "deidentified"
        yield SharedSlide(url, shared["id"], rouen)


def test_no_label_on_a_deidentified_slide(shared_slide: SharedSlide, tab: Tab) -> None:
    shared = shared_slide
    page = tab.page
    page.set_extra_http_headers(shared.rouen)  # this hub's Rouen user, not the module hub's
    requests = associated_requests(tab)
    page.goto(f"{shared.url}/viewer/{shared.public_id}")
    test_viewer.wait_fully_loaded(page)  # the slide itself is shown
    assert page.locator(".associated-button").is_hidden()
    assert page.locator(".associated-panel").count() == 0
    assert requests == []
    # The annotation and overlay panels still ask for their lists, which the de-identified
    # view answers 404 (not this test's subject).
    tab.assert_no_console_errors(allow=test_viewer.HTTP_404)
