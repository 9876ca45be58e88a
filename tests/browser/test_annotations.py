"""Drawing, measuring and editing annotations in the browser viewer, checked against the hub's
annotations API: positions in level-0 pixels (also on rotated and flipped views), edits, delete
and undo, the ruler's length, user text shown as text, visibility, QuPath export and import.

The hub, browser and tab fixtures are test_viewer.py's (same prerequisites: /usr/bin/chromium
and a built viewer).
"""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Dialog, Page

from tests.browser import test_viewer
from tests.browser.test_viewer import (
    SYNTHETIC,
    SYNTHETIC_MPP,
    VIEWPORT,
    Hub,
    Tab,
    open_slide,
    wait_fully_loaded,
)

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser
hub = test_viewer.hub
tab = test_viewer.tab

SCREENSHOT = test_viewer.SCREENSHOTS / "annotations.png"
XSS = "<img src=x onerror=alert(1)>"


# ---- helpers ---------------------------------------------------------------------------------


def api(hub: Hub, slide: dict[str, Any], rest: str = "") -> str:
    return f"{hub.url}/api/slides/{slide['id']}/annotations{rest}"


def stored(hub: Hub, slide: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.get(api(hub, slide), timeout=30, headers=hub.headers)
    assert response.status_code == 200, response.text
    features: list[dict[str, Any]] = response.json()["features"]
    return features


def clear(hub: Hub, slide: dict[str, Any]) -> None:
    for feature in stored(hub, slide):
        response = httpx.delete(
            api(hub, slide, f"/{feature['id']}"), timeout=30, headers=hub.headers
        )
        assert response.status_code == 204, response.text


def create(hub: Hub, slide: dict[str, Any], geometry: dict[str, Any], **props: Any) -> str:
    body = {"type": "Feature", "geometry": geometry, "properties": props}
    response = httpx.post(api(hub, slide), json=body, timeout=30, headers=hub.headers)
    assert response.status_code == 201, response.text
    ident: str = response.json()["id"]
    return ident


def rectangle(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def open_annotated(tab: Tab, hub: Hub, slide: dict[str, Any]) -> Page:
    open_slide(tab, hub, slide)
    page = tab.page
    page.wait_for_function("() => window.iain.annotations !== undefined")
    page.evaluate("() => window.iain.annotations.loaded")
    return page


def settle(page: Page) -> None:
    """Until every save the page started has its answer from the hub."""
    page.wait_for_function("() => window.iain.annotations.pending === 0")


def mean_rgb(page: Page, screen: tuple[float, float], size: int = 20) -> list[float]:
    """Mean colour of the page around a viewer-element position."""
    ox, oy = canvas_origin(page)
    x, y = ox + screen[0] - size / 2, oy + screen[1] - size / 2
    png = page.screenshot(clip={"x": x, "y": y, "width": size, "height": size})
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    return [float(c) for c in pixels.reshape(-1, 3).mean(axis=0)]


def slide_pixels(page: Page) -> np.ndarray:
    """The viewer's slide area, with OpenSeadragon's controls and the annotations hidden."""
    page.evaluate(
        "() => { for (const c of window.iain.viewer.controls) c.setVisible(false);"
        " document.querySelector('.annotation-layer').style.visibility = 'hidden'; }"
    )
    ox, oy = canvas_origin(page)
    size = page.evaluate("() => window.iain.viewer.viewport.getContainerSize().x")
    height = page.evaluate("() => window.iain.viewer.viewport.getContainerSize().y")
    png = page.screenshot(clip={"x": ox, "y": oy, "width": size, "height": height})
    page.evaluate(
        "() => { for (const c of window.iain.viewer.controls) c.setVisible(true);"
        " document.querySelector('.annotation-layer').style.visibility = ''; }"
    )
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def canvas_origin(page: Page) -> tuple[float, float]:
    rect: dict[str, float] = page.evaluate(
        "() => { const r = window.iain.viewer.canvas.getBoundingClientRect(); "
        "return {x: r.left, y: r.top}; }"
    )
    return rect["x"], rect["y"]


# OpenSeadragon's own conversion, screen px in the viewer -> level-0 px (its drawer mirrors the
# canvas about its middle when flipped; its conversions do not).
IMAGE_AT = """([x, y]) => {
    const v = window.iain.viewer, vp = v.viewport, pixel = vp.getCenter(true);
    pixel.x = vp.getFlip() ? vp.getContainerSize().x - x : x;
    pixel.y = y;
    const p = v.world.getItemAt(0).viewportToImageCoordinates(vp.pointFromPixel(pixel, true));
    return [p.x, p.y];
}"""


def image_at(page: Page, screen: tuple[float, float]) -> tuple[float, float]:
    x, y = page.evaluate(IMAGE_AT, list(screen))
    return x, y


def image_px_per_screen_px(page: Page) -> float:
    zoom: float = page.evaluate(
        "() => { const v = window.iain.viewer; "
        "return v.world.getItemAt(0).viewportToImageZoom(v.viewport.getZoom(true)); }"
    )
    return 1 / zoom


def click(page: Page, screen: tuple[float, float]) -> None:
    ox, oy = canvas_origin(page)
    page.mouse.click(ox + screen[0], oy + screen[1])


def drag(page: Page, a: tuple[float, float], b: tuple[float, float], steps: int = 8) -> None:
    ox, oy = canvas_origin(page)
    page.mouse.move(ox + a[0], oy + a[1])
    page.mouse.down()
    page.mouse.move(ox + b[0], oy + b[1], steps=steps)
    page.mouse.up()


def draw_polygon(page: Page, points: list[tuple[float, float]]) -> None:
    page.locator(".ann-tools button[data-tool=polygon]").click()
    for point in points:
        click(page, point)
    page.keyboard.press("Enter")
    settle(page)


def outer_ring(feature: dict[str, Any]) -> list[list[float]]:
    ring: list[list[float]] = feature["geometry"]["coordinates"][0]
    return ring


def assert_close(
    got: list[list[float]], expected: list[tuple[float, float]], tolerance: float
) -> None:
    assert len(got) == len(expected), (got, expected)
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert math.hypot(gx - ex, gy - ey) <= tolerance, (got, expected)


def shoelace(ring: list[tuple[float, float]] | list[list[float]]) -> float:
    return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring))) / 2


