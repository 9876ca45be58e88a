"""Who may see and do what: the one place where access rules are decided.

Views. A slide has two: the full view (addressed by its id: label, macro, vendor metadata,
file name, annotations, overlays) and the de-identified view (addressed by its opaque
`Slide.public_id`: pixels and allow-listed metadata only, see tiles.deid). Which id a
request names decides the view; the policy decides whether that caller may use that id.

Own centre (the slide's `centre` is the caller's):
- pathologist, resident, technician, centre_admin: the full view (they work on the glass
  and need the label to match it to the patient);
- teacher, ai_engineer: the de-identified view even at home: teaching sets and training
  data need pixels, not identities (their real-id requests answer 404, like an unknown id).

Another centre: a slide is visible only through a live grant (not revoked, not expired)
on the slide or on its case, given to the caller's centre or to the caller, and then only
its de-identified view, by its opaque id; the real id stays a 404.

hub_admin administers the hub (centres, users, tokens), not patient data: no slide is
visible to it, unless it is also given a clinical role.

Actions beyond viewing (on a slide the caller sees; otherwise 404 first):
- annotations: read on the full view; written by pathologists and residents;
- overlays: read on the full view; written (feature sets, deletion) by pathologists,
  residents and technicians (GPU workers' service accounts get the technician role);
- uploads and ingest: into the caller's own centre, by pathologist, resident, technician
  and centre_admin;
- grants: given and revoked on the own centre's slides and cases by pathologists and
  centre admins.
A forbidden or unknown slide id gets one and the same 404; a visible slide on which the
role may not act gets a 403.

Cost and revocation. Deciding needs the slide row and, for other centres, the grants: the
answer per (caller, id) is cached for DECISION_TTL_S seconds, so a tile costs a dictionary
lookup. Revoking a grant through this hub clears the cache at once; an expiry, or a
revocation made through another hub process sharing the database, takes effect within
DECISION_TTL_S. The tile fast path authenticates a bearer header or session cookie once
per FAST_AUTH_S (then authorising a cached tile costs about a microsecond of CPU,
bench/auth_overhead.py), and remembers the caller only while the hub's revocation watch
(exchange.identity.RevocationWatch) is fresh and has forgotten nothing since: logging out
or revoking through this hub stops it at once; a token or session revoked, or a user
disabled, by any process within exchange.identity.REVOCATION_POLL_S, as on the routes
(the memory adds no delay of its own). Tile responses are
`Cache-Control: private`: no shared cache keeps them, but a browser keeps what it already
fetched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session
from starlette.types import Scope

from exchange.auth import CurrentUser, NotAuthenticated, authenticate
from exchange.catalogue import Catalogue
from exchange.errors import ExchangeError
from exchange.identity import REVOCATION_POLL_S, RevocationWatch
from exchange.models import Grant, Slide, Upload
from exchange.principal import Principal, Role
from exchange.uploads import UploadNotFound
from tiles.deid import View
from tiles.errors import SlideNotFound
from tiles.location import SlideLocation, SlideLocator

# How long a decision (caller, slide id) -> view is reused; see the module docstring.
DECISION_TTL_S = 5.0
# How long the tile fast path reuses a bearer header's or a session cookie's caller at most
# (a session's expiry shows within it); revocations stop it sooner (RevocationWatch).
FAST_AUTH_S = REVOCATION_POLL_S

FULL_VIEW_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN, Role.CENTRE_ADMIN})
# Every role that sees slides at all (hub_admin does not).
SLIDE_ROLES = FULL_VIEW_ROLES | {Role.TEACHER, Role.AI_ENGINEER}
ANNOTATE_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT})
OVERLAY_WRITE_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN})
UPLOAD_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN, Role.CENTRE_ADMIN})
GRANT_ROLES = frozenset({Role.PATHOLOGIST, Role.CENTRE_ADMIN})

_MAX_ID = 64
# The fast path's memories of callers: at most this many entries each, and headers longer
# than these are authenticated on every request instead (a browser's cookies for the hub
# are about 60 bytes, a bearer header about 60): at most ~18 MiB of keys in all.
_MAX_REMEMBERED = 4096
_MAX_COOKIE_KEY = 4096
_MAX_BEARER_KEY = 512


class Forbidden(ExchangeError):
    """The caller sees the resource but its role may not do this: 403."""


@dataclass(frozen=True)
class SlideAccess:
    """A slide as one caller may see it: the row, the view, and the id it is addressed by."""

    slide: Slide
    view: View

    @property
    def full(self) -> bool:
        return self.view is View.FULL

    @property
    def address(self) -> str:
        return self.slide.id if self.full else (self.slide.public_id or "")


def aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back: they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_live(grant: Grant, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    if grant.revoked_at is not None:
        return False
    return grant.expires_at is None or aware(grant.expires_at) > now


def _received(principal: Principal) -> ColumnElement[bool]:
    """SQL condition: a grant given to the caller or to the caller's centre."""
    return or_(Grant.grantee_centre == principal.centre, Grant.grantee_user_id == principal.user_id)


