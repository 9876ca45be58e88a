"""Side-by-side tile-serving benchmark, one run, one slide, one machine.

Servers, each measured alone (the others stopped) with bench/tile_load.py:
  reference   OpenSlide DeepZoomGenerator per request (bench/reference_server.py)
  iain-local  `iain serve`, slide in a local-directory store
  iain-local-transcode  the same with IAIN_ZERO_TRANSCODE=false (every tile re-encoded)
  iain-s3     `iain serve`, slide in a real S3 server (SeaweedFS on 127.0.0.1)
  iain-s3-transcode     the same with IAIN_ZERO_TRANSCODE=false
  iain-local-iiif, iain-s3-iiif   iain-local and iain-s3 asked the same tiles as IIIF
                 Image API 3 requests ({x},{y},{w},{h}/{w},{h}/0/default.jpg)
  iain-local-noauth, iain-s3-noauth   iain-local and iain-s3 with authorisation switched
                 off (bench/noauth_app.py): what access control costs. The iain servers
                 are called with a pathologist's API token (`Authorization: Bearer ...`).
and the floors, which no tile server can beat:
  floor-asgi     the same web stack answering one constant in-memory tile, as large as
                 the traces' mean tile, from a bare ASGI app (bench/floor_server.py)
  floor-fastapi  the same through a plain FastAPI route
  floor-range    no tile server: the load generator range-GETs each stored tile's bytes
                 straight from the S3 server (presigned URL + Range header)
At each viewer count, the viewers share a fixed number of tiles: a cold run (traces the
server has never seen), then a warm run (exactly the same tiles again); iain's tile cache
is sized to hold a whole trace.
Also measured: ingest time, the GET requests that the first tile of a never-opened slide
costs from S3, and the S3 server's RSS over --rss-tiles requests with the default cache.

    python bench/compare_tiles.py [--slide bench/out/bench-60000x40000.tiff] [--tiles 12000]

Authorisation on and off, in alternating rounds (each round and the median per server):

    python bench/compare_tiles.py --servers iain-s3,iain-s3-noauth --rounds 3 --rss-tiles 0

`--server-cpu 0` runs each server on CPU 0 alone and the load generator and the S3 server
on the other CPUs: the "one server core" of the issue's reference figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import tifffile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from exchange.core.db import Database  # noqa: E402
from exchange.identity.accounts import Identities  # noqa: E402
from iain.settings import Settings  # noqa: E402
from storage import S3Store  # noqa: E402
from tests.s3server import SeaweedS3  # noqa: E402
from tiles.cache import TileCache  # noqa: E402
from tiles.ingest import inspect_slide, store_original  # noqa: E402
from tiles.pool import ReaderPool  # noqa: E402
from tiles.service import TileService  # noqa: E402

PY = sys.executable
# floor-range runs before the constant floors: their tile has the mean size it measured.
SERVERS = (
    "reference",
    "iain-local",
    "iain-local-iiif",
    "iain-local-transcode",
    "iain-s3",
    "iain-s3-iiif",
    "iain-s3-transcode",
    "iain-local-noauth",
    "iain-s3-noauth",
    "floor-range",
    "floor-asgi",
    "floor-fastapi",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    url: str,
    proc: subprocess.Popen[bytes],
    deadline_s: float = 60,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def cpu_s(pid: int) -> float:
    """CPU time (user + system) the process has used: unlike throughput, what a tile costs
    the server hardly depends on what else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_s(pid: int) -> float:
    """CPU time of the server's main thread (its event loop: all a cached tile costs), to
    the nanosecond (/proc/PID/stat counts in 10 ms ticks)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(
    base: str,
    slide: str,
    viewers: int,
    tiles: int,
    seed: int,
    out: Path,
    extra: tuple[str, ...] = (),
) -> Any:
    cmd = [PY, str(REPO / "bench" / "tile_load.py"), "--base", base, "--slide", slide]
    cmd += ["--viewers", str(viewers), "--tiles", str(tiles), "--seconds", "300"]
    cmd += ["--seed", str(seed), *extra]
    cmd += ["--json", str(out)]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["results"][0]


def bench_token(home: str) -> str:
    """An API token of a pathologist of Caen (where `iain ingest` puts slides) in that hub."""
    identities = Identities(Database.open(Settings(home=Path(home)).database_url))
    if identities.user("bench") is None:
        identities.add_user("bench", "caen", ["pathologist"])
    return identities.create_token("bench", name="benchmark")[1]


def ingest(env: dict[str, str], slide: Path) -> tuple[str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [PY, "-m", "iain.cli", "ingest", str(slide)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()[0], time.monotonic() - started


def cold_gets(server: SeaweedS3, slide: Path) -> tuple[int, int]:
    """GETs for the first tile of a never-opened slide, and for a second tile."""
    store = S3Store(
        server.endpoint,
        "coldcount",
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
    )
    loc = store_original(store, "cold", inspect_slide(slide))
    with tempfile.TemporaryDirectory() as tmp:
        service = TileService(ReaderPool(store, Path(tmp)), TileCache(0))
        dz = service.deepzoom(loc)
        counts = []
        # Two neighbouring tiles of the full-resolution level, inside any slide of 2+ tiles.
        grid = dz.t_count(dz.z_max)
        row, first = min(10, grid.height - 1), min(10, grid.width - 2)
        for col in (first, first + 1):
            before = store.requests["GET"]
            service.deepzoom_tile(loc, dz.z_max, col, row)
            counts.append(store.requests["GET"] - before)
    return counts[0], counts[1]


def slide_size(slide: Path) -> tuple[int, int]:
    with tifffile.TiffFile(slide) as tif:
        height, width = tif.series[0].levels[0].shape[:2]
    return int(width), int(height)


def range_map(slide: Path, url: str, tile_size: int = 256) -> dict[str, Any]:
    """Each DeepZoom level that is a stored level -> its tiles' byte ranges in the object."""
    width, height = slide_size(slide)
    z_max = math.ceil(math.log2(max(width, height)))
    levels: dict[str, Any] = {}
    with tifffile.TiffFile(slide) as tif:
        for level in tif.series[0].levels:
            page = level.keyframe
            w = page.shape[1]
            z = z_max - round(math.log2(width / w))
            if page.tilewidth != tile_size or math.ceil(width / 2 ** (z_max - z)) != w:
                continue
            levels[str(z)] = {
                "cols": math.ceil(w / tile_size),
                "offsets": list(page.dataoffsets),
                "counts": list(page.databytecounts),
            }
    return {"url": url, "levels": levels}


