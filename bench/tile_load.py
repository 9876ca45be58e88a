"""Viewer-like DeepZoom load generator, usable against any DeepZoom server.

Each simulated viewer is a browser tab: a 1920x1080 viewport that starts on the whole slide
and then pans and zooms at random, requesting every visible tile of the current level that
it has not fetched before (the browser cache), over 6 keep-alive connections of its own.
A viewer waits for a view to be complete before its next step (no think time), so this is
a closed-loop throughput test.

The sequence of tiles each viewer asks for depends only on --seed and the viewer's number:
running the same command twice replays the same trace (warm server cache); another --seed
(or --fresh-per-level) gives tiles the server has not seen (cold cache).

    python bench/tile_load.py --base http://127.0.0.1:8100 --slide ref --viewers 1,8,32 \
        --seconds 20 --seed 1 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

DEFAULT_DZI = "{base}/slides/{slide}.dzi"
DEFAULT_TILE = "{base}/slides/{slide}_files/{level}/{col}_{row}.{format}"
# The same tiles asked as IIIF Image API 3 clients (OpenSeadragon, Mirador) ask them.
IIIF_TILE = "{base}/iiif/3/{slide}/{region}/{size}/0/default.jpg"

# A step that brings nothing new this many times in a row means the viewer has seen all it
# can reach: it starts a new browser session (empty cache, home view).
EXHAUSTED_STEPS = 50


@dataclass(frozen=True)
class Geometry:
    """DeepZoom pyramid of one slide, as announced by its .dzi."""

    width: int
    height: int
    tile_size: int
    overlap: int
    fmt: str

    @property
    def max_level(self) -> int:
        return math.ceil(math.log2(max(self.width, self.height)))

    def level_size(self, level: int) -> tuple[int, int]:
        scale = 2 ** (self.max_level - level)
        return math.ceil(self.width / scale), math.ceil(self.height / scale)

    def level_tiles(self, level: int) -> tuple[int, int]:
        w, h = self.level_size(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def iiif_tile(self, level: int, col: int, row: int) -> dict[str, str]:
        """The IIIF region (level-0 pixels, clipped) and canonical size of a DeepZoom tile."""
        scale = 2 ** (self.max_level - level)
        span = self.tile_size * scale
        x, y = col * span, row * span
        w, h = min(span, self.width - x), min(span, self.height - y)
        lw, lh = self.level_size(level)
        tw = min(self.tile_size, lw - col * self.tile_size)
        th = min(self.tile_size, lh - row * self.tile_size)
        return {"region": f"{x},{y},{w},{h}", "size": f"{tw},{th}"}


def parse_dzi(text: str) -> Geometry:
    root = ET.fromstring(text)
    # Ignore the XML namespace: servers differ in whether they send it.
    size = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Size"), None)
    if size is None:
        raise ValueError("no <Size> element in the .dzi")
    return Geometry(
        width=int(size.attrib["Width"]),
        height=int(size.attrib["Height"]),
        tile_size=int(root.attrib["TileSize"]),
        overlap=int(root.attrib.get("Overlap", "0")),
        fmt=root.attrib.get("Format", "jpeg"),
    )


class Walk:
    """Deterministic random pan/zoom walk of one viewer; yields the new tiles of each step."""

    def __init__(self, geo: Geometry, seed: int, viewport: tuple[int, int]) -> None:
        self.geo = geo
        self.rng = random.Random(seed)
        self.vw, self.vh = viewport
        # Home view: the level a viewer such as OpenSeadragon loads to show the whole slide
        # in the viewport, i.e. the first one at least as large as the fitted image.
        fit = min(self.vw / geo.width, self.vh / geo.height)
        self.home = max(0, min(geo.max_level, geo.max_level + math.ceil(math.log2(fit))))
        self.seen: set[tuple[int, int, int]] = set()
        self.empty_steps = 0
        self.steps = 0
        self._go_home()

    def _go_home(self) -> None:
        self.level = self.home
        w, h = self.geo.level_size(self.level)
        self.cx, self.cy = w / 2, h / 2

    def _clamp(self) -> None:
        # Keep the viewport inside the level image (centred where the image is smaller).
        w, h = self.geo.level_size(self.level)
        half_w, half_h = self.vw / 2, self.vh / 2
        self.cx = w / 2 if w <= self.vw else min(max(self.cx, half_w), w - half_w)
        self.cy = h / 2 if h <= self.vh else min(max(self.cy, half_h), h - half_h)

    def _move(self) -> None:
        r = self.rng.random()
        if r < 0.25 and self.level < self.geo.max_level:
            # Zoom in on a point of the current view, as a double-click or scroll does.
            tx = self.cx + (self.rng.random() - 0.5) * self.vw
            ty = self.cy + (self.rng.random() - 0.5) * self.vh
            self.level += 1
            self.cx, self.cy = tx * 2, ty * 2
        elif r < 0.45 and self.level > self.home:
            self.level -= 1
            self.cx, self.cy = self.cx / 2, self.cy / 2
        else:
            self.cx += self.rng.uniform(-0.6, 0.6) * self.vw
            self.cy += self.rng.uniform(-0.6, 0.6) * self.vh
        self._clamp()

    def visible(self) -> list[tuple[int, int, int]]:
        ts = self.geo.tile_size
        cols, rows = self.geo.level_tiles(self.level)
        c0 = max(0, int((self.cx - self.vw / 2) // ts))
        c1 = min(cols - 1, int((self.cx + self.vw / 2 - 1) // ts))
        r0 = max(0, int((self.cy - self.vh / 2) // ts))
        r1 = min(rows - 1, int((self.cy + self.vh / 2 - 1) // ts))
        return [(self.level, c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def next_step(self) -> list[tuple[int, int, int]]:
        """Tiles to fetch for the next view (the first call returns the home view)."""
        if self.steps:
            self._move()
        self.steps += 1
        new = [t for t in self.visible() if t not in self.seen]
        self.seen.update(new)
        if new:
            self.empty_steps = 0
        else:
            self.empty_steps += 1
            if self.empty_steps >= EXHAUSTED_STEPS:
                self.seen.clear()
                self.empty_steps = 0
                self._go_home()
        return new


@dataclass
class Stats:
    """Results of one concurrency level (collected cheaply in the hot path)."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    in_window: int = 0
    nbytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Result:
    viewers: int
    seconds: float
    tiles: int
    tiles_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    mean_bytes: float
    error_kinds: dict[str, int]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


