"""Conversion throughput: our normalised pyramid (tiles.convert) against libvips' own
`tiffsave --tile --pyramid --compression jpeg` on the same input, with peak memory.

Each run is a fresh process (so its peak RSS is its own). The `vips` command line is used
as the reference when installed; otherwise pyvips' tiffsave with the same options, which
is the same libvips code.

    .venv/bin/python bench/convert.py [SLIDE]     # default bench/out/bench-60000x40000.tiff
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "bench" / "out" / "bench-60000x40000.tiff"

OURS = """
import sys, time
from pathlib import Path
from tiles.convert import convert_file
started = time.perf_counter()
how = convert_file(Path(sys.argv[1]), Path(sys.argv[2]), quality=80, tile_size=256,
                   libvips_first=sys.argv[3] == "ours")
print(time.perf_counter() - started, how)
"""

REFERENCE = """
import sys, time
import pyvips
pyvips.cache_set_max(0)
started = time.perf_counter()
image = pyvips.Image.new_from_file(sys.argv[1], access="sequential")
image.tiffsave(sys.argv[2], tile=True, tile_width=256, tile_height=256, pyramid=True,
               compression="jpeg", Q=80, bigtiff=True)
print(time.perf_counter() - started, "pyvips")
"""


def _run(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the child, and what it printed."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    # This measuring process waits for this one child only: the peak is that run's.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak / 1024, done.stdout.strip()


def measure(slide: Path, which: str) -> dict[str, object]:
    scratch = ROOT / "bench" / "out"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iain-bench-convert-", dir=scratch) as tmp:
        out = Path(tmp) / "out.tiff"
        if which in ("ours", "ours-reader"):
            argv = [sys.executable, "-c", OURS, str(slide), str(out), which]
        elif shutil.which("vips"):
            argv = ["vips", "tiffsave", str(slide), str(out), "--tile", "--pyramid",
                    "--compression", "jpeg", "--Q", "80", "--tile-width", "256",
                    "--tile-height", "256", "--bigtiff"]  # fmt: skip
        else:
            argv = [sys.executable, "-c", REFERENCE, str(slide), str(out)]
        wall, peak_mib, printed = _run(argv)
        size = out.stat().st_size
    return {"which": which, "wall_s": round(wall, 2), "peak_rss_mib": round(peak_mib),
            "output_mib": round(size / 2**20, 1), "printed": printed}  # fmt: skip


def main() -> None:
    slide = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    import pyvips

    image = pyvips.Image.new_from_file(str(slide))
    megapixels = image.width * image.height / 1e6
    rounds = int(os.environ.get("ROUNDS", "3"))
    runs: dict[str, list[dict[str, Any]]] = {}
    # Rounds alternate the paths, so a neighbour's load hits them all alike; each run is a
    # separate measuring process, so each peak RSS is that run's alone.
    for _ in range(rounds):
        for which in ("reference", "ours", "ours-reader"):
            line = subprocess.run(
                [sys.executable, __file__, "--one", which, str(slide)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            runs.setdefault(which, []).append(json.loads(line))
    summary: dict[str, dict[str, Any]] = {}
    for which, measured in runs.items():
        walls = sorted(float(r["wall_s"]) for r in measured)
        median = walls[len(walls) // 2]
        summary[which] = {
            "wall_s_median": median,
            "wall_s_all": walls,
            "mpx_per_s": round(megapixels / median, 1),
            "peak_rss_mib_max": max(int(r["peak_rss_mib"]) for r in measured),
            "output_mib": measured[0]["output_mib"],
        }
    reference = summary["reference"]["wall_s_median"]
    ratios = {w: round(r["wall_s_median"] / reference, 2) for w, r in summary.items()}
    print(json.dumps({"slide": slide.name, "size": [image.width, image.height],
                      "megapixels": round(megapixels), "rounds": rounds, "runs": summary,
                      "time_vs_reference": ratios}, indent=2))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(Path(sys.argv[3]), sys.argv[2])))
    else:
        main()