def mean_tile_bytes(ranges: dict[str, Any]) -> int:
    counts: list[int] = [c for level in ranges["levels"].values() for c in level["counts"]]
    return round(sum(counts) / max(1, len(counts)))


def rss_over_requests(
    env: dict[str, str], slide_id: str, total: int, chunk: int, out: Path, header: str
) -> list[tuple[int, float]]:
    """Server RSS after every `chunk` tiles of fresh 8-viewer traces, `total` in all."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=env)
    samples: list[tuple[int, float]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        name, _, value = header.partition(": ")
        wait_for(f"{base}/slides/{slide_id}.dzi", proc, headers={name: value})
        samples.append((0, rss_mib(proc.pid)))
        done = 0
        seed = 1000
        while done < total:
            # Alternate fresh traces and replays: misses and hits, as real viewers make.
            seed += 1 if (done // chunk) % 2 == 0 else 0
            r = load(
                base, slide_id, 8, chunk // 8, seed, out / f"rss-{done}.json", ("--header", header)
            )
            done += int(r["tiles"]) + int(r["errors"])
            samples.append((done, rss_mib(proc.pid)))
            print(f"rss: {done} requests, {samples[-1][1]:.0f} MiB", flush=True)
    finally:
        proc.terminate()
        proc.wait(20)
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-60000x40000.tiff")
    ap.add_argument(
        "--tiles",
        type=int,
        default=12000,
        help="tiles per viewer count, shared among its viewers",
    )
    ap.add_argument("--viewers", default="1,8,32")
    ap.add_argument("--servers", default=",".join(SERVERS), help="which servers to measure")
    ap.add_argument(
        "--rss-tiles", type=int, default=100_000, help="requests for the RSS run (0: skip it)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/compare")
    ap.add_argument(
        "--server-cpu",
        type=int,
        default=None,
        help="run each measured server on this CPU alone and everything else (load generator, "
        "S3 server) on the others: one server core, as the issue's reference figures",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the chosen servers this many times, alternating (A B A B ...); "
        "the tables give the median, a second table each round",
    )
    args = ap.parse_args()
    server_cpus: set[int] | None = None
    if args.server_cpu is not None:
        server_cpus = {args.server_cpu}
        others = os.sched_getaffinity(0) - server_cpus
        if not others:
            ap.error("--server-cpu needs a second CPU for the load generator")
        os.sched_setaffinity(0, others)  # inherited by SeaweedFS and the load generators
    if not args.slide.exists():
        ap.error(f"{args.slide} missing: run bench/make_slide.py first")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"slide": str(args.slide), "tiles": args.tiles}
    results["server_cpu"] = args.server_cpu

    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "s3") as s3:
        results["cold_first_tile_gets"], results["next_tile_gets"] = cold_gets(s3, args.slide)
        # A cache that holds a whole 32-viewer trace, so "warm" means warm.
        base_env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_TILE_CACHE_MB": "2048"}
        local_env = {**base_env, "IAIN_HOME": f"{tmp}/local"}
        s3_env = {**base_env, "IAIN_HOME": f"{tmp}/s3home", **s3.env("bench")}
        local_id, results["ingest_local_s"] = ingest(local_env, args.slide)
        s3_id, results["ingest_s3_s"] = ingest(s3_env, args.slide)
        bucket = S3Store(
            s3.endpoint, "bench", access_key=s3.access_key, secret_key=s3.secret_key, secure=False
        )
        original = next(o.key for o in bucket.list(f"slides/{s3_id}/original/"))
        ranges = range_map(args.slide, bucket.presign_get(original, 24 * 3600))
        ranges_file = args.out / "range-map.json"
        ranges_file.write_text(json.dumps(ranges))
        results["mean_stored_tile_bytes"] = mean_tile_bytes(ranges)
        width, height = slide_size(args.slide)
        auth = {
            "local": f"Authorization: Bearer {bench_token(local_env['IAIN_HOME'])}",
            "s3": f"Authorization: Bearer {bench_token(s3_env['IAIN_HOME'])}",
        }
        # Under uvicorn configured as `iain serve` runs it: only authorisation differs.
        noauth = [PY, str(REPO / "bench/noauth_app.py")]
        floor = [PY, str(REPO / "bench/floor_server.py"), "--width", str(width)]
        floor += ["--height", str(height), "--tile-bytes", "{tile_bytes}"]

        servers = {
            "reference": (
                [PY, str(REPO / "bench/reference_server.py"), str(args.slide), "--slide-id", "ref"],
                base_env,
                "ref",
            ),
            "iain-local": ([PY, "-m", "iain.cli", "serve"], local_env, local_id),
            # The same, every tile decoded and re-encoded: what zero-transcode saves.
            "iain-local-transcode": (
                [PY, "-m", "iain.cli", "serve"],
                {**local_env, "IAIN_ZERO_TRANSCODE": "false"},
                local_id,
            ),
            "iain-s3": ([PY, "-m", "iain.cli", "serve"], s3_env, s3_id),
            # The same servers; only the load generator's URLs differ.
            "iain-local-iiif": ([PY, "-m", "iain.cli", "serve"], local_env, local_id),
            "iain-s3-iiif": ([PY, "-m", "iain.cli", "serve"], s3_env, s3_id),
            "iain-s3-transcode": (
                [PY, "-m", "iain.cli", "serve"],
                {**s3_env, "IAIN_ZERO_TRANSCODE": "false"},
                s3_id,
            ),
            "iain-local-noauth": (noauth, local_env, local_id),
            "iain-s3-noauth": (noauth, s3_env, s3_id),
            "floor-asgi": ([*floor, "--mode", "asgi"], base_env, "floor"),
            "floor-fastapi": ([*floor, "--mode", "fastapi"], base_env, "floor"),
            # The .dzi from the constant server; every tile from S3 by range.
            "floor-range": ([*floor, "--mode", "asgi"], base_env, "floor"),
        }
        chosen = args.servers.split(",")
        # --rounds: the chosen servers one after the other, again and again (A B A B ...),
        # so a machine's slow spell hits both; the report gives each round and the median.
        rounds: list[dict[str, Any]] = []
        for name in [n for _ in range(args.rounds) for n in SERVERS if n in chosen]:
            if not rounds or name in rounds[-1]:
                rounds.append({})
            this = rounds[-1]
            cmd, env, slide_id = servers[name]
            # The constant tile: as large as the tiles the same traces fetched from S3.
            tile_bytes = round(
                this["floor-range"]["warm"][0]["mean_bytes"]
                if "floor-range" in this
                else results["mean_stored_tile_bytes"]
            )
            cmd = [part.format(tile_bytes=tile_bytes) for part in cmd]
            extra: tuple[str, ...] = ()
            if name == "floor-range":
                extra = ("--range-map", str(ranges_file))
            header = auth["s3" if "-s3" in name else "local"] if name.startswith("iain-") else None
            if header is not None and not name.endswith("-noauth"):
                extra = ("--header", header)
            if name.endswith("-iiif"):
                extra = (*extra, "--iiif")
            port = free_port()
            pin = (lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None
            proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, preexec_fn=pin)
            try:
                base = f"http://127.0.0.1:{port}"
                name_, _, value = (header or "").partition(": ")
                wait_for(
                    f"{base}/slides/{slide_id}.dzi",
                    proc,
                    headers={name_: value} if header else None,
                )
                runs: dict[str, list[Any]] = {"cold": [], "warm": []}
                for viewers in (int(v) for v in args.viewers.split(",")):
                    # Cold: traces this server has never seen (a seed per viewer count);
                    # warm: the same traces again, straight after.
                    for state in ("cold", "warm"):
                        tag = f"-r{len(rounds)}" if args.rounds > 1 else ""
                        out = args.out / f"{name}-{viewers}-{state}{tag}.json"
                        used, looped = cpu_s(proc.pid), loop_cpu_s(proc.pid)
                        run = load(
                            base, slide_id, viewers, args.tiles // viewers, viewers, out, extra
                        )
                        used, looped = cpu_s(proc.pid) - used, loop_cpu_s(proc.pid) - looped
                        run["server_cpu_us_per_tile"] = 1e6 * used / max(1, run["tiles"])
                        run["server_loop_cpu_us_per_tile"] = 1e6 * looped / max(1, run["tiles"])
                        runs[state].append(run)
                this[name] = {**runs, "rss_mib": rss_mib(proc.pid)}
                print(f"{name}: done, RSS {this[name]['rss_mib']:.0f} MiB", flush=True)
            finally:
                proc.terminate()
                proc.wait(20)
        results.update(median_runs(rounds))
        if args.rounds > 1:
            results["rounds"] = rounds
        if args.rss_tiles:
            # The default tile cache (256 MiB), as a deployment runs.
            rss_env = {**s3_env, "IAIN_TILE_CACHE_MB": "256"}
            # Saved first: the long RSS run must not lose the comparison if it fails.
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
            results["rss_series"] = rss_over_requests(
                rss_env,
                s3_id,
                args.rss_tiles,
                max(8000, args.rss_tiles // 10),
                args.out,
                auth["s3"],
            )

    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


def median_runs(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server, each (cache state, viewers) run with its figures the median over rounds."""
    out: dict[str, Any] = {}
    for name in rounds[0] if rounds else {}:
        per = [r[name] for r in rounds if name in r]
        merged: dict[str, Any] = {"rss_mib": statistics.median(p["rss_mib"] for p in per)}
        for state in ("cold", "warm"):
            merged[state] = [
                {
                    key: (statistics.median_low if isinstance(value, int) else statistics.median)(
                        p[state][i][key] for p in per
                    )
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else value
                    for key, value in first.items()
                }
                for i, first in enumerate(per[0][state])
            ]
        out[name] = merged
    return out