class RangeMap:
    """The range-GET floor: tile (level, col, row) -> a byte range of one stored object.

    Built by bench/compare_tiles.py from the slide file's tile index; the load generator then
    fetches the stored tile bytes straight from the object store, with no tile server at all.
    """

    def __init__(self, doc: dict[str, Any]) -> None:
        self.url: str = doc["url"]
        # DeepZoom level -> (columns, offsets, byte counts), row-major like TIFF tiles.
        self.levels = {
            int(z): (v["cols"], v["offsets"], v["counts"]) for z, v in doc["levels"].items()
        }

    def request(self, level: int, col: int, row: int) -> tuple[str, dict[str, str]]:
        cols, offsets, counts = self.levels[level]
        i = row * cols + col
        start = offsets[i]
        return self.url, {"Range": f"bytes={start}-{start + counts[i] - 1}"}


async def run_viewer(
    walk: Walk,
    session: aiohttp.ClientSession,
    template: str,
    fields: dict[str, str],
    connections: int,
    deadline: float,
    stats: Stats,
    max_tiles: int = 0,
    ranges: RangeMap | None = None,
) -> None:
    clock = time.perf_counter
    geo, iiif = walk.geo, "{region}" in template

    async def fetch(url: str, headers: dict[str, str] | None) -> None:
        start = clock()
        try:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except Exception as exc:  # any failure is a data point, not a crash
            stats.errors[type(exc).__name__] += 1
            return
        end = clock()
        if status not in (200, 206):
            stats.errors[f"HTTP {status}"] += 1
            return
        stats.latencies.append(end - start)
        stats.ok += 1
        stats.nbytes += len(body)
        if end <= deadline:
            stats.in_window += 1

    async def lane(pending: Iterator[tuple[str, dict[str, str] | None]]) -> None:
        for url, headers in pending:
            if clock() >= deadline:
                return
            await fetch(url, headers)

    def request(lv: int, c: int, r: int) -> tuple[str, dict[str, str] | None]:
        if ranges is not None:
            return ranges.request(lv, c, r)
        if iiif:
            return template.format(**geo.iiif_tile(lv, c, r), **fields), None
        return template.format(level=lv, col=c, row=r, **fields), None

    budget = max_tiles or math.inf
    while clock() < deadline and budget > 0:
        urls = [request(lv, c, r) for lv, c, r in walk.next_step()]
        if not urls:
            continue
        if len(urls) > budget:
            urls = urls[: int(budget)]
        budget -= len(urls)
        # Like a browser: at most `connections` requests in flight for this tab, all lanes
        # drawing from the same iterator of the view's tiles.
        pending = iter(urls)
        await asyncio.gather(*(lane(pending) for _ in range(min(connections, len(urls)))))


