"""Logging in and out, independent of HTTP: the password check behind the throttle, the
OpenID Connect answer turned into an account, the session started, and each step's audit
event. exchange.web.login only reads the request and writes the cookie.

The audit names the account of a failed login only when it exists: what was typed into the
username field may be a password typed in the wrong field."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.models import User
from exchange.core.principal import Principal
from exchange.identity.accounts import Identities
from exchange.identity.oidc import OidcClient, OidcError
from exchange.identity.sessions import LoginThrottle, Sessions


class WrongCredentials(ExchangeError):
    """A wrong username or password: 401 (which of the two, the caller is not told)."""

    http_status = 401


class TooManyLogins(ExchangeError):
    """Too many failed logins for this account or address: 429, with Retry-After."""

    http_status = 429

    def __init__(self, wait_s: float) -> None:
        super().__init__("too many failed logins: try again later")
        self.headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}


@dataclass(frozen=True)
class LoggedIn:
    user: User
    principal: Principal
    secret: str  # the session cookie's value
    csrf_token: str


def throttle_address(address: str) -> str:
    """The throttle's key for a client address: an IPv4 address as it is, an IPv6 one by
    its /64, which one subscriber usually gets whole (a key per address would give them
    2^64 fresh keys)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Logins:
    def __init__(
        self, db: Database, identities: Identities, sessions: Sessions, throttle: LoginThrottle
    ) -> None:
        self.db = db
        self.identities = identities
        self.sessions = sessions
        self.throttle = throttle

    def with_password(self, username: str, password: str, client_address: str) -> LoggedIn:
        """A new session, or WrongCredentials / TooManyLogins (each audited)."""
        username = username.strip().lower()
        keys = (f"user:{username}", f"addr:{throttle_address(client_address)}")
        known = self.identities.user(username)

        def failed(reason: str) -> None:
            self._record_failure(
                actor_id=known.id if known else None,
                actor_centre=known.centre if known else None,
                target_type="user",
                target_id=known.username[:64] if known else "",
                detail={"reason": reason, "method": "password", "known_user": bool(known)},
            )

        # Counted before the password is checked, so that parallel tries count too.
        attempt = self.throttle.attempt(*keys)
        if attempt.wait > 0:
            failed("rate_limited")
            raise TooManyLogins(attempt.wait)
        user = self.identities.check_password(username, password)
        if user is None:
            self.throttle.failed(attempt)
            failed("bad_credentials")
            raise WrongCredentials("wrong username or password")
        self.throttle.succeeded(attempt, keys[0])
        self.sessions.prune_now_and_then()
        return self._start(lambda _session: user, "password")

    def with_oidc(
        self,
        oidc: OidcClient,
        query: dict[str, str],
        pending_cookie: str | None,
        redirect_uri: str,
    ) -> tuple[LoggedIn, str]:
        """A new session for the provider's answer and where to go next, or OidcError
        (audited; the caller decides how to show it)."""
        try:
            claims, next_url = oidc.finish(query, pending_cookie, redirect_uri)
            # The account, the session and the audit row: one transaction.
            logged_in = self._start(lambda session: oidc.upsert_user(session, claims), "oidc")
        except OidcError as exc:
            self._record_failure(
                detail={
                    "reason": type(exc).__name__,
                    "code": exc.reason,
                    "method": "oidc",
                    "why": exc.message,
                }
            )
            raise
        self.sessions.prune_now_and_then()
        return logged_in, next_url

    def logout(self, principal: Principal) -> bool:
        """Ends the caller's session (an API token has none: False)."""
        if principal.session_id is None:
            return False
        self.sessions.end(principal.session_id)
        with self.db.session() as session, session.begin():
            audit.record(
                session,
                AuditAction.LOGOUT,
                actor=principal,
                target_type="user",
                target_id=principal.user_id,
                detail={"session": principal.session_id},
            )
        return True

    def _start(self, account: Callable[[Session], User], method: str) -> LoggedIn:
        """The account (found, or made from the provider's claims), its new session and the
        audit row, in one transaction."""
        with self.db.session() as session, session.begin():
            user = account(session)
            row, secret = self.sessions.start(session, user)
            audit.record(
                session,
                AuditAction.LOGIN,
                actor_id=user.id,
                actor_centre=user.centre,
                target_type="user",
                target_id=user.id,
                detail={"method": method, "session": row.id},
            )
            csrf = row.csrf_token
        active = self.sessions.lookup(secret)
        assert active is not None
        return LoggedIn(user, active.principal, secret, csrf)

    def _record_failure(self, **fields: Any) -> None:
        with self.db.session() as session, session.begin():
            audit.record(session, AuditAction.LOGIN_FAILED, **fields)
