"""The ASGI application factory: wires storage, tiles and the exchange hub together."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI

from exchange.access.callers import CallerMemory
from exchange.access.policy import Policy
from exchange.identity.accounts import Identities, RevocationWatch
from exchange.identity.login import Logins
from exchange.identity.oidc import OidcClient, OidcConfig
from exchange.identity.sessions import LoginThrottle, Sessions
from exchange.jobs.capability import Capabilities
from exchange.jobs.queue import Jobs
from exchange.jobs.registry import Registry
from exchange.live.mail import MailConfig, Mailer
from exchange.live.notifications import Feed, Outbox, Scheduler
from exchange.sharing.consultations import ConsultationConfig, Consultations
from exchange.slides.catalogue import Catalogue
from exchange.slides.conversion import ConversionConfig, ConversionWorker
from exchange.slides.listing import Cursors
from exchange.slides.uploads import (
    Uploads,
)
from exchange.web import annotations as annotation_routes
from exchange.web import cases as case_routes
from exchange.web import consultations as consultation_routes
from exchange.web import grants as grant_routes
from exchange.web import jobs as job_routes
from exchange.web import login as auth_routes
from exchange.web import notifications as notification_routes
from exchange.web import ops as ops_routes
from exchange.web import overlays as overlay_routes
from exchange.web import slides as exchange_routes
from exchange.web import uploads as upload_routes
from exchange.web.audit_hooks import AuditHooks
from exchange.web.auth import current_user, tile_caller
from exchange.web.deps import request_locator
from exchange.web.errors import install_error_handlers
from exchange.web.fastpath import scope_locator
from exchange.web.hub import Hub, LoginConfig
from exchange.web.pages import mount_viewer
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


def build_tiles(settings: Settings, store: ObjectStore) -> TileService:
    pool = ReaderPool(
        store,
        settings.cache_dir,
        max_open=settings.max_open_slides,
        local_copy_bytes=settings.local_copy_cache_mb * 1024 * 1024,
    )
    return TileService(
        pool,
        TileCache(settings.tile_cache_mb * 1024 * 1024),
        tile_size=settings.tile_size,
        jpeg_quality=settings.jpeg_quality,
        zero_transcode=settings.zero_transcode,
        limits=Limits(4096, 4096, 4096 * 4096),
    )


def build_hub(settings: Settings, store: ObjectStore, tiles: TileService) -> tuple[Hub, AuditHooks]:
    """The hub's services over one database, and the audit hooks of the tile routes."""
    catalogue = Catalogue.open(settings.database_url)
    db = catalogue.db
    # One watch for revocations made by other processes, shared by every credential cache.
    revocations = RevocationWatch(db)
    identities = Identities(db, revocations)
    sessions = Sessions(
        db, lifetime=timedelta(hours=settings.session_hours), revocations=revocations
    )
    throttle = LoginThrottle(
        db,
        settings.login_max_failures,
        settings.login_window_s,
        secret=settings.secret_key.get_secret_value().encode(),
    )
    # What the tile routes report to the audit trail (views of shared slides, label/macro).
    audit_hooks = AuditHooks(catalogue)
    # Access control (exchange.access.policy): the tile routes and the fast path get a
    # per-caller locator, which hides the slides the caller may not see.
    policy = Policy(catalogue)
    models = Registry(db, store, settings.cache_dir / "models")
    secret = settings.secret_key.get_secret_value().encode()
    hub = Hub(
        store=store,
        catalogue=catalogue,
        identities=identities,
        sessions=sessions,
        login_throttle=throttle,
        logins=Logins(db, identities, sessions, throttle),
        login_config=LoginConfig(
            always_secure=settings.mode == "production",
            public_url=settings.public_url,
            session_s=int(settings.session_hours * 3600),
            trusted_proxies=tuple(settings.trusted_proxies),
        ),
        oidc=oidc_client(settings),
        uploads=Uploads(
            store,
            catalogue,
            part_size=settings.upload_part_size,
            max_bytes=settings.upload_max_gb * 1024**3,
            work_dir=settings.cache_dir / "uploads",
        ),
        policy=policy,
        # The tile fast path's memory of callers (exchange.access.callers); it leaves a
        # shared slide's first view in a viewing session to the route, which audits it.
        callers=CallerMemory(policy, revocations, view_seen=audit_hooks.shared_views.seen),
        tiles=tiles,
        cursors=Cursors(settings.secret_key.get_secret_value()),
        models=models,
        jobs=Jobs(
            db,
            store,
            models,
            policy,
            lease_s=settings.job_lease_s,
            max_lost_leases=settings.job_max_lost_leases,
        ),
        capabilities=Capabilities(secret),
        consultations=Consultations(
            db,
            ConsultationConfig(
                routine_days=settings.consultation_routine_days,
                urgent_days=settings.consultation_urgent_days,
                grant_margin_days=settings.consultation_grant_margin_days,
                public_url=settings.public_url,
            ),
        ),
        feed=Feed(db, poll_s=settings.notify_poll_s),
    )
    return hub, audit_hooks


