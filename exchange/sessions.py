"""Browser login sessions and the throttle on failed logins.

A session is a 256-bit random secret in an HttpOnly cookie; only its SHA-256 is stored
(LoginSession.secret_hash), so a copy of the database does not let anyone log in. Each
session has its own CSRF token, which the browser reads from the login answer or /api/me
and sends back as `X-CSRF-Token` on every request that changes something."""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from exchange.catalogue import Catalogue, new_slide_id
from exchange.identity import hash_secret, principal_of
from exchange.models import LoginSession, User
from exchange.principal import Principal

SESSION_COOKIE = "iain_session"
CSRF_HEADER = "x-csrf-token"
# Like API tokens: a session seen recently is not looked up again for this long. Logging out
# (or revoking) clears this process's cache at once.
SESSION_CACHE_S = 30.0


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime


class Sessions:
    """Login sessions, in the catalogue's database."""

    def __init__(self, catalogue: Catalogue, *, lifetime: timedelta) -> None:
        self.catalogue = catalogue
        self.lifetime = lifetime
        self._cache: dict[str, tuple[ActiveSession, float]] = {}
        self._lock = threading.Lock()

    def start(self, session: Session, user: User) -> tuple[LoginSession, str]:
        """A new session for `user`, added in the caller's transaction (with its audit row):
        the row, and the cookie's secret (never stored)."""
        secret = secrets.token_urlsafe(32)
        row = LoginSession(
            id=new_slide_id(),
            user_id=user.id,
            secret_hash=hash_secret(secret),
            csrf_token=secrets.token_urlsafe(32),
            created_at=datetime.now(UTC),
            expires_at=datetime.now(UTC) + self.lifetime,
        )
        session.add(row)
        return row, secret

    def lookup(self, secret: str) -> ActiveSession | None:
        """The live session a cookie stands for, or None (unknown, expired, ended)."""
        if not secret or len(secret) > 200:
            return None
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < SESSION_CACHE_S:
            active = cached[0]
            return active if active.expires_at > datetime.now(UTC) else None
        with self.catalogue.session() as session:
            row = session.query(LoginSession).filter_by(secret_hash=digest).one_or_none()
            if row is None or row.revoked_at is not None:
                return None
            expires_at = _aware(row.expires_at)
            if expires_at <= datetime.now(UTC):
                return None
            user = session.get(User, row.user_id)
            if user is None or not user.active:
                return None
            base = principal_of(user)
            principal = Principal(
                user_id=base.user_id,
                username=base.username,
                centre=base.centre,
                roles=base.roles,
                session_id=row.id,
            )
            active = ActiveSession(principal, row.csrf_token, expires_at)
        with self._lock:
            self._cache[digest] = (active, now)
        return active

    def end(self, session_id: str) -> bool:
        """Logs the session out (also what an admin's revocation does)."""
        with self.catalogue.session() as session, session.begin():
            row = session.get(LoginSession, session_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
        self.forget(session_id)
        return True

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._cache = {
                k: v for k, v in self._cache.items() if v[0].principal.session_id != session_id
            }


class LoginThrottle:
    """At most `max_failures` failed logins per username and per client address within
    `window_s`; past that, logins from there are refused (429) until the oldest failure
    leaves the window. In memory: each hub process counts its own (a restart forgives)."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login under these keys may be tried again; 0 when it may now."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window_s - now)
                elif not times:
                    del self._failures[key]  # bounded memory: only keys with recent failures
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times


def _aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back: they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
