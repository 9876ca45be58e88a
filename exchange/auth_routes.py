"""Login over HTTP: password login, OpenID Connect, logout, and who the caller is.

The session cookie is HttpOnly (no script reads it), SameSite=Lax (other sites' forms and
scripts do not send it; following a link does) and Secure in production. In development
over plain http://127.0.0.1 a Secure cookie would never be sent back, so it is Secure only
when the request came over https; production sets it whatever the scheme, since a TLS proxy
in front of the hub may talk plain HTTP to it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from exchange import audit
from exchange.auth import CurrentUser
from exchange.catalogue import Catalogue
from exchange.identity import Identities
from exchange.models import User
from exchange.oidc import PENDING_COOKIE, PENDING_S, OidcClient, OidcError, OidcRefused
from exchange.principal import Principal
from exchange.sessions import SESSION_COOKIE, LoginThrottle, Sessions

router = APIRouter(tags=["login"])

OIDC_CALLBACK = "/api/login/oidc/callback"


@dataclass(frozen=True)
class LoginConfig:
    always_secure: bool  # production: Secure cookies even if the hub sees plain HTTP
    public_url: str  # the hub's public base URL ("" = the URL the request came to)
    session_s: int


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
    config: LoginConfig = request.app.state.login_config
    return config.always_secure or request.url.scheme == "https"


def _set_session_cookie(request: Request, response: Response, secret: str) -> None:
    config: LoginConfig = request.app.state.login_config
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=config.session_s,
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(target: str | None) -> str:
    """Only paths of this hub: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/api/login/options")
def login_options(request: Request) -> dict[str, Any]:
    oidc: OidcClient | None = request.app.state.oidc
    return {
        "password": True,
        "oidc": oidc is not None,
        "oidc_label": oidc.config.label if oidc else None,
    }


@router.post("/api/login")
def login(body: LoginRequest, request: Request) -> Response:
    identities: Identities = request.app.state.identities
    sessions: Sessions = request.app.state.sessions
    throttle: LoginThrottle = request.app.state.login_throttle
    catalogue: Catalogue = request.app.state.catalogue
    username = body.username.strip().lower()
    keys = (f"user:{username}", f"addr:{_client_address(request)}")

    # The audit names the account only when it exists: what was typed into the username
    # field of a failed login may be a password typed in the wrong field.
    known = identities.user(username)

    def failed(reason: str) -> None:
        with catalogue.session() as session, session.begin():
            audit.record(
                session,
                "login_failed",
                actor_id=known.id if known else None,
                actor_centre=known.centre if known else None,
                target_type="user",
                target_id=known.username[:64] if known else "",
                detail={"reason": reason, "method": "password", "known_user": bool(known)},
            )

    wait = throttle.retry_after(*keys)
    if wait > 0:
        failed("rate_limited")
        return JSONResponse(
            {"detail": "too many failed logins: try again later"},
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    user = identities.check_password(username, body.password)
    if user is None:
        throttle.failed(*keys)
        failed("bad_credentials")
        return JSONResponse({"detail": "wrong username or password"}, status_code=401)

    throttle.succeeded(keys[0])
    with catalogue.session() as session, session.begin():
        row, secret = sessions.start(session, user)
        audit.record(
            session,
            "login",
            actor_id=user.id,
            actor_centre=user.centre,
            target_type="user",
            target_id=user.id,
            detail={"method": "password", "session": row.id},
        )
        csrf = row.csrf_token
    active = sessions.lookup(secret)
    assert active is not None
    response = JSONResponse({"user": _user_json(active.principal, user), "csrf_token": csrf})
    _set_session_cookie(request, response, secret)
    return response


@router.post("/api/logout")
def logout(request: Request, principal: CurrentUser) -> Response:
    sessions: Sessions = request.app.state.sessions
    catalogue: Catalogue = request.app.state.catalogue
    if principal.session_id is not None:
        sessions.end(principal.session_id)
        with catalogue.session() as session, session.begin():
            audit.record(
                session,
                "logout",
                actor=principal,
                target_type="user",
                target_id=principal.user_id,
                detail={"session": principal.session_id},
            )
    response = JSONResponse({"logged_out": principal.session_id is not None})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True)
    return response


@router.get("/api/me")
def me(request: Request, principal: CurrentUser) -> dict[str, Any]:
    identities: Identities = request.app.state.identities
    user = identities.user(principal.username)
    return {
        "user": _user_json(principal, user),
        "csrf_token": getattr(request.state, "csrf_token", None),
        "auth": "session" if principal.session_id else "token",
    }


def _redirect_uri(request: Request) -> str:
    config: LoginConfig = request.app.state.login_config
    base = config.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return base + OIDC_CALLBACK


@router.get("/api/login/oidc")
def oidc_start(request: Request, next: str | None = None) -> Response:
    oidc: OidcClient | None = request.app.state.oidc
    if oidc is None:
        return JSONResponse({"detail": "OpenID Connect login is not configured"}, 404)
    url, pending = oidc.begin(_redirect_uri(request), _safe_next(next))
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
    oidc: OidcClient | None = request.app.state.oidc
    if oidc is None:
        return JSONResponse({"detail": "OpenID Connect login is not configured"}, 404)
    sessions: Sessions = request.app.state.sessions
    catalogue: Catalogue = request.app.state.catalogue
    try:
        claims, next_url = oidc.finish(
            dict(request.query_params), request.cookies.get(PENDING_COOKIE), _redirect_uri(request)
        )
        # The account, the session and the audit row: one transaction.
        with catalogue.session() as session, session.begin():
            user = oidc.upsert_user(session, claims)
            row, secret = sessions.start(session, user)
            audit.record(
                session,
                "login",
                actor_id=user.id,
                actor_centre=user.centre,
                target_type="user",
                target_id=user.id,
                detail={"method": "oidc", "session": row.id},
            )
    except (OidcError, OidcRefused) as exc:
        with catalogue.session() as session, session.begin():
            audit.record(
                session,
                "login_failed",
                detail={"reason": type(exc).__name__, "method": "oidc", "why": exc.message},
            )
        raise
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    _set_session_cookie(request, response, secret)
    response.delete_cookie(PENDING_COOKIE, path="/api/login/oidc")
    return response
