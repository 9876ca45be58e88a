"""The compare page in the browser: two or four slides side by side, views locked in µm (so
slides scanned at different resolutions line up), offsets set while unlocked and kept when
locked again, free views when unlocked, the view link, and the ways in (worklist, slide page).

The hub, browser and tab fixtures are test_viewer.py's (same prerequisites: /usr/bin/chromium
and a built viewer). The synthetic slide is 0.25 µm/px, the Aperio sample 0.499 µm/px: a
follower whose centre matched in pixels rather than µm would be off by a factor of two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest
import tifffile
from playwright.sync_api import Page

from iain.synthetic import build, write_synthetic_slide
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import SCREENSHOTS, SYNTHETIC, Hub, Tab

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser
hub = test_viewer.hub
tab = test_viewer.tab

SETTLE_S = 10.0
# Centres agree to a fraction of a screen pixel: at the zooms used here one screen pixel is
# 0.5 to 4 µm.
UM = 0.05


def ids(hub: Hub, *names: str) -> list[str]:
    return [hub.slide(name)["id"] for name in names]


def svs_name(hub: Hub) -> str:
    if "svs" in hub.missing:
        pytest.skip(hub.missing["svs"])
    return test_viewer.REAL_SLIDES["svs"][0]


def open_compare(page: Page, hub: Hub, slide_ids: list[str], extra: str = "") -> None:
    page.goto(f"{hub.url}/compare?slides={','.join(slide_ids)}{extra}")
    page.wait_for_function(
        "() => window.iain && window.iain.compare && window.iain.compare.fullyLoaded()"
    )


def views(page: Page) -> list[dict[str, Any]]:
    """Every viewport's view in µm once nothing moves any more (animations over)."""
    deadline = time.monotonic() + SETTLE_S
    last: list[dict[str, Any]] = page.evaluate("() => window.iain.compare.sharedViews()")
    while True:
        time.sleep(0.15)
        now: list[dict[str, Any]] = page.evaluate("() => window.iain.compare.sharedViews()")
        if now == last:
            return now
        assert time.monotonic() < deadline, "the views never settled"
        last = now


def cell_centre(page: Page, index: int) -> tuple[float, float]:
    box = page.locator(".compare-cell").nth(index).bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page: Page, index: int, dx: float, dy: float) -> None:
    x, y = cell_centre(page, index)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=8)
    page.mouse.up()


def wheel(page: Page, index: int, notches: int) -> None:
    x, y = cell_centre(page, index)
    page.mouse.move(x, y)
    for _ in range(abs(notches)):
        page.mouse.wheel(0, -100 if notches > 0 else 100)
        page.wait_for_timeout(50)


