"""The hub with authorisation switched off, for benchmarks only: what access control costs.

Same application as `iain serve` (`iain.app.create_app` from IAIN_* settings), with the
three places that authorise replaced: the caller is a fixed pathologist without a token
lookup, the tile routes and the fast path locate every slide through the catalogue, with no
policy decision. Everything else (middleware, fast path, response headers) is the same
object graph. Never a way to run a hub: it serves every slide to anyone.

    python -m uvicorn --factory bench.noauth_app:app --port 8001
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Scope

from exchange.auth import current_user
from exchange.catalogue import Catalogue
from exchange.principal import Principal, Role
from iain.app import create_app
from iain.settings import Settings
from tiles.location import SlideLocator

NOBODY = Principal(
    user_id="bench", username="bench", centre="caen", roles=frozenset({Role.PATHOLOGIST})
)


def without_auth(hub: FastAPI) -> FastAPI:
    """`hub` (from create_app, not yet started) with authorisation switched off."""
    catalogue: Catalogue = hub.state.catalogue

    def every_slide(_scope: Scope) -> SlideLocator:
        return catalogue

    hub.state.locator_for = None  # tiles.routes falls back to app.state.slide_locator
    hub.state.scope_locator = every_slide
    hub.dependency_overrides[current_user] = lambda: NOBODY
    return hub


def app() -> FastAPI:
    return without_auth(create_app(Settings()))
