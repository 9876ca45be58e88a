"""Server memory over a long run: does the hub's RSS level off once its tile cache is full?

One `iain serve` on a real S3 server (SeaweedFS on 127.0.0.1) with the benchmark slide, called
with a pathologist's API token by 8 viewers (bench/tile_load.py) in chunks: fresh traces
(tiles the hub has never served: S3 reads, decodes for the small levels, cache inserts and
evictions) alternating with replays of the previous chunk (cache hits). After each chunk:
the server's RSS (/proc), its CPU time and the tile cache's fill from `GET /api/health`.

The hub's memory has a deliberate part, the tile cache (IAIN_TILE_CACHE_MB), which fills
as tiles are served; what must not happen is growth after it is full. The report gives the
RSS over the requests that follow the moment the cache first reaches 99 % of its size (it
evicts from then on): min, max and the spread (max - min) as ± % around their middle.

    .venv/bin/python bench/rss.py [--requests 300000] [--cache-mb 256] [--chunk 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.compare_tiles import (  # noqa: E402
    PY,
    bench_token,
    cpu_s,
    free_port,
    ingest,
    load,
    rss_mib,
    wait_for,
)
from tests.s3server import SeaweedS3  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "s3") as s3:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "IAIN_HOME": f"{tmp}/home",
            "IAIN_TILE_CACHE_MB": str(args.cache_mb),
            **s3.env("bench"),
        }
        slide_id, _ = ingest(env, args.slide)
        header = f"Authorization: Bearer {bench_token(env['IAIN_HOME'])}"
        auth = {"Authorization": header.partition(": ")[2]}
        port = free_port()
        proc = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/slides/{slide_id}.dzi", proc, headers=auth)

            def sample(done: int) -> None:
                cache = httpx.get(f"{base}/api/health", timeout=10).json()["tile_cache"]
                row = {"requests": done, "rss_mib": round(rss_mib(proc.pid), 1)}
                row |= {"cpu_s": round(cpu_s(proc.pid), 1), "cache_mib": cache["bytes"] / 2**20}
                row |= {"cache_tiles": cache["tiles"], "hits": cache["hits"]}
                samples.append(row)
                print(json.dumps(row), flush=True)

            sample(0)
            done, seed, chunk = 0, 5000, 0
            while done < args.requests:
                # Even chunks: a fresh trace; odd chunks: the same trace again.
                if chunk % 2 == 0:
                    seed += 1
                out = args.out / f"chunk-{chunk}.json"
                r = load(base, slide_id, 8, args.chunk // 8, seed, out, ("--header", header))
                if r["errors"]:
                    raise RuntimeError(f"{r['errors']} errors in chunk {chunk}")
                done += int(r["tiles"])
                chunk += 1
                sample(done)
        finally:
            proc.terminate()
            proc.wait(20)
    full_at = next((s["requests"] for s in samples if s["cache_mib"] >= 0.99 * args.cache_mb), None)
    result: dict[str, Any] = {"slide": str(args.slide), "cache_mb": args.cache_mb}
    result["samples"] = samples
    result["cache_full_at"] = full_at
    if full_at is not None:
        after = [s for s in samples if s["requests"] >= full_at]
        rss = [s["rss_mib"] for s in after]
        middle = (max(rss) + min(rss)) / 2
        result["after_full"] = {
            "requests": after[-1]["requests"] - full_at,
            "rss_min_mib": min(rss),
            "rss_max_mib": max(rss),
            "spread_pct": round(100 * (max(rss) - min(rss)) / 2 / middle, 1),
        }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--slide", type=Path, default=REPO / "bench/out/bench-60000x40000.tiff")
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--chunk", type=int, default=10_000, help="requests between samples")
    ap.add_argument("--cache-mb", type=int, default=256, help="IAIN_TILE_CACHE_MB (the default)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/rss")
    args = ap.parse_args()
    if not args.slide.exists():
        ap.error(f"{args.slide} missing: run bench/make_slide.py first")
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    (args.out / f"rss-{args.cache_mb}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
