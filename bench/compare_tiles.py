"""Side-by-side tile-serving benchmark, one run, one slide, one machine.

Servers, each measured alone (the others stopped) with bench/tile_load.py:
  reference   OpenSlide DeepZoomGenerator per request (bench/reference_server.py)
  iain-local  `iain serve`, slide in a local-directory store
  iain-local-transcode  the same with IAIN_ZERO_TRANSCODE=false (every tile re-encoded)
  iain-s3     `iain serve`, slide in a real S3 server (SeaweedFS on 127.0.0.1)
At each viewer count, the viewers share a fixed number of tiles: a cold run (traces the
server has never seen), then a warm run (exactly the same tiles again); iain's tile cache
is sized to hold a whole trace.
Also measured: ingest time, and the GET requests that the first tile of a never-opened
slide costs from S3.

    python bench/compare_tiles.py [--slide bench/out/bench-60000x40000.tiff] [--tiles 12000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage import S3Store  # noqa: E402
from tests.s3server import SeaweedS3  # noqa: E402
from tiles.cache import TileCache  # noqa: E402
from tiles.ingest import inspect_slide, store_original  # noqa: E402
from tiles.pool import ReaderPool  # noqa: E402
from tiles.service import TileService  # noqa: E402

PY = sys.executable
SERVERS = ("reference", "iain-local", "iain-local-transcode", "iain-s3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(base: str, slide: str, viewers: int, tiles: int, seed: int, out: Path) -> Any:
    cmd = [PY, str(REPO / "bench" / "tile_load.py"), "--base", base, "--slide", slide]
    cmd += ["--viewers", str(viewers), "--tiles", str(tiles), "--seconds", "300"]
    cmd += ["--seed", str(seed)]
    cmd += ["--json", str(out)]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["results"][0]


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
        for col in (10, 11):
            before = store.requests["GET"]
            service.deepzoom_tile(loc, dz.z_max, col, 10)
            counts.append(store.requests["GET"] - before)
    return counts[0], counts[1]


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
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/compare")
    args = ap.parse_args()
    if not args.slide.exists():
        ap.error(f"{args.slide} missing: run bench/make_slide.py first")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"slide": str(args.slide), "tiles": args.tiles}

    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "s3") as s3:
        results["cold_first_tile_gets"], results["next_tile_gets"] = cold_gets(s3, args.slide)
        # A cache that holds a whole 32-viewer trace, so "warm" means warm.
        base_env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_TILE_CACHE_MB": "2048"}
        local_env = {**base_env, "IAIN_HOME": f"{tmp}/local"}
        s3_env = {**base_env, "IAIN_HOME": f"{tmp}/s3home", **s3.env("bench")}
        local_id, results["ingest_local_s"] = ingest(local_env, args.slide)
        s3_id, results["ingest_s3_s"] = ingest(s3_env, args.slide)

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
        }
        for name, (cmd, env, slide_id) in servers.items():
            port = free_port()
            proc = subprocess.Popen([*cmd, "--port", str(port)], env=env)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for(f"{base}/slides/{slide_id}.dzi", proc)
                runs: dict[str, list[Any]] = {"cold": [], "warm": []}
                for viewers in (int(v) for v in args.viewers.split(",")):
                    # Cold: traces this server has never seen (a seed per viewer count);
                    # warm: the same traces again, straight after.
                    for state in ("cold", "warm"):
                        out = args.out / f"{name}-{viewers}-{state}.json"
                        runs[state].append(
                            load(base, slide_id, viewers, args.tiles // viewers, viewers, out)
                        )
                results[name] = {**runs, "rss_mib": rss_mib(proc.pid)}
                print(f"{name}: done, RSS {results[name]['rss_mib']:.0f} MiB", flush=True)
            finally:
                proc.terminate()
                proc.wait(20)

    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


def _levels(runs: list[Any]) -> dict[int, Any]:
    return {int(r["viewers"]): r for r in runs}


def report(results: dict[str, Any]) -> str:
    lines = [
        "| server | cache | viewers | tiles | tiles/s | × reference | p50 ms | p99 ms | errors "
        "| kB/tile |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = {state: _levels(results["reference"][state]) for state in ("cold", "warm")}
    for name in SERVERS:
        for state in ("cold", "warm"):
            for viewers, r in sorted(_levels(results[name][state]).items()):
                ratio = r["tiles_per_s"] / ref[state][viewers]["tiles_per_s"]
                lines.append(
                    f"| {name} | {state} | {viewers} | {r['tiles']} | {r['tiles_per_s']:.0f} "
                    f"| {ratio:.1f} "
                    f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
                    f"| {r['mean_bytes'] / 1000:.1f} |"
                )
    lines.append("")
    lines.append(
        f"Cold first tile from S3: {results['cold_first_tile_gets']} GETs "
        f"(next tile: {results['next_tile_gets']}). Ingest of the slide: "
        f"{results['ingest_local_s']:.1f} s to local disk, {results['ingest_s3_s']:.1f} s to S3. "
        "Server RSS after the runs: "
        + ", ".join(f"{n} {results[n]['rss_mib']:.0f} MiB" for n in SERVERS)
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
