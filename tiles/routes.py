"""HTTP routes of the tile layer: DeepZoom and IIIF Image API 3.0.

Which slides a caller may see is not decided here: the composition root injects a
per-request SlideLocator (`app.state.locator_for(request)`, the hub's access policy), which
answers None for a slide the caller may not see, like an unknown one. Without it (tools,
tests of the tile layer alone) `app.state.slide_locator` serves every slide.

Tile responses are `private`: each caller gets them through their own authorisation, so no
shared cache may keep one for others."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from tiles.deid import View
from tiles.errors import SlideNotFound, TileNotFound
from tiles.location import SlideLocation, SlideLocator
from tiles.service import IMMUTABLE, Rendered, TileService

# Immutable, but for the caller's own cache only (a shared cache would skip authorisation).
PRIVATE_IMMUTABLE = IMMUTABLE.replace("public", "private")

_TILE_NAME = re.compile(r"(\d{1,9})_(\d{1,9})\.(?:jpeg|jpg)")
_SLIDE_ID = re.compile(r"[a-z0-9]{1,64}")


def get_service(request: Request) -> TileService:
    service: TileService = request.app.state.tile_service
    return service


def get_locator(request: Request) -> SlideLocator:
    """The slides this request may see (raises the app's 401 error without a caller)."""
    locator_for: Callable[[Request], SlideLocator] | None = getattr(
        request.app.state, "locator_for", None
    )
    if locator_for is not None:
        return locator_for(request)
    locator: SlideLocator = request.app.state.slide_locator
    return locator


async def get_location(
    request: Request, slide_id: str, locator: Annotated[SlideLocator, Depends(get_locator)]
) -> SlideLocation:
    loc = locator.locate(slide_id) if _SLIDE_ID.fullmatch(slide_id) else None
    if loc is None:
        raise SlideNotFound(f"no slide {slide_id!r}")
    # The error handler reads it: errors on a de-identified view get generic messages.
    request.state.slide_view = loc.view
    # The hub's audit of views of shared slides (exchange.audit.chain.SharedViews), injected by
    # the composition root: cheap when the viewing session was already recorded.
    on_view: Callable[[Request, SlideLocation], Awaitable[None]] | None = getattr(
        request.app.state, "on_slide_view", None
    )
    if on_view is not None and loc.view is not View.FULL:
        await on_view(request, loc)
    return loc


Service = Annotated[TileService, Depends(get_service)]
Location = Annotated[SlideLocation, Depends(get_location)]

router = APIRouter()


def not_modified(request: Request, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (or "*"): the answer is then 304."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags


def _image(rendered: Rendered) -> Response:
    return Response(
        rendered.data,
        media_type=rendered.media_type,
        headers={
            "ETag": rendered.etag,
            "Cache-Control": PRIVATE_IMMUTABLE,
            "Server-Timing": rendered.server_timing,
        },
    )


def _unchanged(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": PRIVATE_IMMUTABLE})


@router.api_route("/slides/{slide_id}.dzi", methods=["GET", "HEAD"], tags=["deepzoom"])
async def deepzoom_descriptor(service: Service, loc: Location) -> Response:
    return Response(service.dzi(loc), media_type="application/xml")


@router.api_route(
    "/slides/{slide_id}_files/{level}/{tile}", methods=["GET", "HEAD"], tags=["deepzoom"]
)
async def deepzoom_tile(
    request: Request, service: Service, loc: Location, level: str, tile: str
) -> Response:
    match = _TILE_NAME.fullmatch(tile)
    if match is None or not level.isdigit() or len(level) > 3:
        raise TileNotFound(f"no tile {level}/{tile}")
    z, col, row = int(level), int(match.group(1)), int(match.group(2))
    service.deepzoom(loc).z_tile(z, col, row)  # range check before anything else
    etag = service.deepzoom_etag(loc, z, col, row)
    if not_modified(request, etag):
        return _unchanged(etag)
    # Cache hits were answered by tiles.fastpath; deepzoom_tile checks the cache once more.
    return _image(await run_in_threadpool(service.deepzoom_tile, loc, z, col, row))


@router.get("/iiif/3/{slide_id}", include_in_schema=False)
async def iiif_base(request: Request, slide_id: str, loc: Location) -> Response:
    # The spec asks a bare service URI to redirect to its info.json.
    return Response(status_code=303, headers={"Location": f"{request.url.path}/info.json"})


@router.get("/iiif/3/{slide_id}/info.json", tags=["iiif"])
async def iiif_info(request: Request, service: Service, loc: Location) -> Response:
    service_id = str(request.url).removesuffix("/info.json").split("?")[0]
    body: dict[str, Any] = service.iiif_info(loc, service_id)
    return Response(
        json.dumps(body),
        media_type='application/ld+json;profile="http://iiif.io/api/image/3/context.json"',
        headers={"Access-Control-Allow-Origin": "*"},
    )


@router.get("/iiif/3/{slide_id}/{region}/{size}/{rotation}/{quality_format}", tags=["iiif"])
async def iiif_image(
    request: Request,
    service: Service,
    loc: Location,
    region: str,
    size: str,
    rotation: str,
    quality_format: str,
) -> Response:
    req, etag = service.iiif_parse(loc, region, size, rotation, quality_format)
    if not_modified(request, etag):
        return _unchanged(etag)
    rendered = await run_in_threadpool(service.iiif_image, loc, req, etag)
    response = _image(rendered)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@router.get("/api/slides/{slide_id}/thumbnail", tags=["slides"])
async def thumbnail(
    request: Request,
    service: Service,
    loc: Location,
    max_size: Annotated[int, Query(alias="size", ge=1, le=2048)] = 512,
) -> Response:
    etag = service.thumbnail_etag(loc, max_size)
    if not_modified(request, etag):
        return _unchanged(etag)
    return _image(await run_in_threadpool(service.thumbnail, loc, max_size))


@router.get("/api/slides/{slide_id}/associated/{name}", tags=["slides"])
async def associated_image(
    request: Request, service: Service, loc: Location, name: str
) -> Response:
    etag = service.associated_etag(loc, name)
    # Label and macro may show the patient: the hub audits each view (injected hook).
    on_associated: Callable[[Request, SlideLocation, str], Awaitable[None]] | None = getattr(
        request.app.state, "on_associated_view", None
    )
    if not_modified(request, etag):
        if on_associated is not None:
            await on_associated(request, loc, name)
        return _unchanged(etag)
    rendered = await run_in_threadpool(service.associated, loc, name)
    if on_associated is not None:
        await on_associated(request, loc, name)
    return _image(rendered)
