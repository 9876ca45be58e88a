"""Tile serving, independent of HTTP: DeepZoom, IIIF, thumbnails and associated images.

Every output is immutable for a given slide content, so each has a strong ETag computed
from the slide's hash and the canonical request, before any pixel is touched: a
revalidation (If-None-Match) and a cache lookup cost no slide access at all."""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from PIL import Image, ImageOps

from tiles.cache import TileCache
from tiles.deid import check_associated, strip_jpeg_text
from tiles.errors import ImageNotFound, InvalidRequest
from tiles.geometry import DeepZoom, Region, Size
from tiles.iiif import (
    FEATURES,
    FORMATS,
    ImageRequest,
    Limits,
    parse_region,
    parse_request,
    parse_size,
)
from tiles.location import SlideLocation
from tiles.pool import ReaderPool
from tiles.readers.base import SlideProperties, SlideReader
from tiles.render import MEDIA_TYPES, encode, render_region


@functools.lru_cache(maxsize=16384)
def _grid_tile(
    width: int, height: int, tile_size: int, limits: Limits, region: str, size: str
) -> tuple[int, int, int] | None:
    """Parsed as the route parses it (tiles.iiif), so both find the same tile; memoised,
    so the parse costs the fast path nothing on the tiles a viewer asks again."""
    image = Size(width, height)
    try:
        l0_region = parse_region(image, region)
        out = parse_size(l0_region, size, limits)
    except InvalidRequest:
        return None  # the route answers it with the error
    return DeepZoom(image, tile_size).tile_of(l0_region, out)


# Bump when rendering changes, so clients and caches drop old tiles.
RENDER_VERSION = "2"  # 2: text segments stripped from stored tiles
MAX_THUMBNAIL = 2048
# Every image output is immutable for a given slide content (see the module docstring).
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    etag: str
    # For the Server-Timing header: how it was produced ("cache", "stored", "transcode").
    source: str = "cache"
    duration_ms: float = 0.0

    @property
    def server_timing(self) -> str:
        return f"{self.source};dur={self.duration_ms:.2f}"