async def run_level(
    geo: Geometry,
    viewers: int,
    first_viewer: int,
    args: argparse.Namespace,
    fields: dict[str, str],
) -> Result:
    stats = Stats()
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.connections),
            timeout=timeout,
            headers=args.headers,
        )
        for _ in range(viewers)
    ]
    # Viewer n always walks the same trace for a given seed, whatever the viewer count.
    walks = [
        Walk(geo, args.seed * 1_000_003 + first_viewer + i, args.viewport) for i in range(viewers)
    ]
    try:
        start = time.perf_counter()
        deadline = start + args.seconds
        await asyncio.gather(
            *(
                run_viewer(
                    w,
                    s,
                    args.template,
                    fields,
                    args.connections,
                    deadline,
                    stats,
                    args.tiles,
                    args.ranges,
                )
                for w, s in zip(walks, sessions, strict=True)
            )
        )
        # With --tiles the walks may all end before the deadline.
        elapsed = min(time.perf_counter(), deadline) - start
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    lat = sorted(stats.latencies)
    return Result(
        viewers=viewers,
        seconds=elapsed,
        tiles=stats.ok,
        tiles_per_s=stats.in_window / elapsed,
        p50_ms=percentile(lat, 0.50) * 1000,
        p90_ms=percentile(lat, 0.90) * 1000,
        p99_ms=percentile(lat, 0.99) * 1000,
        max_ms=(lat[-1] if lat else math.nan) * 1000,
        errors=sum(stats.errors.values()),
        mean_bytes=stats.nbytes / stats.ok if stats.ok else math.nan,
        error_kinds=dict(stats.errors),
    )


async def fetch_geometry(
    url: str, timeout: float, headers: dict[str, str] | None = None
) -> Geometry:
    async with (
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), headers=headers
        ) as session,
        session.get(url) as resp,
    ):
        resp.raise_for_status()
        return parse_dzi(await resp.text())


def print_table(results: list[Result]) -> None:
    head = f"{'viewers':>7} {'tiles':>7} {'tiles/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
    head += f"{'p99 ms':>8} {'max ms':>8} {'errors':>6} {'kB/tile':>7}"
    print(head)
    for r in results:
        print(
            f"{r.viewers:>7} {r.tiles:>7} {r.tiles_per_s:>8.1f} {r.p50_ms:>8.1f} "
            f"{r.p90_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.errors:>6} "
            f"{r.mean_bytes / 1000:>7.1f}"
        )
        if r.error_kinds:
            print(f"{'':>7} errors: {r.error_kinds}")


