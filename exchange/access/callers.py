"""The tile fast path's memory of callers: who a raw credential header stands for.

A cached tile costs a few dictionary lookups only if its request is not authenticated from
scratch: the fast path (exchange.web.fastpath) remembers, per raw `Authorization` header or,
without one, per raw `Cookie` header, the caller and their slide locator. An entry answers
for at most FAST_AUTH_S (a session's expiry shows within it), and only while the hub's
revocation watch (exchange.identity.accounts.RevocationWatch) is fresh and has forgotten no
credential since the entry was made: a logout or revocation through this process stops it
at once, one made by any other process within REVOCATION_POLL_S, exactly when the routes'
own caches stop answering (the memory adds no delay of its own).

Invariant: a remembered key is the whole credential authentication read, so the same key
always stands for the same caller. The fast path therefore asks only for requests with one
Authorization header, or none and one Cookie header (authentication merges every Cookie
header, HTTP/2 sending one per cookie). Long headers are never remembered (junk cookies
beside a valid session would make each request a new entry), and each memory holds at most
MAX_REMEMBERED entries: at most ~18 MiB of keys in all.

The caches of credentials and their lifetimes, for reference:

| cache | where | answers for | stopped by |
|---|---|---|---|
| API tokens | Identities | TOKEN_CACHE_S (30 s) | the watch (REVOCATION_POLL_S) |
| login sessions | Sessions | SESSION_CACHE_S (30 s) | the watch (REVOCATION_POLL_S) |
| callers by header | CallerMemory | FAST_AUTH_S (1 s) | the watch, and any forgetting |
| decisions (caller, slide) | Policy | DECISION_TTL_S (5 s) | a grant revoked through this hub |
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from exchange.access.policy import Policy
from exchange.core.principal import Principal
from exchange.identity.accounts import REVOCATION_POLL_S, RevocationWatch
from tiles.location import SlideLocator

# How long an entry answers at most; revocations stop it sooner (see the module docstring).
FAST_AUTH_S = REVOCATION_POLL_S
MAX_REMEMBERED = 4096
MAX_COOKIE_KEY = 4096  # a browser's cookies for the hub are about 60 bytes
MAX_BEARER_KEY = 512  # a bearer header is about 60


@dataclass(frozen=True, slots=True)
class Remembered:
    until: float  # on the time.monotonic() clock
    principal: Principal
    locator: SlideLocator
    generation: int  # the watch's, read before the caller was authenticated


class CallerMemory:
    def __init__(
        self,
        policy: Policy,
        revocations: RevocationWatch,
        *,
        view_seen: Callable[[Principal, str], bool] | None = None,
    ) -> None:
        self.policy = policy
        self.revocations = revocations
        # Whether this caller's viewing session already has its view of this (de-identified)
        # slide audited: until then the fast path's locator leaves its tiles to the route,
        # which records the view (exchange.audit.views). None: nothing to record.
        self.view_seen = view_seen
        self.bearers: dict[bytes, Remembered] = {}
        self.cookies: dict[bytes, Remembered] = {}
        self._lock = threading.Lock()

    def recall(self, bearer: bytes | None, cookie: bytes | None, now: float) -> Remembered | None:
        """Who the header stands for, if it may still be answered from memory."""
        watch = self.revocations
        if now >= watch.fresh_until:
            return None
        known = self.bearers.get(bearer) if bearer is not None else None
        if bearer is None and cookie is not None:
            known = self.cookies.get(cookie)
        if known is None or known.until <= now or known.generation != watch.generation:
            return None
        return known

    def locator(self, principal: Principal) -> SlideLocator:
        return self.policy.locator_for(principal, self.view_seen)

    def remember(
        self,
        bearer: bytes | None,
        cookie: bytes | None,
        principal: Principal,
        locator: SlideLocator,
        generation: int,
        now: float,
    ) -> None:
        """Remembers the caller a header was just authenticated as (`generation`: the
        watch's, read before authenticating)."""
        entry = Remembered(
            now + min(self.policy.ttl_s, FAST_AUTH_S), principal, locator, generation
        )
        with self._lock:
            if bearer is not None:
                if principal.token_id is not None and len(bearer) <= MAX_BEARER_KEY:
                    self.bearers = _room_in(self.bearers, now)
                    self.bearers[bearer] = entry
            elif (
                cookie is not None
                and len(cookie) <= MAX_COOKIE_KEY
                and principal.session_id is not None
            ):
                self.cookies = _room_in(self.cookies, now)
                self.cookies[cookie] = entry


def _room_in(memory: dict[bytes, Remembered], now: float) -> dict[bytes, Remembered]:
    """`memory` with room for one more entry: at MAX_REMEMBERED, the stale entries go, and
    if more than half as many are still fresh, all go (a flood of fresh keys then costs
    re-authentications, never memory: at most entries x key size)."""
    if len(memory) < MAX_REMEMBERED:
        return memory
    fresh = {k: v for k, v in memory.items() if v.until > now}
    return fresh if len(fresh) < MAX_REMEMBERED // 2 else {}
