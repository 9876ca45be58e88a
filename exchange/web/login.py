"""Login over HTTP: password login, OpenID Connect, logout, and who the caller is.

The session cookie is HttpOnly (no script reads it), SameSite=Lax (other sites' forms and
scripts do not send it; following a link does) and Secure in production. In development
over plain http://127.0.0.1 a Secure cookie would never be sent back, so it is Secure only
when the request came over https; production sets it whatever the scheme, since a TLS proxy
in front of the hub may talk plain HTTP to it.

The client address (the throttle's key) is the TCP peer's, unless that peer is one of the
trusted reverse proxies (IAIN_TRUSTED_PROXIES): then it is the first address of
X-Forwarded-For, read from the right, that is not itself a trusted proxy. Anyone else's
X-Forwarded-For is ignored: a client could write any address there. An IPv6 client is
throttled by its /64 (exchange.identity.login.throttle_address), an IPv4 one by its address.
What a login does (throttle, account, session, audit) is exchange.identity.login.

An OpenID Connect login that fails sends a browser back to the login page with a short
reason code (/login?error=oidc_...), which the page explains in the user's language; an
API client (no text/html in Accept) gets the JSON 4xx/5xx with the detail."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from exchange.core.models import User
from exchange.core.principal import Principal
from exchange.identity.oidc import PENDING_COOKIE, PENDING_S, OidcError
from exchange.identity.sessions import SESSION_COOKIE
from exchange.web.auth import CurrentUser
from exchange.web.hub import Network, hub_of

router = APIRouter(tags=["login"])

OIDC_CALLBACK = "/api/login/oidc/callback"
LOGIN_PAGE = "/login"


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


def _user_json(principal: Principal, user: User | None = None) -> dict[str, Any]:
    return {
        "id": principal.user_id,
        "username": principal.username,
        "display_name": user.display_name if user else "",
        "centre": principal.centre,
        "roles": sorted(r.value for r in principal.roles),
    }


def _secure(request: Request) -> bool:
    config = hub_of(request).login_config
    return config.always_secure or request.url.scheme == "https"


def _set_session_cookie(request: Request, response: Response, secret: str) -> None:
    config = hub_of(request).login_config
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=config.session_s,
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request) -> str:
    """Who is logging in, as far as the hub can tell (see the module's docstring)."""
    config = hub_of(request).login_config
    peer = request.client.host if request.client else "unknown"
    if not config.trusted_proxies or not _trusted(peer, config.trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    address = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not written by a proxy of ours: what is left of it is the client's word
        address = hop
        if not _trusted(hop, config.trusted_proxies):
            break
    return address


def _safe_next(target: str | None) -> str:
    """Only paths of this hub: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/api/login/options")
def login_options(request: Request) -> dict[str, Any]:
    oidc = hub_of(request).oidc
    return {
        "password": True,
        "oidc": oidc is not None,
        "oidc_label": oidc.config.label if oidc else None,
    }


@router.post("/api/login")
def login(body: LoginRequest, request: Request) -> Response:
    logins = hub_of(request).logins
    done = logins.with_password(body.username, body.password, client_address(request))
    response = JSONResponse(
        {"user": _user_json(done.principal, done.user), "csrf_token": done.csrf_token}
    )
    _set_session_cookie(request, response, done.secret)
    return response


@router.post("/api/logout")
def logout(request: Request, principal: CurrentUser) -> Response:
    logins = hub_of(request).logins
    ended = logins.logout(principal)
    response = JSONResponse({"logged_out": ended})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True)
    return response


@router.get("/api/me")
def me(request: Request, principal: CurrentUser) -> dict[str, Any]:
    user = hub_of(request).identities.user(principal.username)
    return {
        "user": _user_json(principal, user),
        "csrf_token": getattr(request.state, "csrf_token", None),
        "auth": "session" if principal.session_id else "token",
    }


def _redirect_uri(request: Request) -> str:
    config = hub_of(request).login_config
    base = config.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return base + OIDC_CALLBACK


def _wants_page(request: Request) -> bool:
    """A browser navigating (it asks for HTML), not a script asking for JSON."""
    return "text/html" in request.headers.get("accept", "")


def _oidc_failed(request: Request, exc: OidcError) -> Response:
    """A browser goes back to the login page, which explains `reason` (never the detail:
    it may name the provider's internals); an API client gets the JSON error."""
    if not _wants_page(request):
        raise exc
    response = RedirectResponse(
        f"{LOGIN_PAGE}?{urlencode({'error': f'oidc_{exc.reason}'})}", status_code=303
    )
    response.delete_cookie(PENDING_COOKIE, path="/api/login/oidc")
    return response


@router.get("/api/login/oidc")
def oidc_start(request: Request, next: str | None = None) -> Response:
    oidc = hub_of(request).oidc
    if oidc is None:
        return JSONResponse({"detail": "OpenID Connect login is not configured"}, 404)
    try:
        url, pending = oidc.begin(_redirect_uri(request), _safe_next(next))
    except OidcError as exc:
        return _oidc_failed(request, exc)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        PENDING_COOKIE,
        pending,
        max_age=PENDING_S,
        path="/api/login/oidc",
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(OIDC_CALLBACK)
def oidc_callback(request: Request) -> Response:
    oidc = hub_of(request).oidc
    if oidc is None:
        return JSONResponse({"detail": "OpenID Connect login is not configured"}, 404)
    logins = hub_of(request).logins
    try:
        done, next_url = logins.with_oidc(
            oidc,
            dict(request.query_params),
            request.cookies.get(PENDING_COOKIE),
            _redirect_uri(request),
        )
    except OidcError as exc:
        return _oidc_failed(request, exc)
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    _set_session_cookie(request, response, done.secret)
    response.delete_cookie(PENDING_COOKIE, path="/api/login/oidc")
    return response
