"""A bare-ASGI fast path for tiles already in the tile cache, or stored as they are.

A cached tile needs no decode, only a lookup; through FastAPI's routing and dependency
machinery that lookup costs several times more CPU than the lookup itself. This layer
answers cache hits and revalidations (304) directly, for DeepZoom tiles and for IIIF
requests that name one exactly (`{x},{y},{w},{h}` or `full`, then `{w},{h}`, `{w},` or
`max`, then `/0/default.jpg`): the same tile, ETag and bytes as the IIIF route gives. With
an asynchronous range reader (S3 storage), it also answers a miss whose tile is served as
stored (zero-transcode) on a slide already open: one ranged GET awaited in the event loop,
no thread, no framework. Every other request goes to the application unchanged, so the
route stays the single place that renders, checks ranges and reports errors: whatever goes
wrong here is simply left to the route.
It sees slides only through the same authorisation as the routes: the composition root
injects `locator_for(scope)`, the caller's SlideLocator (None without a caller: the route
then answers 401); a slide it does not locate goes to the route, which answers 404."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from storage import StorageError
from storage.aio import AsyncRangeReader
from tiles.deid import strip_jpeg_text
from tiles.errors import TilesError
from tiles.location import SlideLocation, SlideLocator
from tiles.readers.tiff import TiffReader
from tiles.routes import PRIVATE_IMMUTABLE
from tiles.service import TileService

_TILE_PATH = re.compile(
    r"/slides/([a-z0-9]{1,64})_files/(\d{1,3})/(\d{1,9})_(\d{1,9})\.(?:jpeg|jpg)"
)
_IIIF_PATH = re.compile(
    r"/iiif/3/([a-z0-9]{1,64})/(full|\d{1,9},\d{1,9},\d{1,9},\d{1,9})"
    r"/(max|\d{1,9},\d{0,9})/0/default\.jpg"
)
_IMMUTABLE = PRIVATE_IMMUTABLE.encode()
# As the IIIF route answers: any viewer on any origin may show the images it may fetch.
_CORS = ((b"access-control-allow-origin", b"*"),)


LocatorFor = Callable[[Scope], SlideLocator | None]
Parts = Callable[[], tuple[TileService, LocatorFor, AsyncRangeReader | None]]


class CachedTiles:
    def __init__(self, app: ASGIApp, parts: Parts) -> None:
        self.app = app
        # Resolved at first use: the composition root sets them after building the stack.
        self._parts = parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        dz_match = _TILE_PATH.fullmatch(path)
        iiif_match = None if dz_match is not None else _IIIF_PATH.fullmatch(path)
        match = dz_match or iiif_match
        if match is None:
            await self.app(scope, receive, send)
            return
        service, locator_for, ranges = self._parts()
        locator = locator_for(scope)
        if locator is None:
            await self.app(scope, receive, send)
            return
        # A de-identified view (an opaque id) locates too: its DeepZoom tiles are the full
        # view's pixels, same ETag and bytes, so nothing here depends on the view (tiles.deid).
        loc = locator.locate(match.group(1))
        if loc is None:
            await self.app(scope, receive, send)
            return
        extra: tuple[tuple[bytes, bytes], ...] = ()
        if dz_match is not None:
            z, col, row = int(match.group(2)), int(match.group(3)), int(match.group(4))
        else:
            # "full" too: viewers ask so for a level of one tile.
            tile = service.iiif_grid_tile(loc, match.group(2), match.group(3))
            if tile is None:
                await self.app(scope, receive, send)
                return
            z, col, row = tile
            extra = _CORS
        etag = service.deepzoom_etag(loc, z, col, row)
        etag_bytes = etag.encode()
        for name, value in scope["headers"]:
            if name == b"if-none-match" and etag_bytes in value:
                await _send(send, 304, etag_bytes, b"", scope, extra=extra)
                return
        data = service.cache.get(etag)
        timing = b"cache"
        if data is None and ranges is not None:
            started = time.perf_counter()
            data = await _stored_tile(service, ranges, loc, z, col, row)
            if data is not None:
                service.cache.put(etag, data)
                timing = b"stored;dur=%.2f" % ((time.perf_counter() - started) * 1000)
        if data is None:
            await self.app(scope, receive, send)
            return
        await _send(send, 200, etag_bytes, data, scope, timing, extra)


async def _stored_tile(
    service: TileService,
    ranges: AsyncRangeReader,
    loc: SlideLocation,
    z: int,
    col: int,
    row: int,
) -> bytes | None:
    """The tile as stored, if the route would serve it so and the slide is open; else None."""
    reader = service.pool.peek(loc)
    if not isinstance(reader, TiffReader):
        return None  # not open yet (opening is blocking I/O: the route does it) or not TIFF
    try:
        dz = service.deepzoom(loc)
        level = service.passthrough_level(loc, dz, z, col, row)
        if level is None:
            return None
        span = reader.stored_jpeg_span(level, col, row, service.tile_size)
        if span is None:
            return None
        data = await ranges.get_range(loc.main_key, span.offset, span.length)
        return strip_jpeg_text(span.jpeg(data))  # as the route serves it (TileService)
    except (TilesError, StorageError):
        return None  # the route tries again and answers with the right error


async def _send(
    send: Send,
    status: int,
    etag: bytes,
    body: bytes,
    scope: Scope,
    timing: bytes = b"cache",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"etag", etag), (b"cache-control", _IMMUTABLE), *extra]
    if status == 200:
        headers += [
            (b"content-type", b"image/jpeg"),
            (b"content-length", b"%d" % len(body)),
            (b"server-timing", timing),
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
