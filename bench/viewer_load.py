"""Viewer timings in Chromium on the large benchmark slide: navigation to a complete first
viewport; then, timed inside the page, 2x zoom steps to a complete viewport, applied without
animation (the tile loading alone) and animated as a wheel notch or the + key does (what a
user waits for: the animation and the tiles); tile requests per step and duplicates. Starts
its own hub (local store, no background pyramid conversion) with the slide ingested.

    python bench/viewer_load.py [--slide bench/out/bench-60000x40000.tiff] [--steps 5]
        [--settings '{"animationTime": 0.6, "maxTilesPerFrame": 16}']

--via direct,h2 measures the same hub straight (HTTP/1.1, the browser's 6 connections per
host) and behind nginx with TLS speaking HTTP/2 (every tile in flight at once; "h1": the
same proxy with HTTP/1.1), as production puts it behind its reverse proxy.

--settings applies those OpenSeadragon settings to the open viewer before the zoom steps
(not to the first viewport), to compare them with the viewer's own without a rebuild.
The browser signs in on the login page as a pathologist of the slide's centre first (a
session cookie, as a user's browser has), outside the timings.

    python bench/viewer_load.py --smoke   # a seconds-long run on a small generated slide
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.compare_tiles import PY, REPO, free_port, ingest, wait_for
from bench.tls_proxy import TlsProxy
from iain.synthetic import write_synthetic_slide

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOADED = "window.iain && window.iain.fullyLoaded()"
APPLY_SETTINGS = """(settings) => {
    const v = window.iain.viewer, item = v.world.getItemAt(0), vp = v.viewport;
    if (settings.animationTime !== undefined) {
        for (const spring of [vp.zoomSpring, vp.centerSpringX, vp.centerSpringY]) {
            spring.animationTime = settings.animationTime;
        }
    }
    if (settings.maxTilesPerFrame !== undefined) {
        item.maxTilesPerFrame = settings.maxTilesPerFrame;
        item._currentMaxTilesPerFrame = settings.maxTilesPerFrame;
    }
    if (settings.minPixelRatio !== undefined) item.minPixelRatio = settings.minPixelRatio;
    if (settings.imageLoaderLimit !== undefined) v.imageLoader.jobLimit = settings.imageLoaderLimit;
}"""
# One 2x zoom step timed inside the page (no Playwright round trips): from the zoom to the
# first frame where the animation is over and every tile is drawn, with the tile requests'
# own timings (Resource Timing).
ZOOM_STEP = """async (animated) => {
    const v = window.iain.viewer;
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    await frame();
    const t0 = performance.now();
    v.viewport.zoomBy(2, undefined, !animated);
    v.viewport.applyConstraints(!animated);
    await frame(); // the zoom takes effect on the next frame
    // Mid-animation the current (in-between) view may be complete: wait for the end too.
    while (v.isAnimating() || !window.iain.fullyLoaded()) await frame();
    const done = performance.now();
    const tiles = performance
        .getEntriesByType("resource")
        .filter((e) => e.name.includes("_files/") && e.startTime >= t0);
    const starts = tiles.map((e) => e.startTime - t0);
    const ends = tiles.map((e) => e.responseEnd - t0);
    return {
        total: done - t0,
        first_request: starts.length ? Math.min(...starts) : null,
        last_response: ends.length ? Math.max(...ends) : null,
        tiles: tiles.length,
        protocol: tiles.length ? tiles[0].nextHopProtocol : null,
    };
}"""


USERNAME = "bench.pathologist"
PASSWORD = "bench-viewer-2026"  # a throwaway hub's, in a temporary folder


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    page.locator("#login-username").fill(USERNAME)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-password").press("Enter")
    page.wait_for_url(f"{base}/", timeout=60_000)


def visit(
    page: Page, url: str, steps: int, animated: bool, settings: dict[str, float]
) -> dict[str, object]:
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "_files/" in r.url else None)
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function(LOADED, timeout=60_000, polling="raf")
    first_ms = (time.perf_counter() - started) * 1000
    first_tiles = len(tiles)
    page.evaluate("() => performance.setResourceTimingBufferSize(100000)")
    page.evaluate(APPLY_SETTINGS, settings)
    step_ms: list[float] = []
    step_tiles: list[int] = []
    first_request_ms: list[float] = []
    last_response_ms: list[float] = []
    protocols: set[str] = set()
    for _ in range(steps):
        before = len(tiles)
        step = page.evaluate(ZOOM_STEP, animated)
        step_ms.append(step["total"])
        step_tiles.append(len(tiles) - before)
        if step["protocol"]:
            protocols.add(step["protocol"])
        if step["first_request"] is not None:
            first_request_ms.append(step["first_request"])
            last_response_ms.append(step["last_response"])
    duplicates = sum(n - 1 for n in Counter(tiles).values() if n > 1)
    return {
        "first_viewport_ms": first_ms,
        "first_viewport_tiles": first_tiles,
        "zoom_step_ms": step_ms,
        "zoom_step_tiles": step_tiles,
        "first_request_ms": first_request_ms,
        "last_response_ms": last_response_ms,
        "duplicate_requests": duplicates,
        "protocols": sorted(protocols),
    }


def measure(base: str, via: str, slide_id: str, args: argparse.Namespace) -> None:
    """The three runs (cold, warm, animated) through `base`, printed."""
    with sync_playwright() as p:
        chromium_args = CHROMIUM_ARGS + (["--ignore-certificate-errors"] if via != "direct" else [])
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=chromium_args)
        runs = [
            ("cold server cache, zoom without animation", False),
            ("warm server cache, zoom without animation", False),
            ("warm server cache, animated zoom", True),
        ]
        for state, animated in runs:
            # A fresh browser context each time: no browser cache, like a new tab.
            context = browser.new_context(
                viewport={"width": 1920, "height": 1080}, ignore_https_errors=via != "direct"
            )
            page = context.new_page()
            sign_in(page, base)
            url = f"{base}/viewer/{slide_id}"
            result = visit(page, url, args.steps, animated, args.settings)
            context.close()
            steps = result["zoom_step_ms"]
            protocols = result["protocols"]
            assert isinstance(protocols, list)
            firsts = result["first_request_ms"]
            lasts = result["last_response_ms"]
            assert isinstance(steps, list)
            assert isinstance(firsts, list) and isinstance(lasts, list)
            print(
                f"[{via} {','.join(protocols)}] {state}: first complete viewport "
                f"{result['first_viewport_ms']:.0f} ms "
                f"({result['first_viewport_tiles']} tiles); zoom step median "
                f"{statistics.median(steps):.0f} ms, max {max(steps):.0f} ms "
                f"{[round(ms) for ms in steps]} "
                f"(first tile request after {_median(firsts)} ms, last "
                f"tile answered after {_median(lasts)} ms, medians), "
                f"tiles per step {result['zoom_step_tiles']}; duplicate requests "
                f"{result['duplicate_requests']}",
                flush=True,
            )
        browser.close()


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-60000x40000.tiff")
    # 5: every step fetches tiles (a 6th hits the zoom limit, maxZoomPixelRatio).
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--settings", type=json.loads, default={})
    ap.add_argument("--smoke", action="store_true", help="tiny generated slide, one step")
    ap.add_argument(
        "--via",
        default="direct",
        help="comma-separated: direct (the hub itself), h2 or h1 (nginx with TLS in front)",
    )
    args = ap.parse_args()
    vias = args.via.split(",")
    if not set(vias) <= {"direct", "h1", "h2"}:
        ap.error(f"--via {args.via!r}: each of direct, h1, h2")
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            args.slide = Path(tmp) / "smoke.tiff"
            write_synthetic_slide(args.slide, 12000, 8000)
            args.steps = 1
        env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_HOME": f"{tmp}/home"}
        # No background pyramid conversion of the slide during the measurement.
        env["IAIN_CONVERT_WORKER"] = "false"
        slide_id, _ = ingest(env, args.slide)
        subprocess.run(
            [PY, "-m", "iain.cli", "users", "add", USERNAME, "--centre", "caen",
             "--role", "pathologist", "--password-stdin"],
            env=env, input=PASSWORD + "\n", text=True, check=True, capture_output=True,
        )  # fmt: skip
        port = free_port()
        server = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=env)
        try:
            wait_for(f"http://127.0.0.1:{port}/api/health", server)
            for via in vias:
                if via == "direct":
                    measure(f"http://127.0.0.1:{port}", via, slide_id, args)
                    continue
                home = Path(tmp) / f"nginx-{via}"
                with TlsProxy(home, free_port(), port, http2=via == "h2") as proxy:
                    measure(proxy.base, via, slide_id, args)
        finally:
            server.terminate()
            server.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