def rounds_report(rounds: list[dict[str, Any]]) -> str:
    """Markdown table: tiles/s, server CPU µs/tile and the event loop's share of it, of each
    round, and their medians."""
    head = " | ".join(f"round {i + 1}" for i in range(len(rounds)))
    lines = [
        f"| server | cache | viewers | {head} | median |",
        "|---|---|---:|" + "---:|" * (len(rounds) + 1),
    ]
    for name in rounds[0]:
        for state in ("cold", "warm"):
            for i, first in enumerate(rounds[0][name][state]):
                runs = [r[name][state][i] for r in rounds if name in r]
                cells = [
                    f"{r['tiles_per_s']:.0f} ({r['server_cpu_us_per_tile']:.0f}, "
                    f"{r['server_loop_cpu_us_per_tile']:.1f} µs)"
                    for r in runs
                ]
                tps = statistics.median(r["tiles_per_s"] for r in runs)
                cpu = statistics.median(r["server_cpu_us_per_tile"] for r in runs)
                loop = statistics.median(r["server_loop_cpu_us_per_tile"] for r in runs)
                lines.append(
                    f"| {name} | {state} | {first['viewers']} | "
                    + " | ".join(cells)
                    + f" | {tps:.0f} ({cpu:.0f}, {loop:.1f} µs) |"
                )
    return "\n".join(lines)


