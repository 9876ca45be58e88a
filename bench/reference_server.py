"""Reference DeepZoom server: the classic Python approach, to compare IAIN against.

One slide opened once with OpenSlide; every tile request decodes the region through
`DeepZoomGenerator.get_tile` and re-encodes it as JPEG with Pillow, in the threadpool.
One uvicorn worker, no tile cache: this is how the usual Python tile servers work.

    python bench/reference_server.py bench/out/bench-60000x40000.tiff --port 8100 --slide-id ref
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import openslide
import uvicorn
from fastapi import FastAPI, HTTPException, Response
from openslide.deepzoom import DeepZoomGenerator

TILE_SIZE = 256
OVERLAP = 0
QUALITY = 80


def create_app(path: Path, slide_id: str) -> FastAPI:
    slide = openslide.OpenSlide(str(path))
    # OpenSlide handles are safe to share between threads; the generator only holds geometry.
    dz = DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)
    dzi = dz.get_dzi("jpeg").encode()
    app = FastAPI(title="reference DeepZoom server")

    def check(slide_name: str) -> None:
        if slide_name != slide_id:
            raise HTTPException(404, "no such slide")

    @app.get("/slides/{slide_name}.dzi")
    def get_dzi(slide_name: str) -> Response:
        check(slide_name)
        return Response(dzi, media_type="application/xml")

    # A plain `def` endpoint: FastAPI runs it in its threadpool, since decoding is blocking.
    @app.get("/slides/{slide_name}_files/{level}/{col}_{row}.jpeg")
    def get_tile(slide_name: str, level: int, col: int, row: int) -> Response:
        check(slide_name)
        try:
            tile = dz.get_tile(level, (col, row))
        except ValueError as exc:  # level or address out of range
            raise HTTPException(404, "no such tile") from exc
        buf = io.BytesIO()
        tile.save(buf, "jpeg", quality=QUALITY)
        return Response(buf.getvalue(), media_type="image/jpeg")

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("slide", type=Path, help="slide file OpenSlide can open")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--slide-id", default="ref", help="id used in the URLs")
    ap.add_argument("--access-log", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    app = create_app(args.slide, args.slide_id)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=args.access_log,
        log_level="info" if args.access_log else "warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
