"""Local accounts and API tokens.

Passwords are hashed with argon2 (argon2-cffi's defaults); API tokens are 256-bit random
secrets, so a plain SHA-256 of them is enough at rest and lets a request find its token
with one indexed lookup."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.core.models import ApiToken, LoginSession, User
from exchange.core.principal import Principal, Role

TOKEN_PREFIX = "iain_"
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,149}")
_HASHER = PasswordHasher()
# A token seen recently is not looked up again for this long: the tile hot path must stay
# cheap. Revoking a token clears the cache of this process at once (see revoke_token), and
# of the other processes within REVOCATION_POLL_S (RevocationWatch).
TOKEN_CACHE_S = 30.0
# How often a hub process asks which cached tokens or sessions were revoked elsewhere, and
# how far back: a minute covers clocks of two machines a little apart.
REVOCATION_POLL_S = 1.0
REVOCATION_LOOKBACK_S = 60.0


class IdentityError(ExchangeError):
    """A user or token request that cannot be done (bad name, unknown user...): 400."""

    http_status = 400


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_of(user: User, token: ApiToken | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        centre=user.centre,
        roles=frozenset(Role(r) for r in user.roles),
        token_id=token.id if token else None,
        scopes=frozenset(token.scopes) if token else frozenset(),
    )


def parse_roles(names: Iterable[str]) -> list[Role]:
    roles = []
    for name in names:
        try:
            roles.append(Role(name.strip().lower().replace("-", "_")))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise IdentityError(f"unknown role {name!r} (known: {known})") from None
    if not roles:
        raise IdentityError("a user needs at least one role")
    return roles


# Passwords that the first guesses of any attacker try; a longer list belongs to the site.
_COMMON_PASSWORDS = frozenset(
    {"password", "password1", "123456789", "1234567890", "azertyuiop", "qwertyuiop", "iloveyou"}
)


def weak_password(password: str, username: str = "") -> str | None:
    """Why a new password is too weak, or None: at least 10 characters, not a common one,
    not the username, not one repeated character."""
    if len(password) < 10:
        return "a password has at least 10 characters"
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(password)) < 4:
        return "this password is too easy to guess"
    if username and username.lower() in lowered:
        return "a password must not contain the username"
    return None


@dataclass(frozen=True)
class Revoked:
    """Credentials a poll found revoked since the last one: API token and session ids."""

    tokens: frozenset[str]
    sessions: frozenset[str]


class RevocationWatch:
    """Credentials revoked by any process (the CLI, another hub process), for the caches
    that spare a request its credential lookup: the API-token cache (Identities), the
    session cache (exchange.identity.sessions) and the tile fast path's memory of callers
    (exchange.access.policy). One per hub process, shared by the three.

    The promise, on every hub process: no request that comes later than REVOCATION_POLL_S
    after a revocation committed is answered with the revoked credential. A cache may
    answer only right after `sync()` (or before `fresh_until`): the last poll whose answer was
    applied began less than REVOCATION_POLL_S ago, so it saw every revocation committed
    before then. When that poll is older, the next request polls, and the requests that
    come meanwhile wait for its answer instead of answering from their caches (they used
    to, and one page load could get 401 on /api/me and 200 on the rest). At most one query
    per REVOCATION_POLL_S, whatever the traffic.

    `generation` changes whenever a cache forgets credentials (a revocation seen by a poll,
    a logout or revocation through this process): a lookup that read its row before such a
    change does not cache it, and the fast path drops what it remembered."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # On the time.monotonic() clock: until then the caches may answer (see `sync`).
        self.fresh_until = -math.inf
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Revoked], None]] = []
        self._seen = Revoked(frozenset(), frozenset())
        self._generations = itertools.count(1)
        self.generation = 0

    def subscribe(self, forget: Callable[[Revoked], None]) -> None:
        """`forget` gets what each poll finds newly revoked, before the caches may answer."""
        self._subscribers.append(forget)

    def changed(self) -> None:
        """A cache forgot credentials: see `generation`."""
        self.generation = next(self._generations)

    def sync(self) -> None:
        """Returns once the caches may answer: at once while the last poll is fresh, else
        after polling (or after the poll another thread is making)."""
        if time.monotonic() < self.fresh_until:
            return
        with self._lock:
            started = time.monotonic()
            if started < self.fresh_until:
                return  # another thread polled while this one waited
            # Far enough back for clocks of two machines a little apart: the rows'
            # revoked_at come from the clock of whoever revoked.
            since = datetime.now(UTC) - timedelta(seconds=REVOCATION_LOOKBACK_S)
            with self.db.session() as session:
                tokens = frozenset(
                    session.scalars(select(ApiToken.id).where(ApiToken.revoked_at >= since))
                )
                sessions = frozenset(
                    session.scalars(select(LoginSession.id).where(LoginSession.revoked_at >= since))
                )
            new = Revoked(tokens - self._seen.tokens, sessions - self._seen.sessions)
            if new.tokens or new.sessions:
                for forget in self._subscribers:
                    forget(new)
            self._seen = Revoked(tokens, sessions)
            # Only now: the query began at `started` and saw what was committed before.
            self.fresh_until = started + REVOCATION_POLL_S