def parse_viewport(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


async def amain(args: argparse.Namespace) -> int:
    fields = {"base": args.base.rstrip("/"), "slide": args.slide}
    args.ranges = None
    if args.range_map:
        args.ranges = RangeMap(json.loads(Path(args.range_map).read_text()))
    dzi_url = args.dzi_template.format(**fields)
    try:
        geo = await fetch_geometry(dzi_url, args.timeout, args.headers)
    except aiohttp.ClientResponseError as exc:
        print(f"cannot read {dzi_url}: HTTP {exc.status}", file=sys.stderr)
        return 2
    except (aiohttp.ClientError, OSError, ET.ParseError, KeyError, ValueError) as exc:
        print(f"cannot read {dzi_url}: {exc!r}", file=sys.stderr)
        return 2
    fields["format"] = geo.fmt
    walk = Walk(geo, 0, args.viewport)
    print(
        f"{dzi_url}: {geo.width}x{geo.height} tile {geo.tile_size} overlap {geo.overlap} "
        f"{geo.fmt}; levels 0..{geo.max_level}, home level {walk.home}; "
        f"{args.connections} connections/viewer, {args.seconds:g} s per level, seed {args.seed}",
        flush=True,
    )
    results: list[Result] = []
    first_viewer = 0
    for n in args.viewers:
        results.append(await run_level(geo, n, first_viewer, args, fields))
        r = results[-1]
        print(
            f"  {n} viewers: {r.tiles_per_s:.1f} tiles/s, p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms, {r.errors} errors",
            flush=True,
        )
        if args.fresh_per_level:
            first_viewer += n
        await asyncio.sleep(args.pause)
    print_table(results)
    if args.json:
        doc: dict[str, Any] = {
            "base": args.base,
            "slide": args.slide,
            "template": args.template,
            "seed": args.seed,
            "fresh_per_level": args.fresh_per_level,
            "connections": args.connections,
            "viewport": list(args.viewport),
            "geometry": asdict(geo),
            # NaN (no successful tile) is not JSON: write null.
            "results": [
                {
                    k: None if isinstance(v, float) and math.isnan(v) else v
                    for k, v in asdict(r).items()
                }
                for r in results
            ],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(r.errors for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Viewer-like DeepZoom load generator.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--base", default="http://127.0.0.1:8000", help="server base URL")
    ap.add_argument("--slide", required=True, help="slide id used in the URLs")
    ap.add_argument("--viewers", default="1,8,32", help="comma-separated viewer counts")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration per viewer count")
    ap.add_argument("--seed", type=int, default=1, help="trace seed (new seed = cold trace)")
    ap.add_argument(
        "--fresh-per-level",
        action="store_true",
        help="give each viewer count its own viewers/traces instead of replaying viewer 0..n-1",
    )
    ap.add_argument(
        "--tiles",
        type=int,
        default=0,
        help="tiles per viewer, then stop (0: walk until --seconds); a fixed trace "
        "length makes a warm replay fetch exactly the tiles of the cold run",
    )
    ap.add_argument(
        "--template",
        default=DEFAULT_TILE,
        help="tile URL template: {level}, {col}, {row} (DeepZoom) or {region}, {size} (IIIF)",
    )
    ap.add_argument(
        "--iiif", action="store_true", help=f"ask the tiles as IIIF: --template {IIIF_TILE}"
    )
    ap.add_argument("--dzi-template", default=DEFAULT_DZI, help=".dzi URL template")
    ap.add_argument("--connections", type=int, default=6, help="connections per viewer")
    ap.add_argument("--viewport", type=parse_viewport, default=(1920, 1080), help="WxH")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, s")
    ap.add_argument("--pause", type=float, default=1.0, help="pause between levels, s")
    ap.add_argument(
        "--range-map",
        default=None,
        help="JSON tile -> byte-range map: fetch stored tile bytes straight from the object "
        "store (the range-GET floor); the .dzi still comes from --base",
    )
    ap.add_argument(
        "--header",
        action="append",
        default=[],
        help="'Name: value' sent with every request, e.g. 'Authorization: Bearer iain_...' "
        "(repeatable)",
    )
    ap.add_argument("--json", default=None, help="write results as JSON to this file")
    args = ap.parse_args(argv)
    if args.iiif:
        args.template = IIIF_TILE
    args.headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            ap.error(f"--header {header!r}: expected 'Name: value'")
        args.headers[name.strip()] = value.strip()
    args.viewers = [int(v) for v in str(args.viewers).split(",") if v.strip()]
    try:
        # uvloop comes with uvicorn[standard]: a cheaper event loop leaves more CPU to the
        # server that shares the machine.
        import uvloop
    except ImportError:
        return asyncio.run(amain(args))
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
