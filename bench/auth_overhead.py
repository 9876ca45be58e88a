"""What authorising a cached tile costs, in-process: CPU per request, no sockets, no load
generator, so neither the kernel nor a busy machine's noise hides a few microseconds.

Builds the real hub (`iain.app.create_app`) and the same hub with authorisation switched
off (`bench/noauth_app.py`) on one local store holding the bench slide, warms both tile
caches with one trace, then replays that trace (every request a cache hit answered by the
fast path, tiles/fastpath.py) into each application, in two layers:

  asgi      straight into the ASGI application (scope, receive, send)
  uvicorn   as request bytes into uvicorn's httptools protocol, configured as `iain serve`
            runs it, on one keep-alive connection whose socket only counts what is written:
            the server's whole work per request except the system calls

and four variants:

  noauth       the no-auth hub, requests without credentials (as the HTTP benchmark sends)
  noauth+hdr   the no-auth hub, same requests with the bearer header (which it ignores)
  bearer       the real hub, `Authorization: Bearer <API token>` of a pathologist
  cookie       the real hub, a browser's session cookie of the same pathologist

Each round runs every variant once per layer over --requests requests, in a rotated order;
CPU time (time.process_time_ns) per request is the figure, median over rounds, and
noauth/variant the share of the no-auth throughput kept. --profile adds a cProfile of each
variant's ASGI replay (top functions by own time).

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

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from sqlalchemy import select  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from bench.noauth_app import without_auth  # noqa: E402
from exchange.core.models import User  # noqa: E402
from exchange.identity.accounts import Identities  # noqa: E402
from exchange.identity.sessions import SESSION_COOKIE, Sessions  # noqa: E402
from exchange.slides.catalogue import Catalogue  # noqa: E402
from exchange.slides.ingest import ingest_path  # noqa: E402
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
        self.wire: Wire | None = None

    async def one(self, path: str) -> None:
        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                self.statuses[status] = self.statuses.get(status, 0) + 1
                for name, value in message["headers"]:
                    if name == b"server-timing":
                        self.timings[value] = self.timings.get(value, 0) + 1

        await self.app(scope(path, self.headers), _receive, send)

    async def response_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of one answer (a cache hit after warm-up), Date aside."""
        got: list[tuple[bytes, bytes]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                got.extend((k, v) for k, v in message["headers"] if k != b"date")

        await self.app(scope(self.paths[0], self.headers), _receive, send)
        return got

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

    async def run_wire(self, n: int, collect: bool = True) -> int:
        """The same through uvicorn's HTTP/1.1 protocol (bytes in, bytes out, one
        keep-alive connection): what the server adds to the application."""
        if self.wire is None:
            self.wire = Wire(self.app, self.headers)
        wire = self.wire
        raw = [wire.request(p) for p in self.paths]
        if collect:
            gc.collect()
        started = time.process_time_ns()
        for i in range(n):
            await wire.one(raw[i % len(raw)])
        spent = time.process_time_ns() - started
        if wire.bad:
            raise SystemExit(f"{self.name}: {wire.bad} answers over the wire were not 200")
        return spent


class Wire(asyncio.Transport):
    """A connection of uvicorn's httptools protocol (as `iain serve` configures it) to
    `app`, with this object as its socket: it only counts what is written."""

    def __init__(self, app: FastAPI, headers: Headers) -> None:
        super().__init__()
        self.head = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            http="httptools",
            lifespan="off",
            forwarded_allow_ips=[],  # as `iain serve` with no IAIN_TRUSTED_PROXIES
        )
        config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", b"Tue, 24 Nov 2026 02:00:00 GMT")]
        self.state.default_headers += config.encoded_headers
        self.protocol = HttpToolsProtocol(config, self.state, {}, asyncio.get_running_loop())
        self.protocol.connection_made(self)
        self.bad = 0

    def request(self, path: str) -> bytes:
        return b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self.head)

    async def one(self, raw: bytes) -> None:
        self.protocol.data_received(raw)
        for task in list(self.state.tasks):
            await task

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data[:9]) == b"HTTP/1.1 " and bytes(data[9:12]) != b"200":
            self.bad += 1

    def is_closing(self) -> bool:
        return False


def setup(home: Path, slide: Path) -> tuple[Settings, str, str, str]:
    """A hub home holding `slide` (served from its original, as ingested); the slide id,
    a pathologist's API token and a login-session cookie secret."""
    settings = Settings(home=home, tile_cache_mb=512, convert_worker=False)
    catalogue = Catalogue.open(settings.database_url)
    slide_id = ingest_path(build_store(settings), catalogue, slide, "caen", convert=False).id
    identities = Identities(catalogue.db)
    identities.add_user("bench", "caen", ["pathologist"])
    token = identities.create_token("bench", name="benchmark")[1]
    sessions = Sessions(catalogue.db, lifetime=timedelta(hours=settings.session_hours))
    with catalogue.session() as session, session.begin():
        user = session.scalars(select(User).where(User.username == "bench")).one()
        _row, cookie = sessions.start(session, user)
    return settings, slide_id, token, cookie


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings, slide_id, token, cookie = setup(Path(tmp), args.slide)
        auth_app = create_app(settings)
        noauth_app = without_auth(create_app(settings))
        loc = auth_app.state.hub.catalogue.locate(slide_id)
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
        # A fair comparison: the same answer, header for header, with or without authorisation.
        answers = {v.name: await v.response_headers() for v in variants}
        if any(h != answers["noauth"] for h in answers.values()):
            raise SystemExit(f"the variants answer differently: {answers}")
        # Statuses and timings are checked on the ASGI replays; the wire counts non-200s.
        layers = {"asgi": Replay.run, "uvicorn": Replay.run_wire}
        per_request: dict[str, dict[str, list[float]]] = {
            layer: {v.name: [] for v in variants} for layer in layers
        }
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            if r % 2:
                order.reverse()
            for layer, run in layers.items():
                for v in order:
                    spent = await run(v, args.requests, True)
                    per_request[layer][v.name].append(spent / args.requests / 1000)
        for v in variants:
            if set(v.statuses) != {200} or set(v.timings) != {b"cache"}:
                raise SystemExit(f"{v.name}: not all cache hits: {v.statuses} {v.timings}")
        profiles = {}
        if args.profile:
            for v in variants:
                profiles[v.name] = await profile(v.run, args.requests)
    return {
        "slide": str(args.slide),
        "distinct_tiles": len(paths),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "cpu_us_per_request": per_request,
        "median_us": {
            layer: {name: statistics.median(us) for name, us in runs.items()}
            for layer, runs in per_request.items()
        },
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
    lines = [
        f"{results['rounds']} interleaved rounds x {results['requests_per_round']} cache hits "
        f"({results['distinct_tiles']} distinct tiles), CPU µs per request",
        "",
        "| variant | ASGI app: median (min–max) | vs noauth | through uvicorn: median "
        "(min–max) | vs noauth |",
        "|---|---:|---:|---:|---:|",
    ]
    runs, med = results["cpu_us_per_request"], results["median_us"]
    for name in runs["asgi"]:
        cells = []
        for layer in ("asgi", "uvicorn"):
            us = runs[layer][name]
            cells.append(f"{med[layer][name]:.1f} ({min(us):.1f}–{max(us):.1f})")
            cells.append(f"{100 * med[layer]['noauth'] / med[layer][name]:.0f} %")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "vs noauth: the no-auth cost over this variant's, i.e. the share of the no-auth "
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
