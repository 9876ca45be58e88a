"""Operations routes: health (with the tile cache's fill, where memory goes) and, on
local-directory storage, the presigned object URLs that S3 would otherwise answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from exchange.web.hub import hub_of
from storage import LocalStore

router = APIRouter(tags=["ops"])


@router.get("/api/health")
def health(request: Request) -> dict[str, object]:
    # The tile cache's fill tells an operator (and bench/rss.py) where memory goes.
    cache = hub_of(request).tiles.cache
    return {
        "status": "ok",
        "tile_cache": {
            "bytes": cache.size_bytes,
            "max_bytes": cache.max_bytes,
            "tiles": len(cache),
            "hits": cache.hits,
            "misses": cache.misses,
        },
    }


def local_storage_router(store: LocalStore) -> APIRouter:
    """GET of a presigned key of a local store (LocalStore.presign_get's URLs)."""
    local = APIRouter(include_in_schema=False)

    @local.get("/api/storage/{key:path}")
    def presigned_object(key: str, expires: int, signature: str) -> Response:
        if not store.verify_presigned(key, expires, signature):
            return JSONResponse({"detail": "invalid or expired signature"}, 403)
        return Response(store.get(key), media_type="application/octet-stream")

    return local