def set_view(page: Page, rotation: float, flip: bool) -> None:
    """Rotates/flips about the centre, at once, keeping centre and zoom."""
    page.evaluate(
        """([rotation, flip]) => {
            const vp = window.iain.viewer.viewport, centre = vp.getCenter(true);
            vp.setFlip(flip);
            vp.setRotation(rotation, true);
            vp.panTo(centre, true);
        }""",
        [rotation, flip],
    )
    wait_fully_loaded(page)


def path_box(page: Page, ident: str) -> dict[str, float]:
    """Where the annotation's shape is drawn, in viewer-element px."""
    box: dict[str, float] = page.evaluate(
        """(id) => {
            const c = window.iain.viewer.canvas.getBoundingClientRect();
            const r = document.querySelector(`g.annotation[data-id="${id}"] path.shape`)
                .getBoundingClientRect();
            return {left: r.left - c.left, top: r.top - c.top,
                    right: r.right - c.left, bottom: r.bottom - c.top};
        }""",
        ident,
    )
    return box


def assert_drawn_at(page: Page, ident: str, points: list[tuple[float, float]]) -> None:
    """The shape's vertices, through the transform the browser draws it with, are `points`."""
    drawn: list[list[float]] = page.evaluate(
        """(id) => {
            const c = window.iain.viewer.canvas.getBoundingClientRect();
            const path = document.querySelector(`g.annotation[data-id="${id}"] path.shape`);
            const m = path.getScreenCTM();
            const ring = window.iain.annotations.store.get(id).geometry.coordinates[0];
            return ring.slice(0, -1).map(([x, y]) => {
                const p = new DOMPoint(x, y).matrixTransform(m);
                return [p.x - c.left, p.y - c.top];
            });
        }""",
        ident,
    )
    assert_close(drawn, points, 1.0)


def assert_drawn_around(page: Page, ident: str, points: list[tuple[float, float]]) -> None:
    box = path_box(page, ident)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    slack = 3  # the stroke's half-width, and rounding
    assert abs(box["left"] - min(xs)) <= slack and abs(box["right"] - max(xs)) <= slack, box
    assert abs(box["top"] - min(ys)) <= slack and abs(box["bottom"] - max(ys)) <= slack, box


