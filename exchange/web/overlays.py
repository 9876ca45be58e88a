"""HTTP routes of overlays: /api/slides/{slide_id}/overlays.

A heatmap is served like a slide, as DeepZoom (`{overlay}.dzi`, `{overlay}_files/z/c_r.png`)
at the slide's level-0 size; a feature set as one GeoJSON FeatureCollection, optionally
cut to a bounding box. Everything served about an overlay is immutable (overlays are never
rewritten, only added and deleted), so it carries a strong ETag and a year of caching."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from exchange.core.models import Overlay
from exchange.overlays import service as svc
from exchange.overlays.detections import MAX_VIEW, PackedSets
from exchange.overlays.service import FeatureSets, InvalidOverlay
from exchange.slides.catalogue import Catalogue
from exchange.web import deps
from exchange.web.deps import CatalogueDep, StoreDep
from exchange.web.hub import hub_of
from tiles.errors import TileNotFound
from tiles.overlay import HeatmapLocation, HeatmapTiles
from tiles.routes import PRIVATE_IMMUTABLE, not_modified
from tiles.service import Rendered

# Overlays belong to the full view of the slide (exchange.access.policy): other callers get 404.
router = APIRouter(
    prefix="/api/slides/{slide_id}/overlays",
    tags=["overlays"],
    dependencies=[Depends(deps.home_slide)],
)
WRITE = [Depends(deps.overlay_writable_slide)]

# A POST body larger than this is refused before parsing (10,000 polygons are ~3 MB).
MAX_BODY = 128 * 1024 * 1024
PACKED_SUFFIX = ".pack"  # a detector's packed set (exchange.overlays.detections)
_TILE_NAME = re.compile(r"(\d{1,9})_(\d{1,9})\.png")


@dataclass
class OverlayParts:
    """What the overlay routes keep between requests, made from the app's tile service."""

    tiles: HeatmapTiles
    features: FeatureSets
    packed: PackedSets
    # (location, slide id) of heatmaps by overlay id: the tile hot path makes no query.
    _locations: dict[str, tuple[HeatmapLocation, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, slide_id: str, overlay_id: str) -> HeatmapLocation | None:
        found = self._locations.get(overlay_id)
        return found[0] if found is not None and found[1] == slide_id else None

    def location(self, catalogue: Catalogue, slide_id: str, overlay_id: str) -> HeatmapLocation:
        loc = self.cached(slide_id, overlay_id)
        if loc is None:
            overlay = svc.get_overlay(catalogue, slide_id, overlay_id)
            loc = svc.heatmap_location(catalogue, overlay)
            with self._lock:
                self._locations[overlay_id] = (loc, slide_id)
        return loc

    def forget(self, overlay_id: str) -> None:
        with self._lock:
            self._locations.pop(overlay_id, None)
        self.features.forget(overlay_id)
        self.tiles.pool.evict(f"overlay-{overlay_id}")


def get_parts(request: Request) -> OverlayParts:
    state = request.app.state
    parts: OverlayParts | None = getattr(state, "overlay_parts", None)
    if parts is None:
        hub = hub_of(request)
        service = hub.tiles
        parts = OverlayParts(
            HeatmapTiles(service.pool, service.cache, service.tile_size),
            FeatureSets(hub.store),
            PackedSets(hub.store),
        )
        state.overlay_parts = parts
    return parts


Parts = Annotated[OverlayParts, Depends(get_parts)]


class OverlayOut(BaseModel):
    id: str
    slide_id: str
    kind: str
    name: str
    legend: dict[str, Any]
    created_at: datetime
    size_bytes: int
    # Heatmap: the resolution it was computed at. Features: how many.
    width: int | None
    height: int | None
    feature_count: int | None
    url: str
    # A DeepZoom descriptor (heatmap), or a GeoJSON FeatureCollection (features).
    dzi_url: str | None
    features_url: str | None
    # A model's result: its job, and where it came from (model, digest, intended use and
    # licence, slide hash, code version, device, durations) with its summary figures.
    job_id: str | None = None
    info: dict[str, Any] | None = None


def _out(overlay: Overlay) -> OverlayOut:
    url = f"/api/slides/{overlay.slide_id}/overlays/{overlay.id}"
    return OverlayOut(
        id=overlay.id,
        slide_id=overlay.slide_id,
        kind=overlay.kind,
        name=overlay.name,
        legend=overlay.legend,
        created_at=overlay.created_at,
        size_bytes=overlay.size_bytes,
        width=overlay.width,
        height=overlay.height,
        feature_count=overlay.feature_count,
        url=url,
        dzi_url=f"{url}.dzi" if overlay.kind == "heatmap" else None,
        features_url=f"{url}/features" if overlay.kind == "features" else None,
        job_id=overlay.job_id,
        info=overlay.info,
    )


# -- heatmaps, like slides (declared before "/{overlay_id}", which would match "x.dzi") -------


@router.get("/{overlay_id}.dzi")
async def heatmap_descriptor(
    slide_id: str, overlay_id: str, catalogue: CatalogueDep, parts: Parts
) -> Response:
    loc = await run_in_threadpool(parts.location, catalogue, slide_id, overlay_id)
    return Response(parts.tiles.dzi(loc), media_type="application/xml")


@router.get("/{overlay_id}_files/{level}/{tile}")
async def heatmap_tile(
    request: Request,
    slide_id: str,
    overlay_id: str,
    level: str,
    tile: str,
    catalogue: CatalogueDep,
    parts: Parts,
    threshold: Annotated[int, Query(ge=0, le=100, description="% of the range: below, clear")] = 0,
) -> Response:
    match = _TILE_NAME.fullmatch(tile)
    if match is None or not level.isdigit() or len(level) > 3:
        raise TileNotFound(f"no tile {level}/{tile}")
    z, col, row = int(level), int(match.group(1)), int(match.group(2))
    loc = parts.cached(slide_id, overlay_id)
    if loc is None:
        loc = await run_in_threadpool(parts.location, catalogue, slide_id, overlay_id)
    parts.tiles.deepzoom(loc).z_tile(z, col, row)  # range check before anything else
    etag = parts.tiles.etag(loc, z, col, row, threshold)
    if not_modified(request, etag):
        headers = {"ETag": etag, "Cache-Control": PRIVATE_IMMUTABLE}
        return Response(status_code=304, headers=headers)
    rendered: Rendered = await run_in_threadpool(parts.tiles.tile, loc, z, col, row, threshold)
    return Response(
        rendered.data,
        media_type=rendered.media_type,
        headers={
            "ETag": rendered.etag,
            "Cache-Control": PRIVATE_IMMUTABLE,
            "Server-Timing": rendered.server_timing,
        },
    )


# -- the collection -------------------------------------------------------------------------


@router.get("")
def list_overlays(slide_id: str, catalogue: CatalogueDep) -> list[OverlayOut]:
    return [_out(o) for o in svc.list_overlays(catalogue, slide_id)]


@router.post("", status_code=201, dependencies=WRITE)
async def create_feature_set(
    request: Request, slide_id: str, catalogue: CatalogueDep, store: StoreDep
) -> OverlayOut:
    """A feature set from `{"name": ..., "features": FeatureCollection | [Feature...],
    "classes": {"class": "#rrggbb"}}`, or a FeatureCollection with a "name" member.
    Heatmaps are added by the inference worker through exchange.overlays.service.add_heatmap."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise InvalidOverlay(f"the body is larger than {MAX_BODY // 1024**2} MiB")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidOverlay(f"the body is larger than {MAX_BODY // 1024**2} MiB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidOverlay(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidOverlay("the body must be a JSON object")
    features = body if body.get("type") == "FeatureCollection" else body.get("features")
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidOverlay("the body needs a string 'name'")
    if features is None:
        raise InvalidOverlay("the body needs 'features' (a FeatureCollection or a list)")
    classes = body.get("classes") or {}
    if not isinstance(classes, dict):
        raise InvalidOverlay("'classes' maps class names to #rrggbb colours")

    def create() -> Overlay:
        return svc.add_features(
            store, catalogue, slide_id, features, name=name, class_colours=classes
        )

    return _out(await run_in_threadpool(create))


@router.get("/{overlay_id}")
def overlay_detail(slide_id: str, overlay_id: str, catalogue: CatalogueDep) -> OverlayOut:
    return _out(svc.get_overlay(catalogue, slide_id, overlay_id))


@router.delete("/{overlay_id}", status_code=204, dependencies=WRITE)
def delete_overlay(
    slide_id: str, overlay_id: str, catalogue: CatalogueDep, store: StoreDep, parts: Parts
) -> Response:
    svc.delete_overlay(store, catalogue, slide_id, overlay_id)
    parts.forget(overlay_id)
    return Response(status_code=204)


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidOverlay("bbox is x0,y0,x1,y1: four numbers, level-0 pixels")
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise InvalidOverlay("bbox is x0,y0,x1,y1 with x0 <= x1 and y0 <= y1")
    return x0, y0, x1, y1


@router.get("/{overlay_id}/features")
async def overlay_features(
    request: Request,
    slide_id: str,
    overlay_id: str,
    catalogue: CatalogueDep,
    parts: Parts,
    bbox: Annotated[str | None, Query(description="x0,y0,x1,y1 in level-0 pixels")] = None,
    max_features: Annotated[int, Query(alias="max", ge=1, le=MAX_VIEW)] = MAX_VIEW,
) -> Response:
    box = _bbox(bbox) if bbox is not None else None
    overlay = await run_in_threadpool(svc.get_overlay, catalogue, slide_id, overlay_id)
    if overlay.kind != "features":
        raise svc.OverlayNotFound(f"overlay {overlay_id!r} is a {overlay.kind}, not features")
    key = f"{overlay.id}|{box}|{max_features}".encode()
    etag = f'"{hashlib.blake2b(key, digest_size=16).hexdigest()}"'
    gz = "gzip" in request.headers.get("accept-encoding", "")
    headers = {"ETag": etag, "Cache-Control": PRIVATE_IMMUTABLE, "Vary": "Accept-Encoding"}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if overlay.storage_key.endswith(PACKED_SUFFIX):
        # A detector's large set: the cells in view, or their density (zoomed out).
        slide = await run_in_threadpool(catalogue.get, slide_id)
        view = box or (
            0.0,
            0.0,
            float(slide.width if slide else 0),
            float(slide.height if slide else 0),
        )
        body = await run_in_threadpool(parts.packed.query, overlay.storage_key, view, max_features)
        if gz:
            body = await run_in_threadpool(_gzip, body)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="application/geo+json", headers=headers)
    features = await run_in_threadpool(parts.features.get, overlay)
    if box is None:
        body = features.body_gzip if gz else features.body
    else:
        body = features.within(*box)
        if gz:
            body = await run_in_threadpool(_gzip, body)
    if gz:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/geo+json", headers=headers)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, 5)