class Identities:
    """Users and API tokens, in the hub's database."""

    def __init__(self, db: Database, revocations: RevocationWatch | None = None) -> None:
        self.db = db
        # Token hash -> (caller, when cached, when the token expires).
        self._tokens: dict[str, tuple[Principal, float, datetime | None]] = {}
        self._lock = threading.Lock()
        self.revocations = revocations or RevocationWatch(db)
        self.revocations.subscribe(lambda revoked: self.forget_tokens(revoked.tokens))

    def add_user(
        self,
        username: str,
        centre: str,
        roles: Iterable[str],
        *,
        password: str | None = None,
        display_name: str = "",
        rpps: str | None = None,
    ) -> User:
        username = username.strip().lower()
        if not _USERNAME.fullmatch(username):
            raise IdentityError(
                "a username is 2-150 characters: lower-case letters, digits, '.', '_', '@', '-'"
            )
        if rpps is not None and not re.fullmatch(r"\d{11}", rpps):
            raise IdentityError("an RPPS number has 11 digits")
        if password is not None and len(password) < 8:
            raise IdentityError("a password has at least 8 characters")
        self.db.check_centre(centre)
        user = User(
            id=new_id(),
            username=username,
            centre=centre,
            roles=[r.value for r in parse_roles(roles)],
            display_name=display_name,
            rpps=rpps,
            password_hash=_HASHER.hash(password) if password is not None else None,
        )
        with self.db.session() as session, session.begin():
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise IdentityError(f"user {username!r} exists already")
            session.add(user)
        return user

    def user(self, username: str) -> User | None:
        with self.db.session() as session:
            return session.scalar(select(User).where(User.username == username.strip().lower()))

    def check_password(self, username: str, password: str) -> User | None:
        """The active user with this password, else None (same answer for unknown users)."""
        user = self.user(username)
        if user is None or not user.active or user.password_hash is None:
            # Hash anyway, so a wrong username takes as long as a wrong password.
            _HASHER.hash(password)
            return None
        try:
            _HASHER.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return user

    def create_token(
        self, username: str, *, name: str = "", scopes: Iterable[str] = ()
    ) -> tuple[ApiToken, str]:
        """A new token for the user: the row, and the secret (shown once, never stored)."""
        user = self.user(username)
        if user is None:
            raise IdentityError(f"no user {username!r}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            id=new_id(),
            user_id=user.id,
            token_hash=hash_secret(secret),
            name=name,
            scopes=sorted(set(scopes)),
        )
        with self.db.session() as session, session.begin():
            session.add(token)
        return token, secret

    def revoke_token(self, token_id: str) -> bool:
        with self.db.session() as session, session.begin():
            token = session.get(ApiToken, token_id)
            if token is None or token.revoked_at is not None:
                return False
            token.revoked_at = datetime.now(UTC)
        self.forget_tokens({token_id})
        return True

    def forget_tokens(self, token_ids: Iterable[str]) -> None:
        ids = set(token_ids)
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v[0].token_id not in ids}
            self.revocations.changed()

    def principal_for_token(self, secret: str) -> Principal | None:
        """The caller a bearer token stands for, or None (unknown, expired, revoked)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        digest = hash_secret(secret)
        self.revocations.sync()
        now = time.monotonic()
        cached = self._tokens.get(digest)
        if cached is not None and now - cached[1] < TOKEN_CACHE_S:
            principal, _, expires_at = cached
            return principal if expires_at is None or expires_at > datetime.now(UTC) else None
        generation = self.revocations.generation  # before the query: see the insert below
        with self.db.session() as session:
            token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if token is None or token.revoked_at is not None:
                return None
            expires_at = token.expires_at
            if expires_at is not None and expires_at <= datetime.now(UTC):
                return None
            user = session.get(User, token.user_id)
            if user is None or not user.active:
                return None
            principal = principal_of(user, token)
        with self._lock:
            # A forget since the query may be this token's revocation, committed after the
            # row was read: caching it would let it work until the next revocation poll.
            if self.revocations.generation == generation:
                self._tokens[digest] = (principal, now, expires_at)
        return principal


def revoke_tokens_of(session: Session, user_id: str) -> list[str]:
    """Revokes every live token of a user in the caller's transaction: their ids."""
    now = datetime.now(UTC)
    tokens = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    ).all()
    for token in tokens:
        token.revoked_at = now
    return [token.id for token in tokens]
