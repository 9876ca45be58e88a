"""The ASGI application factory: wires storage, tiles and the exchange hub together."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from exchange.access.callers import CallerMemory
from exchange.access.policy import Policy
from exchange.identity.accounts import Identities, RevocationWatch
from exchange.identity.oidc import OidcClient, OidcConfig
from exchange.identity.sessions import LoginThrottle, Sessions
from exchange.slides.catalogue import Catalogue
from exchange.slides.conversion import ConversionConfig, ConversionWorker
from exchange.slides.uploads import (
    Uploads,
)
from exchange.web import annotations as annotation_routes
from exchange.web import grants as grant_routes
from exchange.web import login as auth_routes
from exchange.web import overlays as overlay_routes
from exchange.web import slides as exchange_routes
from exchange.web import uploads as upload_routes
from exchange.web.audit_hooks import AuditHooks
from exchange.web.auth import current_user
from exchange.web.deps import request_locator
from exchange.web.errors import install_error_handlers
from exchange.web.fastpath import scope_locator
from iain.settings import Settings
from storage import LocalStore, ObjectStore, open_store
from storage.aio import AsyncRangeReader
from storage.s3 import S3Store
from tiles import routes as tile_routes
from tiles.cache import TileCache
from tiles.fastpath import CachedTiles
from tiles.iiif import Limits
from tiles.pool import ReaderPool
from tiles.service import TileService

VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"


def build_store(settings: Settings) -> ObjectStore:
    return open_store(
        settings.storage_url,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
        signing_key=settings.secret_key.get_secret_value().encode(),
    )


def conversion_config(settings: Settings) -> ConversionConfig:
    """What a conversion worker process needs (it opens its own store)."""
    return ConversionConfig(
        store_factory=functools.partial(
            open_store,
            settings.storage_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
            signing_key=settings.secret_key.get_secret_value().encode(),
        ),
        work_dir=(settings.cache_dir / "conversions").resolve(),
        tile_size=settings.tile_size,
        jpeg_quality=settings.jpeg_quality,
        timeout_s=settings.convert_timeout_s,
        memory_bytes=settings.convert_memory_mb * 1024 * 1024,
    )


def oidc_client(settings: Settings) -> OidcClient | None:
    if not settings.oidc_enabled:
        return None
    config = OidcConfig(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value(),
        scopes=settings.oidc_scopes,
        label=settings.oidc_label,
        centre_claim=settings.oidc_centre_claim,
        roles_claim=settings.oidc_roles_claim,
        rpps_claim=settings.oidc_rpps_claim,
        username_claim=settings.oidc_username_claim,
        centre_map=settings.oidc_centre_map,
        role_map=settings.oidc_role_map,
    )
    return OidcClient(config, settings.secret_key.get_secret_value().encode())


def create_app(settings: Settings) -> FastAPI:
    settings.check_production()
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    pool = ReaderPool(
        store,
        settings.cache_dir,
        max_open=settings.max_open_slides,
        local_copy_bytes=settings.local_copy_cache_mb * 1024 * 1024,
    )
    service = TileService(
        pool,
        TileCache(settings.tile_cache_mb * 1024 * 1024),
        tile_size=settings.tile_size,
        jpeg_quality=settings.jpeg_quality,
        zero_transcode=settings.zero_transcode,
        limits=Limits(4096, 4096, 4096 * 4096),
    )

    # Stored tiles from S3 are fetched in the event loop (see tiles/fastpath.py).
    ranges = AsyncRangeReader(store) if isinstance(store, S3Store) else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Conversions run in worker processes supervised by a thread: a crash there never
        # takes the server down; tiles switch to the pyramid when it is ready.
        worker = None
        if settings.convert_worker:
            worker = ConversionWorker(catalogue, conversion_config(settings), pool.evict)
            worker.start()
        app.state.conversion_worker = worker
        yield
        if worker is not None:
            worker.stop()
        pool.close()
        if ranges is not None:
            await ranges.close()

    app = FastAPI(title="IAIN", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.catalogue = catalogue
    # One watch for revocations made by other processes, shared by every credential cache.
    revocations = RevocationWatch(catalogue)
    app.state.identities = Identities(catalogue, revocations)
    # What the tile routes report to the audit trail (views of shared slides, label/macro).
    audit_hooks = AuditHooks(catalogue)
    app.state.on_slide_view = audit_hooks.on_slide_view
    app.state.on_associated_view = audit_hooks.on_associated_view
    app.state.sessions = Sessions(
        catalogue, lifetime=timedelta(hours=settings.session_hours), revocations=revocations
    )
    app.state.login_throttle = LoginThrottle(
        catalogue,
        settings.login_max_failures,
        settings.login_window_s,
        secret=settings.secret_key.get_secret_value().encode(),
    )
    app.state.login_config = auth_routes.LoginConfig(
        always_secure=settings.mode == "production",
        public_url=settings.public_url,
        session_s=int(settings.session_hours * 3600),
        trusted_proxies=tuple(settings.trusted_proxies),
    )
    app.state.oidc = oidc_client(settings)
    app.state.uploads = Uploads(
        store,
        catalogue,
        part_size=settings.upload_part_size,
        max_bytes=settings.upload_max_gb * 1024**3,
        work_dir=settings.cache_dir / "uploads",
    )
    app.state.slide_locator = catalogue
    # Access control (exchange.access.policy): the tile routes and the fast path get a
    # per-caller locator, which hides the slides the caller may not see.
    policy = Policy(catalogue)
    app.state.policy = policy
    app.state.locator_for = request_locator
    # The tile fast path's memory of callers (exchange.access.callers); it leaves a shared
    # slide's first view in a viewing session to the route, which audits it
    # (exchange.web.audit_hooks).
    callers = CallerMemory(policy, revocations, view_seen=audit_hooks.shared_views.seen)
    app.state.callers = callers
    app.state.tile_service = service
    app.state.range_reader = ranges

    install_error_handlers(app)

    app.include_router(auth_routes.router)
    # Every API and tile route needs a caller (401 otherwise); the policy decides the rest.
    logged_in = [Depends(current_user)]
    app.include_router(exchange_routes.router, dependencies=logged_in)
    app.include_router(upload_routes.router, dependencies=logged_in)
    app.include_router(annotation_routes.router, dependencies=logged_in)
    app.include_router(overlay_routes.router, dependencies=logged_in)
    app.include_router(grant_routes.router, dependencies=logged_in)
    app.include_router(tile_routes.router, dependencies=logged_in)

    @app.get("/api/health", tags=["ops"])
    def health() -> dict[str, object]:
        # The tile cache's fill tells an operator (and bench/rss.py) where memory goes.
        cache = service.cache
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

    if isinstance(store, LocalStore):

        @app.get("/api/storage/{key:path}", include_in_schema=False)
        def presigned_object(key: str, expires: int, signature: str) -> Response:
            if not store.verify_presigned(key, expires, signature):
                return JSONResponse({"detail": "invalid or expired signature"}, 403)
            return Response(store.get(key), media_type="application/octet-stream")

    # The browser viewer (`cd viewer && npm ci && npm run build`): a single-page app whose
    # index.html answers "/" and every "/viewer/..." URL; its other files are static. Mounted
    # last, so it never shadows /api, /slides or /iiif. Without a build, the API still serves.
    dist = VIEWER_DIR / "dist"
    if (dist / "index.html").is_file():
        index_html = dist / "index.html"

        def viewer_page() -> Response:
            # Read per request: a rebuild takes effect without a restart. `no-cache` makes
            # browsers revalidate it, so they never keep an index naming deleted assets.
            return Response(
                index_html.read_bytes(),
                media_type="text/html; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )

        app.add_api_route("/", viewer_page, methods=["GET"], include_in_schema=False)
        app.add_api_route(
            "/viewer/{_path:path}", viewer_page, methods=["GET"], include_in_schema=False
        )
        app.add_api_route(  # the compare page (viewer/src/compare.ts)
            "/compare", viewer_page, methods=["GET"], include_in_schema=False
        )
        app.add_api_route(  # the login page (viewer/src/login.ts)
            "/login", viewer_page, methods=["GET"], include_in_schema=False
        )
        app.mount("/", StaticFiles(directory=dist), name="viewer")
    # Cache hits skip the framework; everything else goes through the routes above.
    # In app.state: bench/noauth_app.py swaps it to measure what authorisation costs.
    app.state.scope_locator = functools.partial(scope_locator, callers)
    app.add_middleware(
        CachedTiles,
        parts=lambda: (app.state.tile_service, app.state.scope_locator, ranges),
    )
    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory iain.app:app_from_env`."""
    return create_app(Settings())
