"""A bare-ASGI fast path for DeepZoom tiles already in the tile cache.

A cached tile needs no decode, only a lookup; through FastAPI's routing and dependency
machinery that lookup costs several times more CPU than the lookup itself. This layer
answers cache hits and revalidations (304) directly and hands every other request, misses
included, to the application unchanged, so the route stays the single place that renders
and checks ranges. It sees slides only through the same SlideLocator as the routes."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from tiles.location import SlideLocator
from tiles.service import IMMUTABLE, TileService

_TILE_PATH = re.compile(
    r"/slides/([a-z0-9]{1,64})_files/(\d{1,3})/(\d{1,9})_(\d{1,9})\.(?:jpeg|jpg)"
)
_IMMUTABLE = IMMUTABLE.encode()


class CachedTiles:
    def __init__(self, app: ASGIApp, parts: Callable[[], tuple[TileService, SlideLocator]]) -> None:
        self.app = app
        # Resolved at first use: the composition root sets them after building the stack.
        self._parts = parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        match = _TILE_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        service, locator = self._parts()
        loc = locator.locate(match.group(1))
        if loc is None:
            await self.app(scope, receive, send)
            return
        z, col, row = int(match.group(2)), int(match.group(3)), int(match.group(4))
        etag = service.deepzoom_etag(loc, z, col, row)
        etag_bytes = etag.encode()
        for name, value in scope["headers"]:
            if name == b"if-none-match" and etag_bytes in value:
                await _send(send, 304, etag_bytes, b"", scope)
                return
        data = service.cache.get(etag)
        if data is None:
            await self.app(scope, receive, send)
            return
        await _send(send, 200, etag_bytes, data, scope)


async def _send(send: Send, status: int, etag: bytes, body: bytes, scope: Scope) -> None:
    headers = [(b"etag", etag), (b"cache-control", _IMMUTABLE)]
    if status == 200:
        headers += [
            (b"content-type", b"image/jpeg"),
            (b"content-length", b"%d" % len(body)),
            (b"server-timing", b"cache"),
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