class TileService:
    def __init__(
        self,
        pool: ReaderPool,
        cache: TileCache,
        *,
        tile_size: int = 256,
        jpeg_quality: int = 80,
        limits: Limits = Limits(4096, 4096, 4096 * 4096),
        zero_transcode: bool = True,
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.tile_size = tile_size
        self.jpeg_quality = jpeg_quality
        self.limits = limits
        # Serve stored JPEG tiles as they are when they match the requested tile exactly.
        self.zero_transcode = zero_transcode
        self._version = f"{RENDER_VERSION}/{tile_size}/{jpeg_quality}/{int(zero_transcode)}"

    # -- ETags and the cache ------------------------------------------------------------

    def etag(self, loc: SlideLocation, request: str) -> str:
        digest = hashlib.blake2b(
            f"{loc.content_hash}|{self._version}|{request}".encode(), digest_size=16
        ).hexdigest()
        return f'"{digest}"'

    def cached(self, etag: str, media_type: str) -> Rendered | None:
        data = self.cache.get(etag)
        return None if data is None else Rendered(data, media_type, etag)

    def _store(
        self, etag: str, data: bytes, media_type: str, source: str, started: float
    ) -> Rendered:
        self.cache.put(etag, data)
        return Rendered(data, media_type, etag, source, (time.perf_counter() - started) * 1000)

    # -- metadata -----------------------------------------------------------------------

    def properties(self, loc: SlideLocation) -> SlideProperties:
        return self.pool.get(loc.source).properties

    def deepzoom(self, loc: SlideLocation) -> DeepZoom:
        return DeepZoom(loc.l0_size, self.tile_size, 0)

    def dzi(self, loc: SlideLocation) -> str:
        size = loc.l0_size
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="jpeg" Overlap="0" TileSize={quoteattr(str(self.tile_size))}>'
            f'<Size Width="{size.width}" Height="{size.height}"/></Image>'
        )

    # -- DeepZoom -------------------------------------------------------------------------

    def deepzoom_etag(self, loc: SlideLocation, z: int, col: int, row: int) -> str:
        return self.etag(loc, f"dz/{z}/{col}/{row}")

    def deepzoom_tile(self, loc: SlideLocation, z: int, col: int, row: int) -> Rendered:
        dz = self.deepzoom(loc)
        l0_region = dz.l0_tile(z, col, row)  # raises TileNotFound first: no slide access
        z_tile = dz.z_tile(z, col, row)
        etag = self.deepzoom_etag(loc, z, col, row)
        hit = self.cached(etag, "image/jpeg")
        if hit is not None:
            return hit
        started = time.perf_counter()
        level = self.passthrough_level(loc, dz, z, col, row)
        if level is not None:
            stored = self.pool.run(loc, lambda r: r.stored_jpeg(level, col, row, self.tile_size))
            if stored is not None:
                # Comments and EXIF/XMP segments of a stored tile may hold text (tiles.deid).
                data = strip_jpeg_text(stored)
                return self._store(etag, data, "image/jpeg", "stored", started)
        image = self.pool.run(
            loc, lambda r: render_region(r, l0_region, Size(z_tile.width, z_tile.height))
        )
        data = encode(image, "jpeg", self.jpeg_quality)
        return self._store(etag, data, "image/jpeg", "transcode", started)

    def passthrough_level(
        self, loc: SlideLocation, dz: DeepZoom, z: int, col: int, row: int
    ) -> int | None:
        """The stored level whose tile (col, row) may be DeepZoom tile (z, col, row) as it
        is stored, if the grids match there; None means the tile must be rendered."""
        level = self._stored_level(loc, dz, z)
        if level is None:
            return None
        z_tile = dz.z_tile(z, col, row)
        l_size = loc.l_sizes[level]
        if (
            z_tile.width == z_tile.height == self.tile_size
            # A level rounded down may lack the last pixel of a DeepZoom edge tile.
            and (col + 1) * self.tile_size <= l_size.width
            and (row + 1) * self.tile_size <= l_size.height
        ):
            return level
        return None

    def _stored_level(self, loc: SlideLocation, dz: DeepZoom, z: int) -> int | None:
        """The slide level whose pixel grid is exactly DeepZoom level z, if any: its size is
        level 0's halved z_max - z times, rounded up (DeepZoom) or down (libvips pyramids,
        most scanners); either way each pixel covers the same level-0 square."""
        if not self.zero_transcode:
            return None
        size = dz.z_size(z)
        k = dz.z_max - z
        floor = Size(loc.l0_size.width >> k, loc.l0_size.height >> k)
        for level, l_size in enumerate(loc.l_sizes):
            if l_size in (size, floor):
                return level
        return None

    # -- IIIF -----------------------------------------------------------------------------

    def iiif_info(self, loc: SlideLocation, service_id: str) -> dict[str, Any]:
        dz = self.deepzoom(loc)
        size = loc.l0_size
        sizes = []
        for z in range(dz.level_count):
            s = dz.z_size(z)
            if max(s.width, s.height) <= MAX_THUMBNAIL:
                sizes.append({"width": s.width, "height": s.height})
        return {
            "@context": "http://iiif.io/api/image/3/context.json",
            "id": service_id,
            "type": "ImageService3",
            "protocol": "http://iiif.io/api/image",
            "profile": "level2",
            "width": size.width,
            "height": size.height,
            "maxWidth": self.limits.max_width,
            "maxHeight": self.limits.max_height,
            "maxArea": self.limits.max_area,
            "tiles": [
                {
                    "width": self.tile_size,
                    "height": self.tile_size,
                    "scaleFactors": [2**k for k in range(dz.level_count)],
                }
            ],
            "sizes": sizes,
            "extraFormats": ["png", "webp"],
            "extraQualities": ["color", "gray", "bitonal"],
            "extraFeatures": list(FEATURES),
        }

    def iiif_parse(
        self, loc: SlideLocation, region: str, size: str, rotation: str, quality_format: str
    ) -> tuple[ImageRequest, str]:
        """The parsed request and its ETag (a tile-aligned request shares the DeepZoom tile's)."""
        req = parse_request(loc.l0_size, region, size, rotation, quality_format, self.limits)
        tile = self._as_deepzoom_tile(loc, req)
        if tile is not None:
            return req, self.deepzoom_etag(loc, *tile)
        r = req.l0_region
        canonical = (
            f"iiif/{r.x},{r.y},{r.width},{r.height}/{req.size.width},{req.size.height}/"
            f"{'!' if req.mirror else ''}{req.rotation}/{req.quality}.{req.format}"
        )
        return req, self.etag(loc, canonical)

    def iiif_image(self, loc: SlideLocation, req: ImageRequest, etag: str) -> Rendered:
        tile = self._as_deepzoom_tile(loc, req)
        if tile is not None:
            return self.deepzoom_tile(loc, *tile)
        media_type = FORMATS[req.format]
        hit = self.cached(etag, media_type)
        if hit is not None:
            return hit
        started = time.perf_counter()
        image = self.pool.run(loc, lambda r: render_region(r, req.l0_region, req.size))
        if req.mirror:
            image = ImageOps.mirror(image)
        if req.rotation:
            # PIL rotates counter-clockwise; IIIF rotation is clockwise.
            image = image.rotate(-req.rotation, expand=True)
        if req.quality == "gray":
            image = image.convert("L")
        elif req.quality == "bitonal":
            image = image.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
        data = encode(image, req.format, self.jpeg_quality)
        return self._store(etag, data, media_type, "transcode", started)

    def _as_deepzoom_tile(
        self, loc: SlideLocation, req: ImageRequest
    ) -> tuple[int, int, int] | None:
        if req.mirror or req.rotation or req.quality not in ("default", "color"):
            return None
        if req.format != "jpg":
            return None
        return self.deepzoom(loc).tile_of(req.l0_region, req.size)

    def iiif_grid_tile(
        self, loc: SlideLocation, region: str, size: str
    ) -> tuple[int, int, int] | None:
        """The DeepZoom tile that IIIF `region` ("x,y,w,h" or "full") at `size` ("w,h",
        "w," or "max"), rotation 0, default.jpg shows, if it is one: what iiif_parse would
        find, without parsing (the fast path's question). None for anything else: the route
        decides. Remembered per slide geometry: a viewer asks the same tiles again."""
        image = loc.l0_size
        return _grid_tile(image.width, image.height, self.tile_size, self.limits, region, size)

    # -- thumbnails and associated images ---------------------------------------------------

    def thumbnail_etag(self, loc: SlideLocation, max_size: int) -> str:
        return self.etag(loc, f"thumbnail/{max_size}")

    def thumbnail(self, loc: SlideLocation, max_size: int) -> Rendered:
        if not 1 <= max_size <= MAX_THUMBNAIL:
            raise InvalidRequest(f"thumbnail size must be within 1..{MAX_THUMBNAIL}")
        etag = self.thumbnail_etag(loc, max_size)
        hit = self.cached(etag, "image/jpeg")
        if hit is not None:
            return hit
        size = loc.l0_size
        scale = min(max_size / size.width, max_size / size.height, 1.0)
        out = Size(max(1, math.floor(size.width * scale)), max(1, math.floor(size.height * scale)))
        whole = Region(0, 0, size.width, size.height)
        started = time.perf_counter()
        image = self.pool.run(loc, lambda r: render_region(r, whole, out))
        return self._store(etag, encode(image, "jpeg", 90), "image/jpeg", "transcode", started)

    def associated_etag(self, loc: SlideLocation, name: str) -> str:
        # Checked before any ETag: a revalidation must not reveal a hidden image either.
        check_associated(loc.view, name)
        return self.etag(loc, f"associated/{loc.view.value}/{name}")

    def associated(self, loc: SlideLocation, name: str) -> Rendered:
        etag = self.associated_etag(loc, name)
        hit = self.cached(etag, "image/jpeg")
        if hit is not None:
            return hit

        def read(reader: SlideReader) -> Image.Image:
            if name not in reader.properties.associated:
                raise ImageNotFound(f"this slide has no {name!r} image")
            return reader.associated_image(name)

        started = time.perf_counter()
        image = self.pool.run(loc.source, read)
        data = encode(image, "jpeg", 90)
        return self._store(etag, data, MEDIA_TYPES["jpeg"], "transcode", started)
