"""What authorising a cached tile costs, in-process: CPU per request, no sockets, no load
generator, so neither the HTTP stack nor a busy machine's noise hides a few microseconds.

Builds the real hub (`iain.app.create_app`) and the same hub with authorisation switched
off (`bench/noauth_app.py`) on one local store holding the bench slide, warms both tile
caches with one trace, then replays that trace (every request a cache hit answered by the
fast path, tiles/fastpath.py) straight into each ASGI application, in interleaved rounds:

  noauth       the no-auth hub, requests without credentials (as the HTTP benchmark sends)
  noauth+hdr   the no-auth hub, same requests with the bearer header (which it ignores)
  bearer       the real hub, `Authorization: Bearer <API token>` of a pathologist
  cookie       the real hub, a browser's session cookie of the same pathologist

Each round runs every variant once over --requests requests, in a rotated order; CPU time
(time.process_time_ns) per request is the figure, median over rounds, and auth/noauth the
ratio. --profile adds a cProfile of each variant (top functions by own time).

    python bench/auth_overhead.py [--slide bench/out/bench-8192x6144.tiff] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from fastapi import FastAPI  # noqa: E402
from noauth_app import without_auth  # noqa: E402
from sqlalchemy import select  # noqa: E402

from exchange.catalogue import Catalogue  # noqa: E402
from exchange.identity import Identities  # noqa: E402
from exchange.ingest import ingest_path  # noqa: E402
from exchange.models import User  # noqa: E402
from exchange.sessions import SESSION_COOKIE, Sessions  # noqa: E402
from iain.app import build_store, create_app  # noqa: E402
from iain.settings import Settings  # noqa: E402

Message = dict[str, Any]
Headers = list[tuple[bytes, bytes]]
# What a browser or httpx sends besides credentials (uvicorn hands them over as they came).
BASE_HEADERS: Headers = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
    (b"user-agent", b"python-httpx/0.28.1"),
]


def trace(width: int, height: int, count: int, seed: int, tile: int = 256) -> list[str]:
    """`count` distinct tile paths of the three most detailed DeepZoom levels."""
    z_max = math.ceil(math.log2(max(width, height)))
    tiles = []
    for z in (z_max, z_max - 1, z_max - 2):
        scale = 2 ** (z_max - z)
        cols = math.ceil(math.ceil(width / scale) / tile)
        rows = math.ceil(math.ceil(height / scale) / tile)
        tiles += [(z, c, r) for c in range(cols) for r in range(rows)]
    chosen = random.Random(seed).sample(tiles, min(count, len(tiles)))
    return [f"{z}/{c}_{r}.jpeg" for z, c, r in chosen]


def scope(path: str, headers: Headers) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it (its `state` is a copy of the lifespan state)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(headers),
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Replay:
    """One variant: an application and the headers its requests carry."""

    def __init__(self, name: str, app: FastAPI, headers: Headers, paths: list[str]) -> None:
        self.name = name
        self.app = app
        self.headers = BASE_HEADERS + headers
        self.paths = paths
        self.statuses: dict[int, int] = {}
        self.timings: dict[bytes, int] = {}

    async def one(self, path: str) -> None:
        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                self.statuses[status] = self.statuses.get(status, 0) + 1
                for name, value in message["headers"]:
                    if name == b"server-timing":
                        self.timings[value] = self.timings.get(value, 0) + 1

        await self.app(scope(path, self.headers), _receive, send)

    async def run(self, n: int, collect: bool = True) -> int:
        """CPU nanoseconds for `n` requests of the trace (after a full collection: each
        variant starts from the same heap)."""
        paths = self.paths
        if collect:
            gc.collect()
        started = time.process_time_ns()
        for i in range(n):
            await self.one(paths[i % len(paths)])
        return time.process_time_ns() - started


def setup(home: Path, slide: Path) -> tuple[Settings, str, str, str]:
    """A hub home holding `slide` (served from its original, as ingested); the slide id,
    a pathologist's API token and a login-session cookie secret."""
    settings = Settings(home=home, tile_cache_mb=512, convert_worker=False)
    catalogue = Catalogue.open(settings.database_url)
    slide_id = ingest_path(build_store(settings), catalogue, slide, "caen", convert=False).id
    identities = Identities(catalogue)
    identities.add_user("bench", "caen", ["pathologist"])
    token = identities.create_token("bench", name="benchmark")[1]
    sessions = Sessions(catalogue, lifetime=timedelta(hours=settings.session_hours))
    with catalogue.session() as session, session.begin():
        user = session.scalars(select(User).where(User.username == "bench")).one()
        _row, cookie = sessions.start(session, user)
    return settings, slide_id, token, cookie


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings, slide_id, token, cookie = setup(Path(tmp), args.slide)
        auth_app = create_app(settings)
        noauth_app = without_auth(create_app(settings))
        loc = auth_app.state.catalogue.locate(slide_id)
        dz = auth_app.state.tile_service.deepzoom(loc)
        paths = [
            f"/slides/{slide_id}_files/{p}"
            for p in trace(dz.l0_size.width, dz.l0_size.height, args.distinct, args.seed)
        ]
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        variants = [
            Replay("noauth", noauth_app, [], paths),
            Replay("noauth+hdr", noauth_app, bearer, paths),
            Replay("bearer", auth_app, bearer, paths),
            Replay("cookie", auth_app, [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())], paths),
        ]
        # Warm-up: the first request of each tile goes to the route, which renders and
        # caches it; the second is a cache hit. Then only hits are measured.
        for v in variants:
            await v.run(2 * len(paths))
            v.statuses.clear()
            v.timings.clear()
        per_request: dict[str, list[float]] = {v.name: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            if r % 2:
                order.reverse()
            for v in order:
                per_request[v.name].append(await v.run(args.requests) / args.requests / 1000)
        for v in variants:
            if set(v.statuses) != {200} or set(v.timings) != {b"cache"}:
                raise SystemExit(f"{v.name}: not all cache hits: {v.statuses} {v.timings}")
        profiles = {}
        if args.profile:
            for v in variants:
                profiles[v.name] = await profile(v.run, args.requests)
    medians = {name: statistics.median(us) for name, us in per_request.items()}
    return {
        "slide": str(args.slide),
        "distinct_tiles": len(paths),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "cpu_us_per_request": per_request,
        "median_us": medians,
        "profiles": profiles,
    }


async def profile(run: Callable[[int, bool], Awaitable[int]], n: int) -> str:
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    await run(n, False)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def report(results: dict[str, Any]) -> str:
    med = results["median_us"]
    lines = [
        f"{results['rounds']} interleaved rounds x {results['requests_per_round']} cache hits "
        f"({results['distinct_tiles']} distinct tiles), CPU µs per request:",
        "",
        "| variant | median | min | max | vs noauth |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, us in results["cpu_us_per_request"].items():
        lines.append(
            f"| {name} | {med[name]:.1f} | {min(us):.1f} | {max(us):.1f} "
            f"| {100 * med['noauth'] / med[name]:.0f} % |"
        )
    lines.append("")
    lines.append(
        "vs noauth: the no-auth cost over this variant's cost, i.e. the share of the no-auth "
        "throughput a CPU-bound server keeps."
    )
    for name, text in results["profiles"].items():
        lines += ["", f"## profile: {name}", text]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-8192x6144.tiff")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--requests", type=int, default=4000, help="requests per variant per round")
    ap.add_argument("--distinct", type=int, default=800, help="distinct tiles in the trace")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="also cProfile each variant")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if not args.slide.exists():
        ap.error(f"{args.slide} missing: run bench/make_slide.py first")
    results = asyncio.run(measure(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