def home_view(principal: Principal) -> View | None:
    """The view a caller has of their own centre's slides (None: none at all)."""
    if principal.has(*FULL_VIEW_ROLES):
        return View.FULL
    if principal.has(*SLIDE_ROLES):
        return View.DEIDENTIFIED
    return None


class Policy:
    """The access rules over one catalogue, with a short-lived per-caller decision cache."""

    def __init__(
        self,
        catalogue: Catalogue,
        ttl_s: float = DECISION_TTL_S,
        *,
        view_seen: Callable[[Principal, str], bool] | None = None,
        revocations: RevocationWatch | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.ttl_s = ttl_s
        # The credential caches' watch: the fast path remembers a caller only while it is
        # fresh and unchanged. None: the fast path remembers no caller.
        self.revocations = revocations
        # Whether this caller's viewing session already has its view of this (de-identified)
        # slide audited (exchange.audit_hooks): until then the fast path leaves its tiles to
        # the route, which records the view. None: nothing to record.
        self.view_seen = view_seen
        self._decisions: dict[tuple[str, str], tuple[float, SlideAccess | None]] = {}
        # The fast path's authentication, per raw header (Authorization; or Cookie, without
        # Authorization) -> (expiry, caller, locator, the watch's generation when it was
        # authenticated).
        self._bearers: dict[bytes, tuple[float, Principal, SlideLocator, int]] = {}
        self._cookies: dict[bytes, tuple[float, Principal, SlideLocator, int]] = {}
        self._lock = threading.Lock()

    # -- deciding -----------------------------------------------------------------------

    def access(self, principal: Principal, any_id: str) -> SlideAccess | None:
        """What `principal` may see of the slide `any_id` names (None: 404)."""
        if not any_id or len(any_id) > _MAX_ID:
            return None
        key = (principal.user_id, any_id)
        now = time.monotonic()
        cached = self._decisions.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        decision = self._decide(principal, any_id)
        with self._lock:
            if len(self._decisions) > 100_000:  # bounded: stale entries go first
                self._decisions = {k: v for k, v in self._decisions.items() if v[0] > now}
            self._decisions[key] = (now + self.ttl_s, decision)
        return decision

    def _decide(self, principal: Principal, any_id: str) -> SlideAccess | None:
        found = self.catalogue.resolve(any_id)
        if found is None:
            return None
        slide, addressed = found
        if slide.centre == principal.centre:
            home = home_view(principal)
            if home is None or (addressed is View.FULL and home is not View.FULL):
                return None
            return SlideAccess(slide, addressed)
        if addressed is View.FULL or not principal.has(*SLIDE_ROLES):
            return None
        with self.catalogue.session() as session:
            if not self._granted(session, principal, slide):
                return None
        return SlideAccess(slide, View.DEIDENTIFIED)

    def _granted(self, session: Session, principal: Principal, slide: Slide) -> bool:
        on = Grant.slide_id == slide.id
        if slide.case_id is not None:
            on = or_(on, Grant.case_id == slide.case_id)
        grants = session.scalars(
            select(Grant).where(on, _received(principal), Grant.revoked_at.is_(None))
        )
        now = datetime.now(UTC)
        return any(is_live(g, now) for g in grants)

    def forget(self) -> None:
        """Drops every cached decision: called when a grant is revoked or changed."""
        with self._lock:
            self._decisions = {}

    def visible(self, principal: Principal) -> list[SlideAccess]:
        """Every slide the caller may see, as they may see it (the slide list)."""
        out: list[SlideAccess] = []
        home = home_view(principal)
        with self.catalogue.session() as session:
            if home is not None:
                own = session.scalars(
                    select(Slide)
                    .where(Slide.centre == principal.centre)
                    .order_by(Slide.created_at, Slide.id)
                )
                out += [SlideAccess(s, home) for s in own]
            if principal.has(*SLIDE_ROLES):
                out += [SlideAccess(s, View.DEIDENTIFIED) for s in self._shared(session, principal)]
        return out

    def _shared(self, session: Session, principal: Principal) -> Sequence[Slide]:
        grants = [
            g
            for g in session.scalars(
                select(Grant).where(_received(principal), Grant.revoked_at.is_(None))
            )
            if is_live(g)
        ]
        slide_ids = {g.slide_id for g in grants if g.slide_id}
        case_ids = {g.case_id for g in grants if g.case_id}
        if not slide_ids and not case_ids:
            return []
        return session.scalars(
            select(Slide)
            .where(
                or_(Slide.id.in_(slide_ids), Slide.case_id.in_(case_ids)),
                Slide.centre != principal.centre,
            )
            .order_by(Slide.created_at, Slide.id)
        ).all()

    # -- actions ------------------------------------------------------------------------

    def may_upload(self, principal: Principal, centre: str) -> None:
        self.catalogue.check_centre(centre)  # an unknown centre is a 400, not a 403
        if centre != principal.centre or not principal.has(*UPLOAD_ROLES):
            raise Forbidden(f"you may not add slides to centre {centre!r}")

    def may_grant(self, principal: Principal) -> None:
        if not principal.has(*GRANT_ROLES):
            raise Forbidden("only pathologists and centre admins share slides")

    # -- the tile layer's view of it ----------------------------------------------------

    def locator_for(self, principal: Principal) -> SlideLocator:
        return _CallerLocator(self, principal)

    def request_locator(self, request: Request) -> SlideLocator:
        """The tile routes' locator for this request (401 without a caller)."""
        principal = authenticate(request)
        if principal is None:
            raise NotAuthenticated("log in, or send an API token as 'Authorization: Bearer …'")
        return self.locator_for(principal)

    def scope_locator(self, scope: Scope) -> SlideLocator | None:
        """The fast path's locator for a raw ASGI request; None without a caller (the
        route then answers 401). A bearer header or session cookie authenticated in the
        last FAST_AUTH_S seconds is not authenticated again while the revocation watch is
        fresh and has forgotten no credential since (a logout, a revocation seen by this
        process): a cached tile then costs a few dictionary lookups, and stops being served
        to a revoked credential exactly when the routes stop answering it.

        Invariant: a remembered key is the whole credential authentication read, so the
        same key always stands for the same caller. Hence only a request with one
        Authorization header (its bearer token) or, without any, one Cookie header (its
        session cookie) is remembered or answered from memory: exchange.auth.authenticate
        reads the first Authorization header but merges all Cookie headers (HTTP/2 sends
        each cookie as a header of its own), so with several the caller depends on more
        than one header. Long headers are not remembered either (_MAX_COOKIE_KEY,
        _MAX_BEARER_KEY): junk cookies beside a valid session would make each request a
        new entry."""
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
        watch = self.revocations
        if not several and watch is not None and now < watch.fresh_until:
            if bearer is not None:
                known = self._bearers.get(bearer)
            elif cookie is not None:
                known = self._cookies.get(cookie)
            else:
                known = None
            if known is not None and known[0] > now and known[3] == watch.generation:
                # Where exchange.auth.authenticate looks first, for later readers.
                scope.setdefault("state", {})["principal"] = known[1]
                return known[2]
        # Read before authenticating: a forgetting from now on changes it.
        generation = watch.generation if watch is not None else 0
        principal = authenticate(Request(scope))
        if principal is None:
            return None
        locator = _CallerLocator(self, principal, self.view_seen)
        if several or watch is None:
            return locator
        until = now + min(self.ttl_s, FAST_AUTH_S)
        with self._lock:
            if bearer is not None:
                if principal.token_id is not None and len(bearer) <= _MAX_BEARER_KEY:
                    self._bearers = _room_in(self._bearers, now)
                    self._bearers[bearer] = (until, principal, locator, generation)
            elif (
                cookie is not None
                and len(cookie) <= _MAX_COOKIE_KEY
                and principal.session_id is not None
            ):
                self._cookies = _room_in(self._cookies, now)
                self._cookies[cookie] = (until, principal, locator, generation)
        return locator


# An entry: (expiry on the monotonic clock, ...).
_Remembered = TypeVar("_Remembered", bound=tuple[Any, ...])


def _room_in(memory: dict[bytes, _Remembered], now: float) -> dict[bytes, _Remembered]:
    """`memory` with room for one more entry: at _MAX_REMEMBERED, the stale entries go, and
    if more than half as many are still fresh, all go (a flood of fresh keys then costs
    re-authentications, never memory: at most entries x key size)."""
    if len(memory) < _MAX_REMEMBERED:
        return memory
    fresh = {k: v for k, v in memory.items() if v[0] > now}
    return fresh if len(fresh) < _MAX_REMEMBERED // 2 else {}


class _CallerLocator:
    """tiles.location.SlideLocator for one caller: slides they may not see are unknown.
    With `view_seen` (the fast path's), a de-identified view not yet audited in this
    viewing session is not located either: its tile goes to the route, which records it."""

    __slots__ = ("_access", "_catalogue", "_principal", "_view_seen")

    def __init__(
        self,
        policy: Policy,
        principal: Principal,
        view_seen: Callable[[Principal, str], bool] | None = None,
    ) -> None:
        self._access = policy.access
        self._catalogue = policy.catalogue
        self._principal = principal
        self._view_seen = view_seen

    def locate(self, slide_id: str) -> SlideLocation | None:
        access = self._access(self._principal, slide_id)
        if access is None:
            return None
        if access.view is View.FULL:
            # Only a slide's own id gives its full view: the catalogue's location as it is.
            return self._catalogue.locate(slide_id)
        if self._view_seen is not None and not self._view_seen(self._principal, access.slide.id):
            return None
        loc = self._catalogue.locate(access.address)
        if loc is not None and loc.view is not access.view:
            loc = replace(loc, view=access.view)
        return loc


# -- FastAPI dependencies ---------------------------------------------------------------


def get_policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy


PolicyDep = Annotated[Policy, Depends(get_policy)]


def slide_access(
    request: Request, slide_id: str, principal: CurrentUser, policy: PolicyDep
) -> SlideAccess:
    """The slide of the path, as the caller may see it; 404 if they may not."""
    access = policy.access(principal, slide_id)
    if access is None:
        raise SlideNotFound(f"no slide {slide_id!r}")
    # The error handler reads it: errors on a de-identified view get generic messages.
    request.state.slide_view = access.view
    return access


def home_slide(access: Annotated[SlideAccess, Depends(slide_access)]) -> SlideAccess:
    """The slide on its full view (annotations, overlays): other views answer 404."""
    if not access.full:
        raise SlideNotFound(f"no slide {access.address!r}")
    return access


def _role_check(roles: frozenset[Role], what: str) -> Callable[..., SlideAccess]:
    def check(
        principal: CurrentUser, access: Annotated[SlideAccess, Depends(home_slide)]
    ) -> SlideAccess:
        if not principal.has(*roles):
            raise Forbidden(f"your role may not {what}")
        return access

    return check


annotatable_slide = _role_check(ANNOTATE_ROLES, "change annotations")
overlay_writable_slide = _role_check(OVERLAY_WRITE_ROLES, "change overlays")

VisibleSlide = Annotated[SlideAccess, Depends(slide_access)]
HomeSlide = Annotated[SlideAccess, Depends(home_slide)]


def own_upload(upload_id: str, principal: CurrentUser, policy: PolicyDep) -> str:
    """An upload of the caller's centre, by a role that uploads; else the unknown-id 404."""
    with policy.catalogue.session() as session:
        upload = session.get(Upload, upload_id) if len(upload_id) <= _MAX_ID else None
    if upload is None or upload.centre != principal.centre or not principal.has(*UPLOAD_ROLES):
        raise UploadNotFound(f"no upload {upload_id!r}")
    return upload_id