def mail_config(settings: Settings) -> MailConfig:
    return MailConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        starttls=settings.smtp_starttls,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        ca_file=settings.smtp_ca_file,
        client_cert=settings.smtp_client_cert,
        client_key=settings.smtp_client_key,
    )


def scheduler(settings: Settings, hub: Hub) -> Scheduler:
    """The hub's periodic work: due-date reminders, and e-mails when SMTP is set."""
    tasks: list[tuple[float, Callable[[], object]]] = [
        (settings.reminders_every_s, hub.consultations.remind)
    ]
    config = mail_config(settings)
    if config.enabled:
        outbox = Outbox(hub.db, Mailer(config), settings.public_url)
        tasks.append((1.0, outbox.send_pending))
    return Scheduler(tasks)


def create_app(settings: Settings) -> FastAPI:
    settings.check_production()
    store = build_store(settings)
    tiles = build_tiles(settings, store)
    hub, audit_hooks = build_hub(settings, store, tiles)
    # Stored tiles from S3 are fetched in the event loop (see tiles/fastpath.py).
    ranges = AsyncRangeReader(store) if isinstance(store, S3Store) else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Conversions run in worker processes supervised by a thread: a crash there never
        # takes the server down; tiles switch to the pyramid when it is ready.
        worker = None
        if settings.convert_worker:
            worker = ConversionWorker(hub.catalogue, conversion_config(settings), tiles.pool.evict)
            worker.start()
        app.state.conversion_worker = worker
        periodic = scheduler(settings, hub)
        periodic.start()
        # What start-up made lives as long as the process: out of the collector's sight,
        # so that its full collections (every few thousand requests) do not walk it.
        # Garbage is collected first, never frozen (it may hold database connections).
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()  # collectable again at exit (native extensions check their objects)
        gc.collect()
        if worker is not None:
            worker.stop()
        periodic.stop()
        hub.feed.stop()
        tiles.pool.close()
        if ranges is not None:
            await ranges.close()

    app = FastAPI(title="IAIN", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.hub = hub
    # What the tile layer reads (tiles.routes, tiles.fastpath): it cannot import the hub.
    app.state.tile_service = tiles
    app.state.slide_locator = hub.catalogue
    app.state.locator_for = request_locator
    app.state.on_slide_view = audit_hooks.on_slide_view
    app.state.on_associated_view = audit_hooks.on_associated_view
    app.state.range_reader = ranges
    install_error_handlers(app)

    app.include_router(auth_routes.router)
    # Every API and tile route needs a caller (401 otherwise); the policy decides the rest.
    logged_in = [Depends(current_user)]
    for router in (
        exchange_routes.router,
        upload_routes.router,
        annotation_routes.router,
        overlay_routes.router,
        grant_routes.router,
        case_routes.router,
        job_routes.router,
        consultation_routes.router,
        notification_routes.router,
    ):
        app.include_router(router, dependencies=logged_in)
    # Tiles are also read by workers, with their job's capability (exchange.jobs.capability).
    app.include_router(tile_routes.router, dependencies=[Depends(tile_caller)])
    # The worker protocol: a worker-scoped token on every route (exchange.web.jobs).
    app.include_router(job_routes.worker_router)
    app.include_router(ops_routes.router)
    if isinstance(store, LocalStore):
        app.include_router(ops_routes.local_storage_router(store))
    mount_viewer(app, VIEWER_DIR / "dist")
    # Cache hits skip the framework; everything else goes through the routes above.
    # In app.state: bench/noauth_app.py swaps it to measure what authorisation costs.
    app.state.scope_locator = functools.partial(scope_locator, hub.callers)
    app.add_middleware(
        CachedTiles,
        parts=lambda: (app.state.tile_service, app.state.scope_locator, ranges),
    )
    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory iain.app:app_from_env`."""
    return create_app(Settings())
