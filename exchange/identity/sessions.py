"""Browser login sessions and the throttle on failed logins.

A session is a 256-bit random secret in an HttpOnly cookie; only its SHA-256 is stored
(LoginSession.secret_hash), so a copy of the database does not let anyone log in. Each
session has its own CSRF token, which the browser reads from the login answer or /api/me
and sends back as `X-CSRF-Token` on every request that changes something.

Sessions that expired or were ended are pruned: now and then at login, and by
`iain sessions prune`. An admin ending a session (`iain sessions end`, `iain users disable`)
runs in another process than the hub: each hub process asks the database, at most once per
second, which sessions were ended lately, and drops them from its cache before it answers
with it (exchange.identity.accounts.RevocationWatch)."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from exchange.core.db import Database
from exchange.core.ids import new_id
from exchange.core.models import LoginFailure, LoginSession, User
from exchange.core.principal import Principal
from exchange.identity.accounts import RevocationWatch, hash_secret, principal_of

SESSION_COOKIE = "iain_session"
CSRF_HEADER = "x-csrf-token"
# Like API tokens: a session seen recently is not looked up again for this long. Logging out
# clears this process's cache at once; an end decided elsewhere shows within
# REVOCATION_POLL_S (exchange.identity.accounts.RevocationWatch).
SESSION_CACHE_S = 30.0
# Expired sessions are deleted at most this often by the logins of one hub process.
PRUNE_EVERY_S = 600.0
# An ended session's row outlives its end by this much, so that every hub process sees the
# end (RevocationWatch looks a minute back) before the row goes.
ENDED_KEPT = timedelta(hours=1)


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    """What an admin sees of a session: never its secret nor its CSRF token."""

    id: str
    username: str
    centre: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.ended_at is not None:
            return "ended"
        return "expired" if self.expires_at <= now else "live"


class Sessions:
    """Login sessions, in the hub's database."""

    def __init__(
        self,
        db: Database,
        *,
        lifetime: timedelta,
        revocations: RevocationWatch | None = None,
    ) -> None:
        self.db = db
        self.lifetime = lifetime
        self._cache: dict[str, tuple[ActiveSession, float]] = {}
        self._lock = threading.Lock()
        self.revocations = revocations or RevocationWatch(db)
        self.revocations.subscribe(lambda revoked: self.forget(*revoked.sessions))
        self._last_prune = -math.inf

    def start(self, session: Session, user: User) -> tuple[LoginSession, str]:
        """A new session for `user`, added in the caller's transaction (with its audit row):
        the row, and the cookie's secret (never stored)."""
        secret = secrets.token_urlsafe(32)
        row = LoginSession(
            id=new_id(),
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
        self.revocations.sync()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < SESSION_CACHE_S:
            active = cached[0]
            return active if active.expires_at > datetime.now(UTC) else None
        generation = self.revocations.generation  # before the query: see the insert below
        with self.db.session() as session:
            row = session.query(LoginSession).filter_by(secret_hash=digest).one_or_none()
            if row is None or row.revoked_at is not None:
                return None
            expires_at = row.expires_at
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
            # A forget since the query may be this session's end, committed after the row
            # was read: caching it would let it work until the next revocation poll.
            if self.revocations.generation == generation:
                self._cache[digest] = (active, now)
        return active

    def end(self, session_id: str) -> bool:
        """Logs the session out (also what an admin's revocation does)."""
        with self.db.session() as session, session.begin():
            row = session.get(LoginSession, session_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
        self.forget(session_id)
        return True

    def forget(self, *session_ids: str) -> None:
        ids = set(session_ids)
        with self._lock:
            self._cache = {
                k: v for k, v in self._cache.items() if v[0].principal.session_id not in ids
            }
            self.revocations.changed()

    def listing(self, username: str | None = None, *, ended: bool = False) -> list[SessionInfo]:
        """Sessions, newest first: the live ones, or all not yet pruned with `ended`."""
        now = datetime.now(UTC)
        query = select(LoginSession, User).join(User, User.id == LoginSession.user_id)
        if username is not None:
            query = query.where(User.username == username.strip().lower())
        if not ended:
            query = query.where(LoginSession.revoked_at.is_(None), LoginSession.expires_at > now)
        with self.db.session() as session:
            rows = session.execute(query.order_by(LoginSession.created_at.desc())).all()
        return [
            SessionInfo(
                id=row.id,
                username=user.username,
                centre=user.centre,
                created_at=row.created_at,
                expires_at=row.expires_at,
                ended_at=row.revoked_at,
            )
            for row, user in rows
        ]

    def prune(self, now: datetime | None = None) -> int:
        """Deletes expired sessions, and ended ones once every hub process saw them end:
        how many."""
        now = now or datetime.now(UTC)
        with self.db.session() as session, session.begin():
            result = session.execute(
                delete(LoginSession).where(
                    or_(
                        LoginSession.expires_at <= now,
                        LoginSession.revoked_at <= now - ENDED_KEPT,
                    )
                )
            )
        self._last_prune = time.monotonic()
        return int(getattr(result, "rowcount", 0) or 0)

    def prune_now_and_then(self) -> None:
        """Called at each login: prunes when the last prune of this process is old."""
        if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self.prune()


def end_sessions_of(session: Session, user_id: str) -> list[str]:
    """Ends every live session of a user in the caller's transaction: their ids."""
    now = datetime.now(UTC)
    rows = session.scalars(
        select(LoginSession).where(
            LoginSession.user_id == user_id,
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
        )
    ).all()
    for row in rows:
        row.revoked_at = now
    return [row.id for row in rows]


@dataclass(frozen=True)
class LoginAttempt:
    """A login being tried, already counted by the throttle (LoginThrottle.attempt)."""

    wait: float  # > 0: refused, seconds until a login may be tried again
    rows: tuple[int, ...]  # its LoginFailure rows, until it proves to be no failure


class LoginThrottle:
    """At most `max_failures` failed logins per username and per client address within
    `window_s`; past that, logins from there are refused (429) until enough failures leave
    the window. The failures are rows of the database (LoginFailure), so every hub process
    counts the same ones and a restart forgives nothing. Their keys are hashed with the
    hub's secret: a username field may hold a mistyped password."""

    def __init__(self, db: Database, max_failures: int, window_s: float, *, secret: bytes) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window_s = window_s
        self._secret = hashlib.sha256(b"iain-login-throttle|" + secret).digest()

    def _key(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login under these keys may be tried again; 0 when it may now."""
        return self._wait([self._key(k) for k in keys], datetime.now(UTC), ())

    def _wait(self, hashed: list[str], now: datetime, excluded: Sequence[int]) -> float:
        with self.db.session() as session:
            rows = session.execute(
                select(LoginFailure.key, LoginFailure.at)
                .where(
                    LoginFailure.key.in_(hashed),
                    LoginFailure.at > now - timedelta(seconds=self.window_s),
                    LoginFailure.id.not_in(excluded),
                )
                .order_by(LoginFailure.at)
            ).all()
        wait = 0.0
        for key in hashed:
            times = [at for k, at in rows if k == key]
            if len(times) >= self.max_failures:
                # Tries come back once the failures in the window fall below the maximum.
                leaves = times[len(times) - self.max_failures] + timedelta(seconds=self.window_s)
                wait = max(wait, (leaves - now).total_seconds())
        return wait

    def attempt(self, *keys: str) -> LoginAttempt:
        """Counts a login under these keys BEFORE its password is checked: its rows are
        committed first, then the window is counted, so of any number of parallel tries at
        most `max_failures` find room (each sees every row committed before its own). A try
        without room (`wait` > 0) is taken back at once: a refused login is no failure."""
        now = datetime.now(UTC)
        hashed = [self._key(k) for k in keys]
        with self.db.session() as session, session.begin():
            rows = [LoginFailure(key=h, at=now) for h in hashed]
            session.add_all(rows)
            session.flush()
            ids = tuple(row.id for row in rows)
        wait = self._wait(hashed, now, ids)
        attempt = LoginAttempt(wait, ids)
        if wait > 0:
            self._take_back(attempt)
        return attempt

    def failed(self, attempt: LoginAttempt) -> None:
        """The password was wrong: the attempt's rows stay, as its failures."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.window_s)
        with self.db.session() as session, session.begin():
            # Failures past the window count no more: the table stays small.
            session.execute(delete(LoginFailure).where(LoginFailure.at <= cutoff))

    def succeeded(self, attempt: LoginAttempt, key: str) -> None:
        """The attempt was no failure; and `key`'s failures (the username's, not the
        address's) are forgiven."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.window_s)
        with self.db.session() as session, session.begin():
            session.execute(
                delete(LoginFailure).where(
                    or_(
                        LoginFailure.id.in_(attempt.rows),
                        LoginFailure.key == self._key(key),
                        LoginFailure.at <= cutoff,
                    )
                )
            )

    def _take_back(self, attempt: LoginAttempt) -> None:
        with self.db.session() as session, session.begin():
            session.execute(delete(LoginFailure).where(LoginFailure.id.in_(attempt.rows)))

    def prune(self) -> int:
        """Deletes failures past the window: how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.window_s)
        with self.db.session() as session, session.begin():
            result = session.execute(delete(LoginFailure).where(LoginFailure.at <= cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
