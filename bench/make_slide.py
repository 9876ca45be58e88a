"""Generate a large synthetic H&E-like whole-slide image for benchmarks.

The output is a pyramidal tiled BigTIFF (256x256 JPEG tiles, every 2x level down to one
tile), which OpenSlide opens as 'generic-tiff' and tiffslide reads directly.

Everything is built from lazy libvips noise generators, so the image streams through
`tiffsave` one strip of tiles at a time: memory does not grow with the slide height and is
~250 MB for a 60000 px wide slide.

    python bench/make_slide.py                 # 60000 x 40000 -> bench/out/bench-60000x40000.tiff
    python bench/make_slide.py --small         # 8192 x 6144 for quick tests
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from iain.synthetic import write_synthetic_slide

SMALL = (8192, 6144)


def _printer(started: float) -> Callable[[int], None]:
    """Prints coarse progress of the save (every 10 %)."""
    last = [-1]

    def show(percent: int) -> None:
        if percent // 10 != last[0]:
            last[0] = percent // 10
            print(f"  {percent:3d}%  {time.monotonic() - started:6.1f} s", flush=True)

    return show


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--width", type=int, default=60000)
    ap.add_argument("--height", type=int, default=40000)
    ap.add_argument("--small", action="store_true", help=f"preset {SMALL[0]}x{SMALL[1]}")
    ap.add_argument("--out", type=Path, default=None, help="default bench/out/bench-WxH.tiff")
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)

    width, height = SMALL if args.small else (args.width, args.height)
    if width < 1 or height < 1:
        ap.error("width and height must be positive")
    out: Path = args.out or Path(__file__).parent / "out" / f"bench-{width}x{height}.tiff"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    write_synthetic_slide(
        out,
        width,
        height,
        seed=args.seed,
        quality=args.quality,
        progress=None if args.quiet else _printer(started),
    )
    elapsed = time.monotonic() - started
    size = out.stat().st_size
    print(
        f"wrote {out}  {width}x{height}  {size / 2**20:.1f} MiB  "
        f"in {elapsed:.1f} s  ({width * height / elapsed / 1e6:.1f} Mpx/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
