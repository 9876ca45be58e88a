"""Overlays in the browser: a heatmap and 10,000 cell outlines over a synthetic slide, shown,
hidden and faded from the layers panel, with their legends.

The hub, browser and tab patterns are test_viewer.py's (same prerequisites: /usr/bin/chromium
and a built viewer). This module's hub gets its overlays the way an inference worker adds
them: the heatmap through exchange.overlays.service, the cells through the HTTP API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from exchange.overlays.service import add_heatmap
from exchange.slides.catalogue import Catalogue
from iain.app import build_store
from iain.sample_overlays import CLASS_COLOURS, blob_heatmap, cell_features
from iain.synthetic import write_synthetic_slide
from tests import database
from tests.browser import test_viewer
from tests.browser.hub import running_hub
from tests.browser.test_viewer import (
    SCREENSHOTS,
    Hub,
    Tab,
    _hub_env,
    _ingest,
    _require_prerequisites,
    wait_fully_loaded,
)

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser
tab = test_viewer.tab

WIDTH, HEIGHT = 3000, 2000
HEATMAP = blob_heatmap(WIDTH // 20, HEIGHT // 20, seed=5)  # one value per 20x20 pixels
CELLS = 10_000
VIRIDIS_TOP = (0xFD, 0xE7, 0x25)  # the ramp's colour at probability 1


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("overlay-hub")
    env = _hub_env(home)
    slide_file = home / "synthetic-HE.tiff"
    write_synthetic_slide(slide_file, WIDTH, HEIGHT, seed=5)
    _ingest(env, home, slide_file, "caen")
    with running_hub(home, env) as url:
        headers = test_viewer.browser_headers(home)
        slide = httpx.get(url + "/api/slides", timeout=30, headers=headers).json()["items"][0]
        # The worker's two ways in: the Python API (heatmap) and HTTP (features).
        settings = database.settings(home / ".iain")
        add_heatmap(
            build_store(settings),
            Catalogue.open(settings.database_url),
            slide["id"],
            HEATMAP,
            name="Tumour probability",
            label="P(tumour)",
        )
        posted = httpx.post(
            f"{url}/api/slides/{slide['id']}/overlays",
            json={
                "name": "Cells",
                "features": cell_features(WIDTH, HEIGHT, count=CELLS, seed=5),
                "classes": CLASS_COLOURS,
            },
            timeout=60,
            headers=headers,
        )
        assert posted.status_code == 201, posted.text
        yield Hub(url, {slide["name"]: slide}, headers=headers)


def _open(tab: Tab, hub: Hub) -> dict[str, Any]:
    slide = next(iter(hub.slides.values()))
    page = tab.page
    page.goto(f"{hub.url}/viewer/{slide['id']}")
    wait_fully_loaded(page)
    page.evaluate("() => window.iain.overlays.ready")
    _settle(page)
    return slide


def _settle(page: Page) -> None:
    """Until the heatmap's tiles are all drawn too, and two more frames."""
    page.wait_for_function(
        """() => {
            const w = window.iain.viewer.world;
            if (w.getItemCount() < 2) return false;
            for (let i = 0; i < w.getItemCount(); i++) {
                if (!w.getItemAt(i).getFullyLoaded()) return false;
            }
            return true;
        }"""
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _screen_point(page: Page, x: float, y: float) -> tuple[float, float]:
    """Where level-0 pixel (x, y) is on the page."""
    point = page.evaluate(
        """([x, y]) => {
            const v = window.iain.viewer, item = v.world.getItemAt(0);
            const p = v.viewport.pixelFromPoint(item.imageToViewportCoordinates(x, y, true), true);
            const e = v.element.getBoundingClientRect();
            return [e.left + p.x, e.top + p.y];
        }""",
        [x, y],
    )
    return float(point[0]), float(point[1])


def _pixel(page: Page, at: tuple[float, float]) -> np.ndarray:
    """The page's colour at a point, averaged over 3x3 pixels."""
    x, y = int(at[0]) - 1, int(at[1]) - 1
    png = page.screenshot(clip={"x": x, "y": y, "width": 3, "height": 3})
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    mean: np.ndarray = rgb.reshape(-1, 3).mean(axis=0)
    return mean


def _features_alpha(page: Page) -> float:
    """The most opaque pixel of the features canvas (0..255); 0 when nothing is drawn."""
    return float(
        page.evaluate(
            """() => {
                const c = document.querySelector('canvas.overlay-features');
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let max = 0, count = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i] > max) max = data[i];
                return max;
            }"""
        )
    )


def _left_half(page: Page) -> np.ndarray:
    """The left half of the viewer (the layers panel is on the right), as RGB."""
    box = page.locator("#osd").bounding_box()
    assert box is not None
    clip = {"x": box["x"], "y": box["y"], "width": box["width"] / 2, "height": box["height"]}
    png = page.screenshot(clip=clip)  # type: ignore[arg-type]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _frames(page: Page, n: int = 3) -> None:
    page.evaluate(
        f"""() => new Promise(r => {{
            let k = {n};
            const next = () => (--k <= 0 ? r() : requestAnimationFrame(next));
            requestAnimationFrame(next);
        }})"""
    )


def _row(page: Page, kind: str) -> Any:
    return page.locator(f".overlay-item.kind-{kind}")


def test_layers_panel_shows_hides_and_fades_heatmap_and_features(hub: Hub, tab: Tab) -> None:
    _open(tab, hub)
    page = tab.page
    panel = page.get_by_test_id("overlays-panel")
    assert panel.is_visible()
    assert panel.locator(".overlay-item").count() == 2

    # Legends: the heatmap's ramp with its range; the cells' class colours and counts.
    heat, cells = _row(page, "heatmap"), _row(page, "features")
    assert heat.get_by_test_id("overlay-ramp").is_visible()
    assert heat.locator(".overlay-ramp-range").inner_text().split() == ["0", "1"]
    assert "P(tumour)" in heat.inner_text()
    classes = cells.locator(".overlay-legend.classes li")
    assert sorted(classes.locator(".overlay-class").all_inner_texts()) == sorted(CLASS_COLOURS)
    counts = [int(c.replace(",", "")) for c in classes.locator(".overlay-count").all_inner_texts()]
    assert sum(counts) == CELLS
    swatch = classes.first.locator(".overlay-swatch").evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert swatch.startswith("rgb(")

    # Features: drawn (as 10,000 canvas shapes, not DOM nodes), then hidden, then faded.
    stats = page.evaluate("() => window.iain.overlays.stats")
    assert stats["drawn"] == CELLS  # the whole slide is in view
    assert page.locator("svg path, svg circle").count() < 100
    assert _features_alpha(page) == 255
    heat.locator("input[type=checkbox]").uncheck()
    _frames(page)
    shown = _left_half(page)
    cells.locator("input[type=checkbox]").uncheck()
    _frames(page)
    assert _features_alpha(page) == 0
    hidden = _left_half(page)
    cells.locator("input[type=checkbox]").check()
    cells.locator("input[type=range]").fill("30")
    _frames(page)
    faded = _left_half(page)
    # At 30 %, the cells change the picture by 30 % of what they change at 100 %.
    change = np.abs(shown - hidden).sum()
    assert change > 0
    assert 0.24 < np.abs(faded - hidden).sum() / change < 0.36
    cells.locator("input[type=checkbox]").uncheck()
    heat.locator("input[type=checkbox]").check()
    _frames(page)

    # The heatmap, features hidden: the peak shows the top of the ramp at full opacity, the
    # slide when hidden, in between at half; where the probability is zero, always the slide.
    # The peak in the middle of the view (clear of the panel and the minimap), and the
    # nearest value that is zero with zeros all around it.
    peak_row, peak_col = np.unravel_index(int(np.argmax(HEATMAP)), HEATMAP.shape)
    page.evaluate(
        """([x, y]) => {
            const v = window.iain.viewer, item = v.world.getItemAt(0);
            v.viewport.panTo(item.imageToViewportCoordinates(x, y), true);
        }""",
        [(peak_col + 0.5) * 20, (peak_row + 0.5) * 20],
    )
    _settle(page)
    peak = _screen_point(page, (peak_col + 0.5) * 20, (peak_row + 0.5) * 20)
    padded = np.pad(HEATMAP, 2, constant_values=1)
    clear = [(r, c) for r, c in np.argwhere(HEATMAP == 0) if not padded[r : r + 5, c : c + 5].any()]
    zero_row, zero_col = min(
        clear, key=lambda rc: (rc[0] - peak_row) ** 2 + (rc[1] - peak_col) ** 2
    )
    zero = _screen_point(page, (zero_col + 0.5) * 20, (zero_row + 0.5) * 20)

    heat.locator("input[type=range]").fill("100")
    _settle(page)
    full_peak, full_zero = _pixel(page, peak), _pixel(page, zero)
    assert np.abs(full_peak - VIRIDIS_TOP).max() < 20, full_peak
    heat.locator("input[type=checkbox]").uncheck()
    _frames(page)
    slide_peak, slide_zero = _pixel(page, peak), _pixel(page, zero)
    assert np.abs(slide_peak - VIRIDIS_TOP).max() > 40, slide_peak
    assert np.abs(full_zero - slide_zero).max() < 6  # transparent where the probability is 0
    heat.locator("input[type=checkbox]").check()
    heat.locator("input[type=range]").fill("50")
    _frames(page)
    half_peak = _pixel(page, peak)
    expected = (full_peak + slide_peak) / 2
    assert np.abs(half_peak - expected).max() < 20, (half_peak, expected)

    # The `o` key hides every layer, and shows the same ones again.
    cells.locator("input[type=checkbox]").check()
    # Keys typed into a form field are not shortcuts: leave the slider first.
    page.evaluate("() => document.activeElement.blur()")
    _frames(page)
    page.locator("body").press("o")
    _frames(page)
    assert _features_alpha(page) == 0
    assert np.abs(_pixel(page, peak) - slide_peak).max() < 6
    assert not heat.locator("input[type=checkbox]").is_checked()
    page.locator("body").press("o")
    _frames(page)
    assert _features_alpha(page) > 0
    assert heat.locator("input[type=checkbox]").is_checked()
    tab.assert_no_console_errors()


def test_features_follow_zoom_rotation_and_flip(hub: Hub, tab: Tab) -> None:
    """Zoomed in, only the cells in view are drawn, and each where the slide has it, however
    the view is turned or mirrored."""
    _open(tab, hub)
    page = tab.page
    _row(page, "heatmap").locator("input[type=checkbox]").uncheck()
    features = httpx.get(
        hub.url + page.evaluate("() => window.iain.overlays.layers[1].info.features_url"),
        timeout=30,
        headers=hub.headers,
    ).json()["features"]
    # A cell to look at: one well inside the slide, with no other cell near it.
    centres = np.array([np.mean(f["geometry"]["coordinates"][0], axis=0) for f in features])
    inside = (centres > 300).all(axis=1) & (centres < [WIDTH - 300, HEIGHT - 300]).all(axis=1)
    alone = [
        i for i in np.flatnonzero(inside) if np.sort(np.hypot(*(centres - centres[i]).T))[1] > 60
    ]
    cell = features[alone[0]]
    ring = np.array(cell["geometry"]["coordinates"][0])
    cx, cy = ring[:, 0].mean(), ring[:, 1].mean()
    colour = dict(CLASS_COLOURS)[cell["properties"]["class"]]
    for rotation, flip in ((0, False), (90, False), (0, True), (270, True)):
        page.evaluate(
            """([x, y, rotation, flip]) => {
                const v = window.iain.viewer, item = v.world.getItemAt(0);
                v.viewport.setFlip(flip);
                v.viewport.setRotation(rotation, true);
                v.viewport.zoomTo(item.imageToViewportZoom(4), null, true);
                v.viewport.panTo(item.imageToViewportCoordinates(x, y), true);
            }""",
            [cx, cy, rotation, flip],
        )
        _frames(page, 4)
        drawn = page.evaluate("() => window.iain.overlays.stats.drawn")
        assert 0 < drawn < CELLS / 4, (rotation, flip, drawn)
        # The cell's outline passes through its vertices: on screen, the stroke's colour.
        vertex = ring[0]
        centre = page.evaluate(
            "() => { const r = window.iain.viewer.element.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; }"
        )
        zoom = 4.0
        dx, dy = (vertex[0] - cx) * zoom, (vertex[1] - cy) * zoom
        theta = np.radians(rotation)
        sx, sy = dx * np.cos(theta) - dy * np.sin(theta), dx * np.sin(theta) + dy * np.cos(theta)
        if flip:
            sx = -sx
        on_canvas = page.evaluate(
            """([x, y]) => {
                const c = document.querySelector('canvas.overlay-features');
                const r = c.getBoundingClientRect(), k = c.width / r.width;
                const d = c.getContext('2d').getImageData(
                    Math.round((x - r.left) * k) - 2, Math.round((y - r.top) * k) - 2, 5, 5).data;
                let best = [0, 0, 0, 0];
                for (let i = 0; i < d.length; i += 4) {
                    if (d[i + 3] > best[3]) best = [...d.slice(i, i + 4)];
                }
                return best;
            }""",
            [centre[0] + sx, centre[1] + sy],
        )
        expected = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert on_canvas[3] > 200, (rotation, flip, on_canvas)
        assert np.abs(np.array(on_canvas[:3]) - expected).max() < 40, (rotation, flip, on_canvas)
    tab.assert_no_console_errors()


def test_overlays_screenshot(hub: Hub, tab: Tab) -> None:
    """docs/screenshots/overlays.png: the heatmap and the cells in the middle of the slide."""
    _open(tab, hub)
    page = tab.page
    page.evaluate(
        """([x, y]) => {
            const v = window.iain.viewer, item = v.world.getItemAt(0);
            v.viewport.zoomTo(item.imageToViewportZoom(0.3), null, true);
            v.viewport.panTo(item.imageToViewportCoordinates(x, y), true);
        }""",
        [WIDTH * 0.55, HEIGHT * 0.5],
    )
    _settle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "overlays.png")
    tab.assert_no_console_errors()


def test_layers_stay_over_the_slide_when_switching_to_iiif(hub: Hub, tab: Tab) -> None:
    """The DeepZoom / IIIF switch reopens the slide, which empties OpenSeadragon's world:
    the heatmap comes back over it, at its opacity, and the features are still drawn."""
    _open(tab, hub)
    page = tab.page
    _row(page, "heatmap").locator("input[type=range]").fill("40")
    page.locator("button[data-protocol=iiif]").click()
    page.wait_for_function("() => window.iain.protocol === 'iiif'")
    wait_fully_loaded(page)
    _settle(page)
    items = page.evaluate(
        """() => {
            const w = window.iain.viewer.world, out = [];
            for (let i = 0; i < w.getItemCount(); i++) {
                const item = w.getItemAt(i), b = item.getBounds();
                out.push({opacity: item.getOpacity(), x: b.x, y: b.y, width: b.width,
                          height: b.height});
            }
            return out;
        }"""
    )
    assert len(items) == 2, items
    slide, heatmap = items
    assert heatmap["opacity"] == pytest.approx(0.4)
    for key in ("x", "y", "width", "height"):
        assert heatmap[key] == pytest.approx(slide[key]), key
    assert _features_alpha(page) == 255
    tab.assert_no_console_errors()
