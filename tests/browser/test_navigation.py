"""Getting around a slide in the browser viewer: view links, magnifications, rotation and flip,
keyboard shortcuts, next/previous slide, and the French interface.

The hub, browser and tab fixtures are test_viewer.py's (same prerequisites: /usr/bin/chromium
and a built viewer).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, Page

from tests.browser import test_viewer
from tests.browser.test_viewer import (
    SYNTHETIC,
    SYNTHETIC_MPP,
    TIMES,
    VIEWPORT,
    Hub,
    Tab,
    open_slide,
    wait_fully_loaded,
)

pytestmark = pytest.mark.browser

# test_viewer.py's fixtures, here too (this module gets its own hub and browser).
playwright = test_viewer.playwright
browser = test_viewer.browser
hub = test_viewer.hub
tab = test_viewer.tab

# The view now, as the link carries it: centre in level-0 pixels, screen px per level-0 px.
VIEW = """() => {
    const v = window.iain.viewer, item = v.world.getItemAt(0);
    const centre = item.viewportToImageCoordinates(v.viewport.getCenter(true));
    return {
        x: centre.x, y: centre.y,
        zoom: item.viewportToImageZoom(v.viewport.getZoom(true)),
        rotation: v.viewport.getRotation(true), flip: v.viewport.getFlip(),
    };
}"""


def view(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(VIEW)
    return result


def query(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def wait_for_query(page: Page, **expected: str) -> None:
    """Until the address bar (updated at most every 250 ms) carries `expected`."""
    conditions = " && ".join(f"p.get({k!r}) === {v!r}" for k, v in expected.items())
    page.wait_for_function(
        f"() => {{ const p = new URLSearchParams(location.search); return {conditions}; }}"
    )


def wait_for_magnification(page: Page, number: str) -> None:
    page.wait_for_function(
        "(text) => document.querySelector('.scale-control .magnification').textContent === text",
        arg=f"{number}{TIMES}",
    )


def scale_text(page: Page) -> tuple[str, str, float]:
    return (
        page.locator(".scale-control .magnification").inner_text(),
        page.locator(".scale-control .bar-label").inner_text(),
        page.locator(".scale-control .bar").bounding_box()["width"],  # type: ignore[index]
    )


def test_view_link_opens_the_same_view(hub: Hub, tab: Tab, browser: Browser) -> None:
    page = tab.page
    slide = hub.slide(SYNTHETIC)
    open_slide(tab, hub, slide)
    page.evaluate(
        """() => {
            const v = window.iain.viewer, item = v.world.getItemAt(0);
            v.viewport.zoomTo(item.imageToViewportZoom(0.7), null, true);
            v.viewport.panTo(item.imageToViewportCoordinates(1234, 567), true);
            v.viewport.setRotation(90, true);
        }"""
    )
    wait_for_query(page, x="1234", y="567", zoom="0.7", rot="90")
    wait_fully_loaded(page)
    before = view(page)
    link = page.url
    assert urlparse(link).path == f"/viewer/{slide['id']}"

    context = browser.new_context(viewport=VIEWPORT, extra_http_headers=hub.headers)  # type: ignore[arg-type]
    try:
        fresh = context.new_page()
        fresh.goto(link)
        wait_fully_loaded(fresh)
        after = view(fresh)
        assert after["x"] == pytest.approx(before["x"], abs=2)
        assert after["y"] == pytest.approx(before["y"], abs=2)
        assert after["zoom"] == pytest.approx(before["zoom"], rel=1e-3)
        assert after["rotation"] == 90
        assert after["flip"] is False
        assert fresh.locator(".rotation-value").inner_text() == "90°"
    finally:
        context.close()
    tab.assert_no_console_errors()


def test_view_link_keeps_protocol_and_flip(hub: Hub, tab: Tab) -> None:
    page = tab.page
    slide = hub.slide(SYNTHETIC)
    page.goto(
        f"{hub.url}/viewer/{slide['id']}?x=2000&y=1000&zoom=0.25&rot=180&flip=1&protocol=iiif"
    )
    wait_fully_loaded(page)
    shown = view(page)
    assert (round(shown["x"]), round(shown["y"]), shown["rotation"], shown["flip"]) == (
        2000,
        1000,
        180,
        True,
    )
    assert shown["zoom"] == pytest.approx(0.25)
    assert page.evaluate("() => window.iain.protocol") == "iiif"
    assert page.locator(".scale-control .magnification").inner_text() == f"10{TIMES}"
    page.get_by_role("button", name="DeepZoom").click()
    wait_for_query(page, x="2000", y="1000", rot="180", flip="1")
    assert "protocol" not in query(page)
    tab.assert_no_console_errors()


def test_magnification_buttons_and_keys(hub: Hub, tab: Tab) -> None:
    page = tab.page
    open_slide(tab, hub, hub.slide(SYNTHETIC))
    page.locator("button[data-magnification='20']").click()
    wait_for_magnification(page, "20")
    wait_for_query(page, zoom="0.5")  # the zoom animation is over
    wait_fully_loaded(page)
    _magnification, label, width = scale_text(page)
    # 20x is 0.5 µm per screen pixel: the longest round length in 160 px is 50 µm, 100 px.
    assert re.fullmatch(r"[125]0* (µm|mm)", label), label
    assert label == "50 µm"
    assert width == pytest.approx(50 / 0.5, abs=1)
    assert view(page)["zoom"] == pytest.approx(SYNTHETIC_MPP / 0.5, rel=1e-3)
    pressed = page.locator(".magnifications button[aria-pressed='true']")
    assert pressed.all_inner_texts() == [f"20{TIMES}"]
    page.keyboard.press("1")
    wait_for_magnification(page, "1.25")
    page.keyboard.press("6")
    wait_for_magnification(page, "40")
    tab.assert_no_console_errors()


def test_rotation_and_flip_keep_tiles_and_scale(hub: Hub, tab: Tab) -> None:
    page = tab.page
    open_slide(tab, hub, hub.slide(SYNTHETIC))
    page.locator("button[data-magnification='10']").click()
    wait_for_query(page, zoom="0.25")
    wait_fully_loaded(page)
    scale_before = scale_text(page)
    tab.tile_responses.clear()
    page.get_by_role("button", name="Rotate 90° clockwise").click()
    wait_for_query(page, rot="90")
    wait_fully_loaded(page)
    assert view(page)["rotation"] == 90
    assert all(status == 200 for _url, status in tab.tile_responses), tab.tile_responses
    assert scale_text(page) == scale_before
    canvas = page.locator(".openseadragon-canvas canvas").first.screenshot()
    assert len(canvas) > 10_000, "the rotated view looks blank"

    page.keyboard.press("r")
    wait_for_query(page, rot="180")
    page.keyboard.press("Shift+R")
    page.keyboard.press("Shift+R")
    page.wait_for_function("() => new URLSearchParams(location.search).get('rot') === null")
    page.keyboard.press("f")
    wait_for_query(page, flip="1")
    assert (
        page.get_by_role("button", name="Flip horizontally").get_attribute("aria-pressed") == "true"
    )
    wait_fully_loaded(page)
    assert scale_text(page) == scale_before

    slider = page.get_by_role("slider", name="Rotation")
    slider.fill("45")
    wait_for_query(page, rot="45")
    assert page.locator(".rotation-value").inner_text() == "45°"
    wait_fully_loaded(page)
    assert scale_text(page) == scale_before
    tab.assert_no_console_errors()


def test_keyboard_zoom_pan_home_and_help(hub: Hub, tab: Tab) -> None:
    page = tab.page
    open_slide(tab, hub, hub.slide(SYNTHETIC))
    home = view(page)
    page.keyboard.press("+")
    page.wait_for_function(f"() => ({VIEW})().zoom > {home['zoom']} * 1.3")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => ({VIEW})().x > {home['x']} + 50")
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => ({VIEW})().y > {home['y']} + 50")
    page.keyboard.press("-")
    page.keyboard.press("h")
    page.wait_for_function(
        f"() => Math.abs(({VIEW})().zoom - {home['zoom']}) < 1e-6"
        f" && Math.abs(({VIEW})().x - {home['x']}) < 1"
    )

    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    assert not help_dialog.is_visible()
    page.keyboard.press("?")
    help_dialog.wait_for(state="visible")
    text = help_dialog.inner_text()
    for expected in ("Zoom in / out", "Next / previous slide", "Flip horizontally", "40×"):
        assert expected in text
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")
    page.get_by_role("button", name="Keyboard shortcuts").click()
    help_dialog.wait_for(state="visible")
    help_dialog.get_by_role("button", name="Close").click()
    help_dialog.wait_for(state="hidden")
    tab.assert_no_console_errors()


def test_copy_link_button(hub: Hub, tab: Tab) -> None:
    page = tab.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_slide(tab, hub, hub.slide(SYNTHETIC))
    page.locator("button[data-magnification='5']").click()
    wait_for_query(page, zoom="0.125")
    page.get_by_role("button", name="Copy a link to this exact view").click()
    page.get_by_text("Link copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == page.url
    tab.assert_no_console_errors()


def test_next_and_previous_slide_keys(hub: Hub, tab: Tab) -> None:
    order = [s["id"] for s in hub.get("/api/slides").json()["items"] if s["status"] == "ready"]
    if len(order) < 2:
        pytest.skip("one slide only: the real test slides are missing")
    page = tab.page
    page.goto(f"{hub.url}/viewer/{order[0]}")
    wait_fully_loaded(page)
    page.keyboard.press("p")  # the first slide has no previous one: stays
    for slide_id in order[1:]:
        page.keyboard.press("n")
        page.wait_for_url(f"**/viewer/{slide_id}")
        wait_fully_loaded(page)
    page.keyboard.press("p")
    page.wait_for_url(f"**/viewer/{order[-2]}")
    wait_fully_loaded(page)
    tab.assert_no_console_errors()


def test_french_interface(hub: Hub, tab: Tab, browser: Browser) -> None:
    page = tab.page
    page.goto(hub.url + "/")
    page.locator("tr.slide").first.wait_for()
    assert page.locator("h1.page-title").inner_text() == "Worklist"
    page.get_by_role("button", name="Français").click()
    page.wait_for_function("() => document.documentElement.lang === 'fr'")
    page.locator("tr.slide").first.wait_for()
    assert page.locator("h1.page-title").inner_text() == "Liste de travail"
    assert page.locator("th").all_text_contents()[:3] == ["Aperçu", "Nom", "Centre"]
    assert set(page.locator("td.status").all_inner_texts()) == {"Prête"}
    synthetic = hub.slide(SYNTHETIC)
    row = page.locator(f"tr[data-slide-id='{synthetic['id']}']")
    assert f"40{TIMES} · 0,25 µm/px" in row.locator("td.size").inner_text()

    # The choice is remembered: the viewer opens in French.
    open_slide(tab, hub, synthetic)
    assert page.get_by_role("link", name="Liste de travail").is_visible()
    assert page.get_by_title("Zoomer", exact=True).count() == 1
    page.locator("button[data-magnification='2.5']").click()
    wait_for_magnification(page, "2,5")
    page.goto(hub.url + "/viewer/no-such-slide")
    page.get_by_role("alert").wait_for()
    assert "Lame introuvable" in page.get_by_role("alert").inner_text()
    page.get_by_role("button", name="English").click()
    page.get_by_role("alert").get_by_text("Slide not found").wait_for()
    tab.assert_no_console_errors(allow="404")

    # A browser set to French starts in French.
    context = browser.new_context(viewport=VIEWPORT, locale="fr-FR", extra_http_headers=hub.headers)  # type: ignore[arg-type]
    try:
        fresh = context.new_page()
        fresh.goto(hub.url + "/")
        fresh.locator("tr.slide").first.wait_for()
        assert fresh.locator("h1.page-title").inner_text() == "Liste de travail"
    finally:
        context.close()