def _levels(runs: list[Any]) -> dict[int, Any]:
    return {int(r["viewers"]): r for r in runs}


def report(results: dict[str, Any]) -> str:
    """Markdown table: each run against the reference and against its floor.

    Warm runs are compared with the constant-tile floor (bare ASGI, the stricter one), cold
    runs with the range-GET floor (fetching the stored bytes from S3 is the least any tile
    server must do for a tile it has not seen)."""
    measured = [n for n in SERVERS if n in results]
    lines = [
        "| server | cache | viewers | tiles | tiles/s | × reference | % of floor | p50 ms "
        "| p99 ms | errors | kB/tile | server CPU µs/tile |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def per_viewers(name: str, state: str) -> dict[int, Any]:
        return _levels(results[name][state]) if name in results else {}

    floors = {"warm": "floor-asgi", "cold": "floor-range"}
    for name in measured:
        for state in ("cold", "warm"):
            ref = per_viewers("reference", state)
            floor = per_viewers(floors[state], state)
            for viewers, r in sorted(per_viewers(name, state).items()):
                ratio = (
                    f"{r['tiles_per_s'] / ref[viewers]['tiles_per_s']:.1f}"
                    if viewers in ref
                    else "–"
                )
                share = (
                    f"{100 * r['tiles_per_s'] / floor[viewers]['tiles_per_s']:.0f} %"
                    if viewers in floor and not name.startswith("floor")
                    else "–"
                )
                lines.append(
                    f"| {name} | {state} | {viewers} | {r['tiles']} | {r['tiles_per_s']:.0f} "
                    f"| {ratio} | {share} "
                    f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
                    f"| {r['mean_bytes'] / 1000:.1f} "
                    f"| {r.get('server_cpu_us_per_tile', math.nan):.0f} |"
                )
    lines.append("")
    lines.append(
        f"Cold first tile from S3: {results['cold_first_tile_gets']} GETs "
        f"(next tile: {results['next_tile_gets']}). Ingest of the slide: "
        f"{results['ingest_local_s']:.1f} s to local disk, {results['ingest_s3_s']:.1f} s to S3. "
        f"Mean stored tile: {results['mean_stored_tile_bytes'] / 1000:.1f} kB. "
        "Server RSS after the runs: "
        + ", ".join(f"{n} {results[n]['rss_mib']:.0f} MiB" for n in measured)
    )
    if results.get("rounds"):
        lines += [
            "",
            "Each round: tiles/s (server CPU µs/tile: whole process, event loop thread)",
            "",
            rounds_report(results["rounds"]),
        ]
    series = results.get("rss_series")
    if series:
        lines.append("")
        lines.append(
            "iain-s3 RSS (MiB) after N requests, default 256 MiB tile cache: "
            + ", ".join(f"{n}: {mib:.0f}" for n, mib in series)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