@pytest.fixture
def synthetic(hub: Hub) -> dict[str, Any]:
    slide = hub.slide(SYNTHETIC)
    clear(hub, slide)
    return slide


# ---- tests -----------------------------------------------------------------------------------


def test_polygon_drawn_with_the_mouse_is_saved_in_level0_pixels_and_drawn_after_reload(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    page = open_annotated(tab, hub, synthetic)
    clicks = [(520.0, 260.0), (840.0, 300.0), (900.0, 560.0), (600.0, 620.0), (480.0, 450.0)]
    expected = [image_at(page, c) for c in clicks]
    draw_polygon(page, clicks)

    [feature] = stored(hub, synthetic)
    assert feature["properties"]["kind"] == "polygon"
    ring = outer_ring(feature)
    assert ring[0] == ring[-1]
    # Within one screen pixel of where the mouse was, in level-0 pixels.
    assert_close(ring[:-1], expected, image_px_per_screen_px(page) * 1.0)
    area_mm2 = shoelace(ring) * SYNTHETIC_MPP**2 / 1e6
    assert feature["properties"]["measurements"]["area_mm2"] == pytest.approx(area_mm2, rel=1e-6)

    page.reload()
    wait_fully_loaded(page)
    page.evaluate("() => window.iain.annotations.loaded")
    item = page.locator(f".ann-list li[data-id='{feature['id']}']")
    assert item.locator(".ann-item-kind").inner_text() == "Polygon"
    shown_area = item.locator(".ann-item-measure").inner_text()
    assert shown_area.endswith("mm²") and float(shown_area.split()[0]) == pytest.approx(
        area_mm2, rel=0.01
    )
    assert_drawn_around(page, feature["id"], clicks)
    # Seen on the slide: inside, the shape tints it with its colour (#ffcc00: more red than
    # blue); outside, the slide is as it was. Compared with the layer hidden (key a).
    shown_in, shown_out = mean_rgb(page, (700, 450)), mean_rgb(page, (1000, 150))
    page.keyboard.press("a")
    bare_in, bare_out = mean_rgb(page, (700, 450)), mean_rgb(page, (1000, 150))
    tint = [s - b for s, b in zip(shown_in, bare_in, strict=True)]
    assert tint[0] - tint[2] > 5, (shown_in, bare_in)
    assert max(abs(s - b) for s, b in zip(shown_out, bare_out, strict=True)) < 1
    tab.assert_no_console_errors()


def test_edit_label_colour_comment_then_delete_and_undo(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    ident = create(hub, synthetic, rectangle(1200, 800, 400, 300), kind="rectangle")
    page = open_annotated(tab, hub, synthetic)
    page.locator(f".ann-list li[data-id='{ident}'] button").click()
    # The list's click zooms onto the annotation: the view is centred on it.
    page.wait_for_function(
        """() => { const v = window.iain.viewer, item = v.world.getItemAt(0);
            const c = item.viewportToImageCoordinates(v.viewport.getCenter(true));
            return Math.abs(c.x - 1400) < 5 && Math.abs(c.y - 950) < 5; }"""
    )
    label = page.locator(".ann-editor .ann-label-input")
    label.fill("Tumour")
    label.press("Enter")
    settle(page)
    comment = page.locator(".ann-editor .ann-comment-input")
    comment.click()  # a real click and real keys: the panel sits inside OpenSeadragon's element
    page.keyboard.type("pT2, margin 2 mm")
    comment.blur()
    settle(page)
    [feature] = stored(hub, synthetic)
    assert feature["properties"]["label"] == "Tumour"
    assert feature["properties"]["comment"] == "pT2, margin 2 mm"
    assert feature["properties"]["version"] == 3
    assert page.locator(f".ann-list li[data-id='{ident}'] .ann-item-label").inner_text() == "Tumour"
    assert (
        page.locator(f"g.annotation[data-id='{ident}'] ~ text, text.caption").first.text_content()
        == "Tumour"
    )

    page.locator(".ann-editor .ann-delete").click()
    settle(page)
    assert stored(hub, synthetic) == []
    assert page.locator(".ann-list li[data-id]").count() == 0

    page.keyboard.press("Control+z")  # undo the delete: the same annotation comes back
    settle(page)
    [back] = stored(hub, synthetic)
    assert back["geometry"] == feature["geometry"]
    assert back["properties"]["label"] == "Tumour"
    assert page.locator(f".ann-list li[data-id='{back['id']}']").count() == 1

    page.locator(".ann-undo").click()  # undo the comment (on the re-created annotation)
    settle(page)
    [again] = stored(hub, synthetic)
    assert (again["id"], again["properties"]["comment"]) == (back["id"], "")
    assert again["properties"]["label"] == "Tumour"
    tab.assert_no_console_errors()


def test_dragging_a_vertex_reshapes_the_polygon(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    ring = [[1000, 600], [1800, 600], [1500, 1300], [1000, 600]]
    ident = create(hub, synthetic, {"type": "Polygon", "coordinates": [ring]}, kind="polygon")
    page = open_annotated(tab, hub, synthetic)
    # A click inside the polygon (in pan mode) selects it; its vertices get handles.
    click(page, tuple(page.evaluate("() => window.iain.annotations.imageToScreen([1400, 800])")))
    page.wait_for_function(f"() => window.iain.annotations.selected === {json.dumps(ident)}")
    assert page.locator(".annotation-layer circle.handle").count() == 3
    vertex = page.evaluate("() => window.iain.annotations.imageToScreen([1500, 1300])")
    handle = page.locator(".annotation-layer circle.handle[data-handle='2']")
    box = handle.bounding_box()
    ox, _ = canvas_origin(page)
    assert box is not None
    assert abs(box["x"] + box["width"] / 2 - ox - vertex[0]) < 1.5
    target = (vertex[0] + 60, vertex[1] + 40)
    expected = image_at(page, target)
    drag(page, (vertex[0], vertex[1]), target)
    settle(page)
    [feature] = stored(hub, synthetic)
    moved = outer_ring(feature)
    assert_close(moved[:2], [(1000, 600), (1800, 600)], 1e-6)
    assert_close([moved[2]], [expected], image_px_per_screen_px(page))
    assert feature["properties"]["version"] == 2

    # Dragging its inside moves the whole polygon.
    inside = page.evaluate("() => window.iain.annotations.imageToScreen([1400, 800])")
    drag(page, (inside[0], inside[1]), (inside[0] - 50, inside[1] + 30))
    settle(page)
    [feature] = stored(hub, synthetic)
    scale = image_px_per_screen_px(page)
    dx, dy = (
        feature["geometry"]["coordinates"][0][0][0] - 1000,
        feature["geometry"]["coordinates"][0][0][1] - 600,
    )
    assert math.hypot(dx - (-50 * scale), dy - 30 * scale) <= scale, (dx, dy)
    assert_close(outer_ring(feature)[:2], [(1000 + dx, 600 + dy), (1800 + dx, 600 + dy)], 1e-6)
    assert feature["properties"]["version"] == 3

    page.keyboard.press("Escape")
    assert page.evaluate("() => window.iain.annotations.selected") is None
    assert page.locator(".annotation-layer circle.handle").count() == 0
    tab.assert_no_console_errors()


def test_drawing_on_a_rotated_view_saves_the_right_coordinates(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    page = open_annotated(tab, hub, synthetic)
    size: dict[str, float] = page.evaluate(
        "() => { const s = window.iain.viewer.viewport.getContainerSize(); "
        "return {x: s.x, y: s.y}; }"
    )
    cx, cy = size["x"] / 2, size["y"] / 2
    # Where two screen points fall on the slide before turning it...
    a, b = (cx - 120, cy - 80), (cx + 100, cy + 90)
    image_a, image_b = image_at(page, a), image_at(page, b)

    # ...and where those slide points are once it is turned 90° clockwise about the centre.
    def turned(p: tuple[float, float]) -> tuple[float, float]:
        return (cx - (p[1] - cy), cy + (p[0] - cx))

    set_view(page, 90, False)
    page.locator(".ann-tools button[data-tool=rectangle]").click()
    drag(page, turned(a), turned(b))
    settle(page)
    [rect] = stored(hub, synthetic)
    xs = sorted([image_a[0], image_b[0]])
    ys = sorted([image_a[1], image_b[1]])
    tolerance = image_px_per_screen_px(page) * 1.0
    assert_close(
        outer_ring(rect)[:-1],
        [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])],
        tolerance,
    )
    assert_drawn_around(page, rect["id"], [turned(a), turned(b)])

    # Flipped (no rotation): a slide point seen at x is now at the mirror image of x.
    set_view(page, 0, False)
    c = (cx + 150, cy - 60)
    image_c = image_at(page, c)
    set_view(page, 0, True)
    page.locator(".ann-tools button[data-tool=point]").click()
    click(page, (size["x"] - c[0], c[1]))
    settle(page)
    page.keyboard.press("Escape")
    point = next(f for f in stored(hub, synthetic) if f["properties"]["kind"] == "point")
    assert_close([point["geometry"]["coordinates"]], [image_c], tolerance)

    # What the layer assumes of a flipped view at any angle: the slide is drawn as the mirror
    # image of the unflipped view (about the view's vertical middle).
    set_view(page, 30, False)
    unflipped = slide_pixels(page)
    set_view(page, 30, True)
    flipped = slide_pixels(page)
    assert np.abs(unflipped[:, ::-1] - flipped).mean() < 1
    assert np.abs(unflipped - flipped).mean() > 10

    # Any angle, flipped: a polygon lands where OpenSeadragon says those pixels show.
    clicks = [(cx - 100, cy - 100), (cx + 120, cy - 70), (cx + 40, cy + 110)]
    expected = [image_at(page, p) for p in clicks]
    draw_polygon(page, clicks)
    polygon = next(f for f in stored(hub, synthetic) if f["properties"]["kind"] == "polygon")
    assert_close(outer_ring(polygon)[:-1], expected, tolerance)
    assert_drawn_at(page, polygon["id"], clicks)
    tab.assert_no_console_errors()


def test_ruler_shows_length_in_micrometres(hub: Hub, tab: Tab, synthetic: dict[str, Any]) -> None:
    page = open_annotated(tab, hub, synthetic)
    set_view(page, 45, False)  # the length may not depend on the view's angle
    a, b = (500.0, 300.0), (800.0, 700.0)
    ia, ib = image_at(page, a), image_at(page, b)
    expected_um = math.dist(ia, ib) * SYNTHETIC_MPP
    page.locator(".ann-tools button[data-tool=line]").click()
    ox, oy = canvas_origin(page)
    page.mouse.move(ox + a[0], oy + a[1])
    page.mouse.down()
    page.mouse.move(ox + b[0], oy + b[1], steps=5)
    live = page.locator(".annotation-layer .preview-text").text_content() or ""
    page.mouse.up()
    settle(page)
    assert live.endswith("µm"), live
    assert float(live.split()[0]) == pytest.approx(expected_um, abs=0.5)

    [line] = stored(hub, synthetic)
    assert line["properties"]["kind"] == "line"
    assert line["properties"]["measurements"]["length_um"] == pytest.approx(expected_um, rel=0.01)
    shown = page.locator(f".ann-list li[data-id='{line['id']}'] .ann-item-measure").inner_text()
    assert float(shown.split()[0]) == pytest.approx(expected_um, abs=0.1) and shown.endswith("µm")
    caption = page.locator(".annotation-layer text.caption").text_content()
    assert caption == shown
    tab.assert_no_console_errors()


def test_user_text_is_shown_as_text(hub: Hub, tab: Tab, synthetic: dict[str, Any]) -> None:
    ident = create(hub, synthetic, rectangle(300, 300, 500, 400), kind="rectangle", label=XSS)
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.page.on("dialog", on_dialog)
    page = open_annotated(tab, hub, synthetic)
    assert page.locator(f".ann-list li[data-id='{ident}'] .ann-item-label").inner_text() == XSS
    assert page.locator(".annotation-layer text.caption").text_content() == XSS
    page.locator(f".ann-list li[data-id='{ident}'] button").click()
    assert page.locator(".ann-editor .ann-label-input").input_value() == XSS
    # Typed in the page as well: saved as typed, shown as typed.
    comment = page.locator(".ann-editor .ann-comment-input")
    comment.fill("<script>alert(2)</script>")
    comment.blur()
    settle(page)
    assert stored(hub, synthetic)[0]["properties"]["comment"] == "<script>alert(2)</script>"
    page.wait_for_timeout(300)
    assert page.locator("img[src=x], .annotations-panel script").count() == 0
    assert dialogs == []
    tab.assert_no_console_errors()


def test_visibility_key_export_and_import(
    hub: Hub, tab: Tab, synthetic: dict[str, Any], tmp_path: Path
) -> None:
    create(hub, synthetic, rectangle(300, 300, 500, 400), kind="rectangle", label="Stroma")
    page = open_annotated(tab, hub, synthetic)
    layer = page.locator(".annotation-layer")
    assert layer.is_visible()
    page.keyboard.press("a")
    assert layer.is_hidden()
    assert page.locator(".ann-visibility").get_attribute("aria-pressed") == "false"
    page.locator(".ann-visibility").click()
    assert layer.is_visible()

    href = page.locator(".ann-export").get_attribute("href")
    assert href is not None
    exported = httpx.get(hub.url + href, timeout=30, headers=hub.headers).json()
    assert exported["type"] == "FeatureCollection"
    [qupath] = exported["features"]
    assert qupath["properties"]["objectType"] == "annotation"
    assert qupath["properties"]["classification"]["name"] == "Stroma"

    # The export, moved and renamed, imported back through the page's file picker.
    qupath["geometry"] = rectangle(1500, 900, 300, 300)
    qupath["properties"]["classification"] = {"name": "Necrosis", "color": [0, 160, 80]}
    file = tmp_path / "from-qupath.geojson"
    file.write_text(json.dumps(exported))
    page.locator(".annotations-panel input[type=file]").set_input_files(file)
    settle(page)
    page.wait_for_function("() => document.querySelectorAll('.ann-list li[data-id]').length === 2")
    labels = sorted(f["properties"]["label"] for f in stored(hub, synthetic))
    assert labels == ["Necrosis", "Stroma"]
    imported = next(f for f in stored(hub, synthetic) if f["properties"]["label"] == "Necrosis")
    assert imported["properties"]["colour"] == "#00a050"
    assert "imported" in (page.locator(".ann-status").text_content() or "")
    tab.assert_no_console_errors()


def test_annotations_screenshot(hub: Hub, tab: Tab) -> None:
    """docs/screenshots/annotations.png: the real slide with one annotation of every kind."""
    slide = test_viewer._real_slide(hub, "svs")
    clear(hub, slide)
    create(
        hub,
        slide,
        rectangle(250, 1400, 600, 450),
        kind="rectangle",
        label="Tumour",
        colour="#e0445a",
    )
    ring = [[1300, 500], [1750, 620], [1900, 1100], [1500, 1350], [1180, 950], [1300, 500]]
    create(
        hub,
        slide,
        {"type": "Polygon", "coordinates": [ring]},
        kind="polygon",
        label="Stroma",
        colour="#3fa7ff",
    )
    create(
        hub, slide, {"type": "LineString", "coordinates": [[1000, 2200], [1700, 2500]]}, kind="line"
    )
    create(
        hub,
        slide,
        {"type": "Point", "coordinates": [700, 900]},
        kind="point",
        label="Mitosis",
        colour="#5ee07a",
    )
    page = open_annotated(tab, hub, slide)
    freehand = [
        [
            500 + 220 * math.cos(a / 20 * math.pi) * (1 + 0.15 * math.sin(a)),
            2450 + 160 * math.sin(a / 20 * math.pi),
        ]
        for a in range(40)
    ]
    create(
        hub,
        slide,
        {"type": "Polygon", "coordinates": [[*freehand, freehand[0]]]},
        kind="freehand",
        label=XSS,
        colour="#ffcc00",
    )
    page.reload()
    wait_fully_loaded(page)
    page.evaluate("() => window.iain.annotations.loaded")
    stroma = next(f for f in stored(hub, slide) if f["properties"]["label"] == "Stroma")
    page.evaluate(f"() => window.iain.annotations.select({json.dumps(stroma['id'])})")
    wait_fully_loaded(page)
    assert page.locator(".ann-list li[data-id]").count() == 5
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT)
    tab.assert_no_console_errors()


def test_french_interface(hub: Hub, browser: Browser, synthetic: dict[str, Any]) -> None:
    create(hub, synthetic, rectangle(1000, 1000, 400, 250), kind="rectangle", label="Tumeur")
    context = browser.new_context(viewport=VIEWPORT, locale="fr-FR", extra_http_headers=hub.headers)  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(f"{hub.url}/viewer/{synthetic['id']}")
        wait_fully_loaded(page)
        page.evaluate("() => window.iain.annotations.loaded")
        assert page.locator(".annotations-panel h2").inner_text() == "Annotations"
        assert (
            page.locator(".ann-tools button[data-tool=freehand]")
            .inner_text()
            .endswith("Main levée")
        )
        item = page.locator(".ann-list li[data-id]")
        assert item.locator(".ann-item-kind").inner_text() == "Rectangle"
        # 400 × 250 px at 0.25 µm/px = 0.00625 mm², written the French way.
        assert item.locator(".ann-item-measure").inner_text() == "0,00625 mm²"
        assert page.locator(".ann-export").inner_text() == "Exporter (QuPath)"
    finally:
        context.close()


def test_an_edit_of_a_stale_annotation_is_refused_and_shows_the_stored_one(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    ident = create(hub, synthetic, rectangle(800, 500, 300, 300), kind="rectangle", label="Mine")
    page = open_annotated(tab, hub, synthetic)
    page.locator(f".ann-list li[data-id='{ident}'] button").click()
    # Someone else renames it meanwhile.
    theirs = {
        "type": "Feature",
        "geometry": rectangle(800, 500, 300, 300),
        "properties": {"kind": "rectangle", "label": "Theirs", "version": 1},
    }
    assert (
        httpx.put(
            api(hub, synthetic, f"/{ident}"), json=theirs, timeout=30, headers=hub.headers
        ).status_code
        == 200
    )
    label = page.locator(".ann-editor .ann-label-input")
    label.fill("Mine, renamed")
    label.press("Enter")
    settle(page)
    status = page.locator(".ann-status.error")
    assert "version 2" in (status.text_content() or "")
    [stored_one] = stored(hub, synthetic)
    assert stored_one["properties"]["label"] == "Theirs"
    item = page.locator(f".ann-list li[data-id='{ident}'] .ann-item-label")
    assert item.inner_text() == "Theirs"
    assert label.input_value() == "Theirs"

    page.keyboard.press("Delete")  # the selected annotation, at the version now shown
    settle(page)
    assert stored(hub, synthetic) == []
    tab.assert_no_console_errors(allow="409")


def test_ellipse_and_freehand_drawn_by_dragging(
    hub: Hub, tab: Tab, synthetic: dict[str, Any]
) -> None:
    page = open_annotated(tab, hub, synthetic)
    a, b = (520.0, 250.0), (760.0, 410.0)
    ia, ib = image_at(page, a), image_at(page, b)
    page.locator(".ann-tools button[data-tool=ellipse]").click()
    drag(page, a, b)
    settle(page)
    [ellipse] = stored(hub, synthetic)
    assert ellipse["properties"]["kind"] == "ellipse"
    xs = [p[0] for p in outer_ring(ellipse)]
    ys = [p[1] for p in outer_ring(ellipse)]
    tolerance = image_px_per_screen_px(page)
    assert abs(min(xs) - ia[0]) <= tolerance and abs(max(xs) - ib[0]) <= tolerance
    assert abs(min(ys) - ia[1]) <= tolerance and abs(max(ys) - ib[1]) <= tolerance
    rx, ry = (ib[0] - ia[0]) / 2, (ib[1] - ia[1]) / 2
    expected_mm2 = math.pi * rx * ry * SYNTHETIC_MPP**2 / 1e6
    area = ellipse["properties"]["measurements"]["area_mm2"]
    assert area == pytest.approx(expected_mm2, rel=0.01)

    # Freehand: a loop dragged around a square; its area is about the square's.
    page.locator(".ann-tools button[data-tool=freehand]").click()
    ox, oy = canvas_origin(page)
    corners = [(600.0, 480.0), (800.0, 480.0), (800.0, 680.0), (600.0, 680.0), (600.0, 481.0)]
    page.mouse.move(ox + corners[0][0], oy + corners[0][1])
    page.mouse.down()
    for x, y in corners[1:]:
        page.mouse.move(ox + x, oy + y, steps=20)
    page.mouse.up()
    settle(page)
    freehand = next(f for f in stored(hub, synthetic) if f["properties"]["kind"] == "freehand")
    assert len(outer_ring(freehand)) > 20
    square = (200 * image_px_per_screen_px(page)) ** 2 * SYNTHETIC_MPP**2 / 1e6
    assert freehand["properties"]["measurements"]["area_mm2"] == pytest.approx(square, rel=0.03)
    assert page.locator(".ann-list li[data-id]").count() == 2
    tab.assert_no_console_errors()
