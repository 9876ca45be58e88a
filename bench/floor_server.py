"""The constant-tile floor: the hub's web stack answering every tile with one in-memory tile.

Same server (uvicorn, same options as `iain serve`), same URLs (.dzi + DeepZoom tiles),
same headers as a cached IAIN tile, but no lookup at all: what the framework alone costs.
Two flavours, because the hub answers cache hits below FastAPI (tiles/fastpath.py):
  asgi     a bare ASGI callable, as the hub's fast path is
  fastapi  a plain FastAPI route, as the hub's tile route is

    python bench/floor_server.py --mode asgi --width 60000 --height 40000 --tile-bytes 14000
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

TILE_PATH = re.compile(r"/slides/([a-z0-9]{1,64})_files/(\d{1,3})/(\d{1,9})_(\d{1,9})\.jpeg")
HEADERS = {
    "etag": '"0123456789abcdef0123456789abcdef"',
    "cache-control": "public, max-age=31536000, immutable",
    "content-type": "image/jpeg",
    "server-timing": "cache",
}


def dzi(width: int, height: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" Overlap="0" '
        f'TileSize="256"><Size Width="{width}" Height="{height}"/></Image>'
    ).encode()


def asgi_app(tile: bytes, descriptor: bytes):  # type: ignore[no-untyped-def]
    tile_headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    tile_headers.append((b"content-length", str(len(tile)).encode()))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if TILE_PATH.fullmatch(path):
            headers, body = tile_headers, tile
        elif path.endswith(".dzi"):
            headers, body = [(b"content-type", b"application/xml")], descriptor
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def fastapi_app(tile: bytes, descriptor: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/slides/{slide_id}.dzi")
    def get_dzi(slide_id: str) -> Response:
        return Response(descriptor, media_type="application/xml")

    @app.get("/slides/{slide_id}_files/{z}/{tile_name}")
    def get_tile(slide_id: str, z: int, tile_name: str) -> Response:
        return Response(tile, headers=HEADERS)

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mode", choices=("asgi", "fastapi"), default="asgi")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--tile-bytes", type=int, required=True, help="size of the constant tile")
    ap.add_argument("--port", type=int, default=8200)
    args = ap.parse_args()
    # Incompressible bytes of the size of a real tile: what the server sends is what counts.
    tile = os.urandom(args.tile_bytes)
    descriptor = dzi(args.width, args.height)
    app = asgi_app(tile, descriptor) if args.mode == "asgi" else fastapi_app(tile, descriptor)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
