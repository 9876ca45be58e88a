"""The hub with authorisation switched off, for benchmarks only: what access control costs.

Same application as `iain serve` (`iain.app.create_app` from IAIN_* settings), with the
three places that authorise replaced: the caller is a fixed pathologist without a token
lookup, the tile routes and the fast path locate every slide through the catalogue, with no
policy decision. Everything else (middleware, fast path, response headers) is the same
object graph. Never a way to run a hub: it serves every slide to anyone.

    python bench/noauth_app.py --port 8001

It runs under uvicorn configured as `iain serve` runs it (log level, no access log, the
trusted proxies of IAIN_TRUSTED_PROXIES), so the two servers differ only by authorisation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.types import Scope

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exchange.core.principal import Principal, Role
from exchange.slides.catalogue import Catalogue
from exchange.web.auth import current_user, tile_caller
from iain.app import create_app
from iain.settings import Settings
from tiles.location import SlideLocator

NOBODY = Principal(
    user_id="bench", username="bench", centre="caen", roles=frozenset({Role.PATHOLOGIST})
)


def without_auth(hub: FastAPI) -> FastAPI:
    """`hub` (from create_app, not yet started) with authorisation switched off."""
    catalogue: Catalogue = hub.state.hub.catalogue

    def every_slide(_scope: Scope) -> SlideLocator:
        return catalogue

    hub.state.locator_for = None  # tiles.routes falls back to app.state.slide_locator
    hub.state.scope_locator = every_slide
    hub.dependency_overrides[current_user] = lambda: NOBODY
    hub.dependency_overrides[tile_caller] = lambda: NOBODY  # the tile routes' caller
    return hub


def app() -> FastAPI:
    return without_auth(create_app(Settings()))


def main() -> None:
    ap = argparse.ArgumentParser(description="the hub without authorisation (benchmarks only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    settings = Settings()
    # The same call as iain.cli._serve.
    uvicorn.run(
        without_auth(create_app(settings)),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        forwarded_allow_ips=[str(n) for n in settings.trusted_proxies],
    )


if __name__ == "__main__":
    main()
