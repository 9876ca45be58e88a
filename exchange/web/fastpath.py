"""Who a raw tile request comes from, for the tile fast path (tiles.fastpath): the
composition root injects `scope_locator`. Cheap on a cache hit: the raw credential header
is looked up in the caller memory (exchange.access.callers), whose rules say when it may
answer; otherwise the request is authenticated as the routes do it, and remembered."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import Scope

from exchange.access.callers import CallerMemory
from exchange.web.auth import authenticate
from tiles.location import SlideLocator


def scope_locator(memory: CallerMemory, scope: Scope) -> SlideLocator | None:
    """The caller's locator for a raw ASGI request; None without a caller (the route then
    answers 401). Only a request with one Authorization header, or none and one Cookie
    header, is answered from or kept in memory (see exchange.access.callers)."""
    bearer = cookie = None
    several = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            several = several or bearer is not None
            bearer = value
        elif name == b"cookie":
            several = several or cookie is not None
            cookie = value
    now = time.monotonic()
    if not several:
        known = memory.recall(bearer, cookie, now)
        if known is not None:
            # Where exchange.web.auth.authenticate looks first, for later readers.
            scope.setdefault("state", {})["principal"] = known.principal
            return known.locator
    # Read before authenticating: a forgetting from now on changes it.
    generation = memory.revocations.generation
    principal = authenticate(Request(scope))
    if principal is None:
        return None
    locator = memory.locator(principal)
    if not several:
        memory.remember(bearer, cookie, principal, locator, generation, now)
    return locator
