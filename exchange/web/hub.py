"""The hub's services, as the routes reach them: one typed `Hub`, made once by the
composition root (iain.app) and read with `hub_of(request)` or the `HubDep` dependency.

The tile layer cannot import the hub: what it needs (its TileService, the per-request
locator, the audit hooks) is still injected as the attributes tiles.routes documents."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from exchange.access.callers import CallerMemory
from exchange.access.policy import Policy
from exchange.core.db import Database
from exchange.identity.accounts import Identities
from exchange.identity.login import Logins
from exchange.identity.oidc import OidcClient
from exchange.identity.sessions import LoginThrottle, Sessions
from exchange.jobs.capability import Capabilities
from exchange.jobs.queue import Jobs
from exchange.jobs.registry import Registry
from exchange.live.notifications import Feed
from exchange.sharing.consultations import Consultations
from exchange.slides.catalogue import Catalogue
from exchange.slides.listing import Cursors
from exchange.slides.uploads import Uploads
from storage import ObjectStore
from tiles.service import TileService

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LoginConfig:
    always_secure: bool  # production: Secure cookies even if the hub sees plain HTTP
    public_url: str  # the hub's public base URL ("" = the URL the request came to)
    session_s: int
    # Reverse proxies whose X-Forwarded-For is believed (IAIN_TRUSTED_PROXIES).
    trusted_proxies: Sequence[Network] = ()


@dataclass(frozen=True)
class Hub:
    store: ObjectStore
    catalogue: Catalogue
    identities: Identities
    sessions: Sessions
    login_throttle: LoginThrottle
    logins: Logins
    login_config: LoginConfig
    oidc: OidcClient | None
    uploads: Uploads
    policy: Policy
    callers: CallerMemory
    tiles: TileService
    # Seals the worklist's page cursors (exchange.slides.listing).
    cursors: Cursors
    # AI assistance: the model registry, the job queue, the workers' read capabilities.
    models: Registry
    jobs: Jobs
    capabilities: Capabilities
    # Second opinions, and the live feed of notifications of this process.
    consultations: Consultations
    feed: Feed

    @property
    def db(self) -> Database:
        return self.catalogue.db


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(hub_of)]
