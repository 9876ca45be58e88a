"""Frame time while panning with overlays, in Chromium at 1920x1080: the large benchmark
slide with a generated heatmap and 10,000 generated cell outlines, panned by a script that
moves the view every frame (180 frames); requestAnimationFrame deltas are the frame times.
Modes: no layer shown, the heatmap, the 10,000 features, both; at the whole-slide view
(every cell a dot) and at 10x (cells drawn as polygons). Starts its own hub (local store).

    python bench/viewer_overlays.py [--slide bench/out/bench-60000x40000.tiff] [--frames 180]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.compare_tiles import PY, REPO, free_port, ingest, wait_for
from exchange.identity.accounts import Identities
from exchange.overlays.service import add_features, add_heatmap
from exchange.slides.catalogue import Catalogue
from iain.app import build_store
from iain.sample_overlays import CLASS_COLOURS, blob_heatmap, cell_features
from iain.settings import Settings

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MODES = {
    "no layer": (False, False),
    "heatmap": (True, False),
    "10,000 features": (False, True),
    "heatmap + features": (True, True),
}
# Pans the view by a fixed step every frame and records the time between frames.
PAN = """async ([frames, step]) => {
    const v = window.iain.viewer, o = window.iain.overlays;
    const deltas = [], draws = [];
    let last = performance.now(), drawsBefore = o.stats.draws;
    await new Promise((done) => {
        let n = 0, direction = 1;
        const frame = (now) => {
            deltas.push(now - last);
            last = now;
            if (o.stats.draws !== drawsBefore) {
                draws.push(o.stats.drawMs);
                drawsBefore = o.stats.draws;
            }
            if (++n >= frames) return done();
            if (n % 60 === 0) direction = -direction;
            const size = v.viewport.getContainerSize();
            // An OpenSeadragon Point (the page has no OpenSeadragon global to make one).
            const pixels = size.times(0);
            pixels.x = direction * step * size.x;
            const delta = v.viewport.deltaPointsFromPixels(pixels);
            v.viewport.panBy(delta, true);
            requestAnimationFrame(frame);
        };
        requestAnimationFrame(frame);
    });
    return {deltas: deltas.slice(1), draws, drawn: o.stats.drawn};
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def set_layers(page: Page, heatmap: bool, features: bool) -> None:
    page.evaluate(
        """([heatmap, features]) => {
            const o = window.iain.overlays;
            for (const l of o.layers) {
                o.setVisible(l.info.id, l.info.kind === 'heatmap' ? heatmap : features);
            }
        }""",
        [heatmap, features],
    )


def run(page: Page, url: str, frames: int) -> list[dict[str, Any]]:
    page.goto(url)
    page.wait_for_function("window.iain && window.iain.fullyLoaded()", timeout=120_000)
    page.evaluate("() => window.iain.overlays.ready")
    results = []
    for view, zoom in (("whole slide", None), ("10x", 0.25)):
        for mode, (heatmap, features) in MODES.items():
            page.evaluate(
                """(zoom) => {
                    const v = window.iain.viewer, item = v.world.getItemAt(0);
                    v.viewport.goHome(true);
                    if (zoom) {
                        v.viewport.zoomTo(item.imageToViewportZoom(zoom), null, true);
                        // The middle of the slide, where the generated cells cluster.
                        const size = item.getContentSize();
                        const middle = item.imageToViewportCoordinates(size.x / 2, size.y / 2);
                        v.viewport.panTo(middle, true);
                    }
                }""",
                zoom,
            )
            set_layers(page, heatmap, features)
            page.wait_for_timeout(1500)  # tiles of the starting view in, then measure
            out = page.evaluate(PAN, [frames, 0.01])
            deltas, draws = out["deltas"], out["draws"]
            results.append(
                {
                    "view": view,
                    "mode": mode,
                    "median_ms": statistics.median(deltas),
                    "p95_ms": percentile(deltas, 0.95),
                    "features_draw_median_ms": statistics.median(draws) if draws else None,
                    "features_drawn": out["drawn"] if features else 0,
                }
            )
            r = results[-1]
            draw = r["features_draw_median_ms"]
            print(
                f"{view:12} {mode:20} frame median {r['median_ms']:5.1f} ms, "
                f"p95 {r['p95_ms']:5.1f} ms"
                + (
                    f"; features draw median {draw:.1f} ms ({r['features_drawn']} drawn)"
                    if features and draw is not None
                    else ""
                ),
                flush=True,
            )
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-60000x40000.tiff")
    ap.add_argument("--frames", type=int, default=180)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_HOME": str(home)}
        slide_id, _ = ingest(env, args.slide)
        settings = Settings(home=home)
        store, catalogue = build_store(settings), Catalogue.open(settings.database_url)
        slide = catalogue.get(slide_id)
        assert slide is not None
        # One heatmap value per 256x256 slide pixels, as a patch classifier would give.
        field = blob_heatmap(slide.width // 256, slide.height // 256, seed=11)
        add_heatmap(store, catalogue, slide_id, field, name="Tumour probability")
        cells = cell_features(slide.width, slide.height, count=10_000, seed=11)
        add_features(store, catalogue, slide_id, cells, name="Cells", class_colours=CLASS_COLOURS)
        # The browser is a pathologist of the slide's centre, with an API token.
        identities = Identities(catalogue.db)
        identities.add_user("bench.pathologist", slide.centre, ["pathologist"])
        token = identities.create_token("bench.pathologist")[1]
        port = free_port()
        server = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/api/health", server)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                context = browser.new_context(
                    viewport={"width": 1920, "height": 1080},
                    extra_http_headers={"Authorization": f"Bearer {token}"},
                )
                run(context.new_page(), f"{base}/viewer/{slide_id}", args.frames)
                context.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
