"""Viewer timings in Chromium on the large benchmark slide: navigation to a complete first
viewport, and to a complete viewport after each 2x zoom step (applied without animation,
so the figure is the tile loading, not OpenSeadragon's zoom animation); tile requests per
step and duplicates. Starts its own hub (local store) with the slide ingested.

    python bench/viewer_load.py [--slide bench/out/bench-60000x40000.tiff] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from compare_tiles import PY, REPO, free_port, ingest, wait_for
from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOADED = "window.iain && window.iain.fullyLoaded()"
ZOOM_IN = (
    "window.iain.viewer.viewport.zoomBy(2, undefined, true);"
    "window.iain.viewer.viewport.applyConstraints(true)"
)


def visit(page: Page, url: str, steps: int) -> dict[str, object]:
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "_files/" in r.url else None)
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(LOADED, timeout=60_000, polling="raf")
    first_ms = (time.perf_counter() - started) * 1000
    first_tiles = len(tiles)
    step_ms: list[float] = []
    step_tiles: list[int] = []
    for _ in range(steps):
        before = len(tiles)
        started = time.perf_counter()
        page.evaluate(ZOOM_IN)
        # The zoom takes effect on the next frame: only then can "fully loaded" be trusted.
        page.wait_for_timeout(20)
        page.wait_for_function(LOADED, timeout=60_000, polling="raf")
        step_ms.append((time.perf_counter() - started) * 1000)
        step_tiles.append(len(tiles) - before)
    duplicates = sum(n - 1 for n in Counter(tiles).values() if n > 1)
    return {
        "first_viewport_ms": first_ms,
        "first_viewport_tiles": first_tiles,
        "zoom_step_ms": step_ms,
        "zoom_step_tiles": step_tiles,
        "duplicate_requests": duplicates,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-60000x40000.tiff")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_HOME": f"{tmp}/home"}
        slide_id, _ = ingest(env, args.slide)
        port = free_port()
        server = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/api/health", server)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                for state in ("cold server cache", "warm server cache"):
                    # A fresh browser context each time: no browser cache, like a new tab.
                    context = browser.new_context(viewport={"width": 1920, "height": 1080})
                    result = visit(context.new_page(), f"{base}/viewer/{slide_id}", args.steps)
                    context.close()
                    steps = result["zoom_step_ms"]
                    assert isinstance(steps, list)
                    print(
                        f"{state}: first complete viewport {result['first_viewport_ms']:.0f} ms "
                        f"({result['first_viewport_tiles']} tiles); zoom step median "
                        f"{statistics.median(steps):.0f} ms, max {max(steps):.0f} ms, tiles "
                        f"per step {result['zoom_step_tiles']}; duplicate requests "
                        f"{result['duplicate_requests']}"
                    )
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