def offset(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    return b["x"] - a["x"], b["y"] - a["y"]


def assert_same_place(a: dict[str, Any], b: dict[str, Any], shift: tuple[float, float]) -> None:
    """b shows the point a shows, moved by `shift` µm, at the same magnification."""
    assert b["x"] - a["x"] == pytest.approx(shift[0], abs=UM)
    assert b["y"] - a["y"] == pytest.approx(shift[1], abs=UM)
    assert b["zoom"] == pytest.approx(a["zoom"], rel=1e-6)
    assert b["rotation"] == pytest.approx(a["rotation"], abs=1e-6)


def test_locked_views_follow_in_micrometres(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slides = ids(hub, SYNTHETIC, svs_name(hub))
    open_compare(page, hub, slides)
    assert page.locator(".compare-cell").count() == 2
    assert page.get_by_role("button", name="Locked").get_attribute("aria-pressed") == "true"
    start = views(page)
    assert_same_place(start[0], start[1], (0, 0))  # no view in the link: lined up, no offset
    # Same magnification on screen: both scale bars read the same.
    bars = page.locator(".scale-control .magnification").all_inner_texts()
    assert len(bars) == 2 and bars[0] == bars[1]

    drag(page, 0, 180, -90)
    wheel(page, 0, 2)
    moved = views(page)
    assert moved[0]["zoom"] > start[0]["zoom"] * 1.5
    assert abs(moved[0]["x"] - start[0]["x"]) > 50  # it did move
    assert_same_place(moved[0], moved[1], (0, 0))
    # In the Aperio slide's own pixels the follower moved half as far as in the synthetic's.
    px = page.evaluate(
        """() => window.iain.compare.viewers.map(v => {
            const item = v.world.getItemAt(0);
            return item.viewportToImageCoordinates(v.viewport.getCenter(true)).x;
        })"""
    )
    assert px[1] * 0.499 == pytest.approx(px[0] * 0.25, abs=0.5)

    # The other viewport leads once touched.
    drag(page, 1, -120, 60)
    assert page.evaluate("() => window.iain.compare.active") == 1
    led = views(page)
    assert abs(led[1]["x"] - moved[1]["x"]) > 20
    assert_same_place(led[0], led[1], (0, 0))
    page.evaluate("() => window.iain.compare.viewers[1].viewport.setRotation(90, true)")
    turned = views(page)
    assert turned[0]["rotation"] == pytest.approx(90)
    assert_same_place(turned[0], turned[1], (0, 0))
    tab.assert_no_console_errors()


def test_offset_set_while_unlocked_is_kept(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slides = ids(hub, SYNTHETIC, svs_name(hub))
    open_compare(page, hub, slides)
    wheel(page, 0, 3)
    views(page)

    lock = page.locator(".compare-lock")
    lock.click()
    assert lock.get_attribute("aria-pressed") == "false"
    assert lock.inner_text() == "Unlocked"
    before = views(page)
    drag(page, 1, 150, 100)  # the second slide alone: this sets the offset
    after = views(page)
    assert after[0] == before[0], "unlocked, the other viewport must not move"
    shift = offset(after[0], after[1])
    assert abs(shift[0]) > 20 and abs(shift[1]) > 20

    lock.click()
    assert lock.get_attribute("aria-pressed") == "true"
    drag(page, 0, -200, 50)
    wheel(page, 0, -1)
    locked = views(page)
    assert abs(locked[0]["x"] - after[0]["x"]) > 20
    assert_same_place(locked[0], locked[1], shift)

    # The link carries both views: opened again, the offset is still there, and still locked.
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('v').length === 2")
    page.wait_for_timeout(400)  # the address follows the views at most every 250 ms
    link = page.url
    params = parse_qs(urlparse(link).query)
    assert params["slides"] == [",".join(slides)]
    assert "lock" not in params
    open_compare(page, hub, slides, "&" + urlparse(link).query.split("&", 1)[1])
    reopened = views(page)
    # Whole level-0 pixels in the link: within a pixel (0.5 µm) of where it was.
    assert reopened[1]["x"] - reopened[0]["x"] == pytest.approx(shift[0], abs=0.8)
    assert reopened[1]["y"] - reopened[0]["y"] == pytest.approx(shift[1], abs=0.8)
    drag(page, 0, 100, 100)
    moved = views(page)
    assert moved[1]["x"] - moved[0]["x"] == pytest.approx(
        reopened[1]["x"] - reopened[0]["x"], abs=UM
    )

    # Align drops the offset.
    page.get_by_role("button", name="Align").click()
    aligned = views(page)
    assert_same_place(aligned[0], aligned[1], (0, 0))
    tab.assert_no_console_errors()


def test_rotation_offset_is_kept_and_turns_the_follower(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slides = ids(hub, SYNTHETIC, svs_name(hub))
    open_compare(page, hub, slides)
    wheel(page, 0, 2)
    views(page)
    page.locator(".compare-lock").click()  # unlock
    x, y = cell_centre(page, 1)
    page.mouse.click(x, y)  # the second viewport becomes the active one
    assert page.evaluate("() => window.iain.compare.active") == 1
    page.get_by_role("slider", name="Rotation").fill("30")
    start = views(page)
    assert start[1]["rotation"] == pytest.approx(30)
    assert start[0]["rotation"] == pytest.approx(0)
    page.locator(".compare-lock").click()  # lock again: 30° between them, kept

    drag(page, 0, 160, -100)
    moved = views(page)
    assert moved[1]["rotation"] == pytest.approx(moved[0]["rotation"] + 30)
    # The same tissue under the same screen point: the leader's move, turned by -30°, is
    # the follower's move (screen = R(rotation)·(p - centre) in both).
    dx, dy = moved[0]["x"] - start[0]["x"], moved[0]["y"] - start[0]["y"]
    turn = np.radians(-30)
    assert abs(dx) > 20
    assert moved[1]["x"] - start[1]["x"] == pytest.approx(
        np.cos(turn) * dx - np.sin(turn) * dy, abs=UM
    )
    assert moved[1]["y"] - start[1]["y"] == pytest.approx(
        np.sin(turn) * dx + np.cos(turn) * dy, abs=UM
    )
    tab.assert_no_console_errors()


def test_unlocked_views_are_independent(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slides = ids(hub, SYNTHETIC, svs_name(hub))
    open_compare(page, hub, slides, "&lock=0")
    assert page.locator(".compare-lock").get_attribute("aria-pressed") == "false"
    before = views(page)
    drag(page, 0, 200, 0)
    wheel(page, 0, 2)
    after = views(page)
    assert after[0]["zoom"] > before[0]["zoom"] * 1.5
    assert after[1] == before[1]
    drag(page, 1, 0, 150)
    again = views(page)
    assert again[0] == after[0]
    assert again[1]["y"] != pytest.approx(after[1]["y"], abs=10)
    page.wait_for_function("() => new URLSearchParams(location.search).get('lock') === '0'")
    tab.assert_no_console_errors()


def test_four_viewports_follow_the_one_moved(hub: Hub, tab: Tab) -> None:
    page = tab.page
    names = [SYNTHETIC, svs_name(hub)]
    if "ndpi" not in hub.missing:
        names.append(test_viewer.REAL_SLIDES["ndpi"][0])
    names += [SYNTHETIC] * (4 - len(names))
    open_compare(page, hub, ids(hub, *names))
    cells = page.locator(".compare-cell")
    assert cells.count() == 4
    boxes = [cells.nth(i).bounding_box() for i in range(4)]
    assert all(b is not None and b["width"] > 300 and b["height"] > 200 for b in boxes)
    # A 2 × 2 grid: two columns, two rows.
    assert len({round(b["x"]) for b in boxes if b}) == 2
    assert len({round(b["y"]) for b in boxes if b}) == 2
    assert page.locator(".compare-add").is_hidden()  # four is the most

    drag(page, 3, -100, -60)
    wheel(page, 3, 2)
    shown = views(page)
    for other in shown[:3]:
        assert_same_place(shown[3], other, (0, 0))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("() => window.iain.compare.fullyLoaded()")
    page.screenshot(path=str(SCREENSHOTS / "compare-4.png"))
    tab.assert_no_console_errors()


def test_worklist_and_slide_page_lead_to_compare(hub: Hub, tab: Tab) -> None:
    page = tab.page
    first, second = SYNTHETIC, svs_name(hub)
    page.goto(hub.url + "/")
    compare = page.locator(".compare-button")
    compare.wait_for()
    assert compare.is_disabled()
    page.get_by_role("checkbox", name=f"Select {first} to compare").check()
    assert compare.is_disabled()  # one slide is not a comparison
    assert page.url == hub.url + "/"  # ticking does not open the slide
    page.get_by_role("checkbox", name=f"Select {second} to compare").check()
    assert compare.inner_text() == "Compare (2)"
    compare.click()
    page.wait_for_url("**/compare?slides=*")
    page.wait_for_function(
        "() => window.iain && window.iain.compare && window.iain.compare.fullyLoaded()"
    )
    assert page.locator(".compare-name").all_inner_texts() == [first, second]
    page.locator(".compare-cell").nth(0).hover()
    views(page)
    page.screenshot(path=str(SCREENSHOTS / "compare.png"))

    # From a slide: "Compare…" opens the worklist with that slide already ticked.
    test_viewer.open_slide(tab, hub, hub.slide(second))
    page.get_by_role("link", name="Compare…").click()
    page.wait_for_url("**/?compare=*")
    box = page.get_by_role("checkbox", name=f"Select {second} to compare")
    box.wait_for()
    assert box.is_checked()
    page.get_by_role("checkbox", name=f"Select {first} to compare").check()
    page.locator(".compare-button").click()
    page.wait_for_url("**/compare?slides=*")
    assert parse_qs(urlparse(page.url).query)["slides"] == [",".join(ids(hub, second, first))]
    tab.assert_no_console_errors()


def test_add_and_remove_a_slide(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slides = ids(hub, SYNTHETIC, svs_name(hub))
    open_compare(page, hub, slides)
    add = page.locator(".compare-add")
    page.wait_for_function("() => document.querySelectorAll('.compare-add option').length > 1")
    if "ndpi" in hub.missing:
        pytest.skip(hub.missing["ndpi"])
    third = test_viewer.REAL_SLIDES["ndpi"][0]
    # Only slides not shown yet are offered.
    offered = page.locator(".compare-add option").all_inner_texts()
    assert offered == ["Add a slide…", third]
    add.select_option(label=third)
    page.wait_for_function("() => document.querySelectorAll('.compare-cell').length === 3")
    page.wait_for_function(
        "() => window.iain && window.iain.compare && window.iain.compare.fullyLoaded()"
    )
    page.get_by_role("button", name=f"Remove {SYNTHETIC} from the comparison").first.click()
    page.wait_for_function(
        "() => window.iain && window.iain.compare && window.iain.compare.slides.length === 2"
    )
    assert page.locator(".compare-name").all_inner_texts() == [svs_name(hub), third]
    tab.assert_no_console_errors()


def test_bad_compare_links_say_why(hub: Hub, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{hub.url}/compare?slides={hub.slide(SYNTHETIC)['id']}")
    page.wait_for_function("() => document.getElementById('app').dataset.state === 'error'")
    assert "Choose 2 to 4 slides" in page.get_by_role("status").inner_text()
    page.goto(f"{hub.url}/compare?slides={hub.slide(SYNTHETIC)['id']},nope")
    page.wait_for_function("() => document.getElementById('app').dataset.state === 'error'")
    assert "could not be loaded" in page.get_by_role("status").inner_text()
    assert page.get_by_role("link", name="Back to the worklist").is_visible()
    tab.assert_no_console_errors(allow=test_viewer.HTTP_404)


# ---- a slide without a pixel size ------------------------------------------------------------

NO_MPP = "no-pixel-size.tiff"


def _write_slide_without_pixel_size(path: Path) -> None:
    """A tiled JPEG TIFF with no resolution tags: OpenSlide reports no mpp for it."""
    image = build(1600, 1200, 5)
    pixels = np.ndarray(
        buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, 3)
    )
    tifffile.imwrite(
        path, pixels, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None
    )


@pytest.fixture(scope="module")
def hub_without_mpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub of its own with the synthetic slide (0.25 µm/px) and one without a pixel size."""
    home = tmp_path_factory.mktemp("hub-no-mpp")
    env = test_viewer._hub_env(home)
    write_synthetic_slide(home / SYNTHETIC, 3000, 2000, seed=3)
    _write_slide_without_pixel_size(home / NO_MPP)
    for name in (SYNTHETIC, NO_MPP):
        test_viewer._ingest(env, home, home / name, "caen")
    with running_hub(home, env) as url:
        headers = test_viewer.browser_headers(home)
        listed = httpx.get(url + "/api/slides", timeout=30, headers=headers).json()["items"]
        yield Hub(url, {s["name"]: s for s in listed}, headers=headers)


def test_without_pixel_size_views_line_up_by_slide_width(hub_without_mpp: Hub, tab: Tab) -> None:
    hub = hub_without_mpp
    assert hub.slide(NO_MPP)["mpp"] is None
    page = tab.page
    page.set_extra_http_headers(hub.headers)  # this hub's token, not the module hub's
    open_compare(page, hub, ids(hub, SYNTHETIC, NO_MPP))
    assert page.evaluate("() => window.iain.compare.unit") == "width"
    assert "no pixel size" in page.get_by_role("note").inner_text()
    drag(page, 0, 150, 80)
    wheel(page, 0, 2)
    shown = views(page)
    # In slide widths: the same fraction of each slide at the centre, the same share of it
    # on screen, though the slides are 3000 and 1600 pixels wide.
    assert shown[1]["x"] == pytest.approx(shown[0]["x"], abs=1e-4)
    assert shown[1]["y"] == pytest.approx(shown[0]["y"], abs=1e-4)
    assert shown[1]["zoom"] == pytest.approx(shown[0]["zoom"], rel=1e-6)
    assert abs(shown[0]["x"] - 0.5) > 0.01  # it did move off the centre
    tab.assert_no_console_errors()
