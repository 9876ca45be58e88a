"""Authentication at the HTTP boundary: who is calling, from the request alone.

An `Authorization: Bearer iain_…` API token (scripts, GPU workers) or, for browsers, the
session cookie (see exchange/sessions, added with the login routes). Routes depend on
`CurrentUser` (401 without a valid caller); the policy (exchange/access/policy.py) then decides
what that caller may see."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from exchange.core.errors import ExchangeError
from exchange.core.principal import Principal, Scope
from exchange.identity.sessions import CSRF_HEADER, SESSION_COOKIE
from exchange.jobs.capability import CAPABILITY_PREFIX
from exchange.web.hub import hub_of


class NotAuthenticated(ExchangeError):
    """No valid credentials on a route that needs them: 401."""

    http_status = 401


class CsrfRejected(ExchangeError):
    """A browser-session request that changes state without the session's CSRF token: 403."""

    http_status = 403


# Methods that change nothing: a session cookie alone is enough for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")  # the first, if there are several
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticate(request: Request) -> Principal | None:
    """The caller, or None. Cached on the request: several dependencies may ask."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    hub = hub_of(request)
    identities = hub.identities
    principal = None
    token = bearer_token(request)
    if token is not None and token.startswith(CAPABILITY_PREFIX):
        # A worker reading its job's slide (exchange.jobs.capability): signed, no query.
        capability = hub.capabilities.verify(token)
        principal = capability.principal() if capability is not None else None
    elif token is not None:
        principal = identities.principal_for_token(token)
    else:
        # A browser: its session cookie. A bearer token, sent on purpose by a script, is
        # exempt from CSRF; a cookie is sent by the browser whoever made the page, so a
        # state-changing call must also prove it read the session's CSRF token.
        # Request.cookies merges every Cookie header (HTTP/2 sends one per cookie), the last
        # winning: exchange.web.fastpath.scope_locator remembers callers only for requests with a
        # single Cookie header, whose key is then exactly what was read here.
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            active = hub.sessions.lookup(cookie)
            if active is not None:
                if request.method not in SAFE_METHODS and not hmac.compare_digest(
                    request.headers.get(CSRF_HEADER, "").encode(), active.csrf_token.encode()
                ):
                    raise CsrfRejected("missing or wrong X-CSRF-Token header for this session")
                principal = active.principal
                request.state.csrf_token = active.csrf_token
    request.state.principal = principal
    return principal


def _caller(request: Request) -> Principal:
    principal = authenticate(request)
    if principal is None:
        raise NotAuthenticated("log in, or send an API token as 'Authorization: Bearer …'")
    return principal


def current_user(request: Request) -> Principal:
    """The caller of an API route: a user, by session or by an unscoped API token. A job's
    capability opens the tile routes only, a worker's token the worker protocol only."""
    principal = _caller(request)
    if principal.only_slide is not None:
        raise NotAuthenticated("a job capability reads its slide's tiles, nothing else")
    if Scope.WORKER in principal.scopes:
        raise NotAuthenticated("a worker token opens the worker protocol (/api/worker) only")
    return principal


def tile_caller(request: Request) -> Principal:
    """The caller of a tile route: a user, or a worker showing its job's capability."""
    principal = _caller(request)
    if Scope.WORKER in principal.scopes:
        raise NotAuthenticated("a worker reads tiles with its job's capability, not its token")
    return principal


def worker_caller(request: Request) -> Principal:
    """An inference worker: an API token with the worker scope."""
    principal = _caller(request)
    if Scope.WORKER not in principal.scopes:
        raise NotAuthenticated("the worker protocol needs a worker token (scope 'worker')")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
WorkerCaller = Annotated[Principal, Depends(worker_caller)]
