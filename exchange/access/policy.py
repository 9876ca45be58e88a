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
- cases (creating, editing, linking slides, the lab system feed): own centre, by
  pathologist, resident, technician and centre_admin; linking rules by centre_admin;
- grants: given and revoked on the own centre's slides and cases by pathologists and
  centre admins.
A forbidden or unknown slide id gets one and the same 404; a visible slide on which the
role may not act gets a 403.

Cost and revocation. Deciding needs the slide row and, for other centres, the grants: the
answer per (caller, id) is cached for DECISION_TTL_S seconds, so a tile costs a dictionary
lookup. Revoking a grant through this hub clears the cache at once; an expiry, or a
revocation made through another hub process sharing the database, takes effect within
DECISION_TTL_S. The tile fast path remembers callers (exchange.access.callers) only as long
as the routes' credential caches may answer. Tile responses are
`Cache-Control: private`: no shared cache keeps them, but a browser keeps what it already
fetched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, false, or_, select, union
from sqlalchemy.orm import InstrumentedAttribute, Session

from exchange.core.errors import ExchangeError
from exchange.core.ids import looks_like_id
from exchange.core.models import Case, Grant, SearchTerm, Slide
from exchange.core.principal import Principal, Role
from exchange.slides.catalogue import Catalogue
from exchange.slides.listing import Branch
from tiles.deid import View
from tiles.location import SlideLocation, SlideLocator

# How long a decision (caller, slide id) -> view is reused; see the module docstring.
DECISION_TTL_S = 5.0
FULL_VIEW_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN, Role.CENTRE_ADMIN})
# Every role that sees slides at all (hub_admin does not).
SLIDE_ROLES = FULL_VIEW_ROLES | {Role.TEACHER, Role.AI_ENGINEER}
ANNOTATE_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT})
OVERLAY_WRITE_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN})
UPLOAD_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.TECHNICIAN, Role.CENTRE_ADMIN})
GRANT_ROLES = frozenset({Role.PATHOLOGIST, Role.CENTRE_ADMIN})
# Cases and what links slides to them: those who handle the glass and its records.
CASE_ROLES = UPLOAD_ROLES

MAX_ID = 64


class Forbidden(ExchangeError):
    """The caller sees the resource but its role may not do this: 403."""

    http_status = 403


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


def is_live(grant: Grant, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    if grant.revoked_at is not None:
        return False
    return grant.expires_at is None or grant.expires_at > now


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

    def __init__(self, catalogue: Catalogue, ttl_s: float = DECISION_TTL_S) -> None:
        self.catalogue = catalogue
        self.ttl_s = ttl_s
        self._decisions: dict[tuple[str, str], tuple[float, SlideAccess | None]] = {}
        self._lock = threading.Lock()

    # -- deciding -----------------------------------------------------------------------

    def access(self, principal: Principal, any_id: str) -> SlideAccess | None:
        """What `principal` may see of the slide `any_id` names (None: 404)."""
        if not any_id or len(any_id) > MAX_ID:
            return None
        if principal.only_slide is not None and any_id != principal.only_slide:
            return None  # a job's capability: its one slide address
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

    # -- lists: the same rules as SQL conditions ----------------------------------------
    # A worklist page asks the database for the visible rows it shows, never for all of a
    # caller's slides: conditions on the listed table (exchange.slides.listing) that the
    # database evaluates with its indexes. Grants are few per caller: their ids are a
    # subquery, not rows loaded here.

    def _live_received(
        self, principal: Principal, column: InstrumentedAttribute[str | None]
    ) -> Select[tuple[str | None]]:
        now = datetime.now(UTC)
        return select(column).where(  # type: ignore[return-value]
            column.is_not(None),
            _received(principal),
            Grant.revoked_at.is_(None),
            or_(Grant.expires_at.is_(None), Grant.expires_at > now),
        )

    def _terms(self, principal: Principal) -> ColumnElement[bool]:
        """The search terms of the caller's own centre they may match: private ones (file
        names) only with the full view."""
        own = SearchTerm.centre == principal.centre
        if home_view(principal) is View.FULL:
            return own
        return and_(own, SearchTerm.public.is_(True))

    def slide_branches(self, principal: Principal, *, shared_only: bool = False) -> list[Branch]:
        """What the caller may list of slides: their centre's (unless `shared_only`), and
        other centres' shared with them, on the slide or its case (public terms only)."""
        out: list[Branch] = []
        if home_view(principal) is not None and not shared_only:
            out.append(Branch(Slide.centre == principal.centre, self._terms(principal)))
        if principal.has(*SLIDE_ROLES):
            cases = self._live_received(principal, Grant.case_id)
            # One id list (granted slides, and the slides of granted cases), not an OR of
            # two: the database then looks the few ids up by key instead of scanning every
            # slide of the other centres.
            shared: CompoundSelect[tuple[str | None]] = union(
                self._live_received(principal, Grant.slide_id),
                select(Slide.id).where(Slide.case_id.in_(cases)),
            )
            out.append(
                Branch(
                    and_(Slide.centre != principal.centre, Slide.id.in_(shared)),
                    and_(
                        SearchTerm.public.is_(True),
                        SearchTerm.centre != principal.centre,
                        or_(
                            SearchTerm.slide_id.in_(shared),
                            and_(SearchTerm.slide_id.is_(None), SearchTerm.case_id.in_(cases)),
                        ),
                    ),
                )
            )
        return out

    def case_branches(self, principal: Principal, *, shared_only: bool = False) -> list[Branch]:
        """What the caller may list of cases: their centre's, and those shared with them
        whole (a slide shared alone is listed among the shared slides, not its case)."""
        out: list[Branch] = []
        if home_view(principal) is not None and not shared_only:
            out.append(Branch(Case.centre == principal.centre, self._terms(principal)))
        if principal.has(*SLIDE_ROLES):
            cases = self._live_received(principal, Grant.case_id)
            out.append(
                Branch(
                    and_(Case.centre != principal.centre, Case.id.in_(cases)),
                    and_(
                        SearchTerm.public.is_(True),
                        SearchTerm.centre != principal.centre,
                        SearchTerm.case_id.in_(cases),
                    ),
                )
            )
        return out

    def slide_rows(self, principal: Principal) -> ColumnElement[bool]:
        """SQL condition: a slide row the caller may see."""
        branches = self.slide_branches(principal)
        return or_(*(b.rows for b in branches)) if branches else false()

    def case_access(
        self, session: Session, principal: Principal, any_id: str
    ) -> tuple[Case, View] | None:
        """The case `any_id` names as the caller may see it (None: 404): by its id, the
        full view of an own centre's case; by its opaque id, the de-identified view (a
        teacher's at home, or another centre's through a grant on the case)."""
        if not looks_like_id(any_id):
            return None
        home = home_view(principal)
        case = session.get(Case, any_id)
        if case is not None:
            if case.centre == principal.centre and home is View.FULL:
                return case, View.FULL
            return None
        case = session.scalars(select(Case).where(Case.public_id == any_id)).first()
        if case is None:
            return None
        if case.centre == principal.centre:
            return (case, View.DEIDENTIFIED) if home is not None else None
        shared = self.case_branches(principal, shared_only=True)
        if (
            not shared
            or session.scalar(select(Case.id).where(Case.id == case.id, shared[0].rows)) is None
        ):
            return None
        return case, View.DEIDENTIFIED

    def view_of(self, principal: Principal, slide: Slide) -> View:
        """The view a listed slide (within slide_scope) is shown in."""
        if slide.centre == principal.centre:
            return home_view(principal) or View.DEIDENTIFIED
        return View.DEIDENTIFIED

    # -- actions ------------------------------------------------------------------------

    def may_upload(self, principal: Principal, centre: str) -> None:
        self.catalogue.db.check_centre(centre)  # an unknown centre is a 400, not a 403
        if centre != principal.centre or not principal.has(*UPLOAD_ROLES):
            raise Forbidden(f"you may not add slides to centre {centre!r}")

    def may_edit_cases(self, principal: Principal) -> None:
        if not principal.has(*CASE_ROLES):
            raise Forbidden("your role may not edit cases (pathologists, technicians...)")

    def may_place(self, session: Session, principal: Principal, case: Case | None) -> None:
        """Putting a slide into a case that is shared shares the slide: only those who may
        share do it."""
        self.may_edit_cases(principal)
        if case is None:
            return
        now = datetime.now(UTC)
        shared = session.scalar(
            select(Grant.id).where(
                Grant.case_id == case.id,
                Grant.revoked_at.is_(None),
                or_(Grant.expires_at.is_(None), Grant.expires_at > now),
            )
        )
        if shared is not None and not principal.has(*GRANT_ROLES):
            raise Forbidden("that case is shared: only pathologists and centre admins add to it")

    def may_set_rules(self, principal: Principal, centre: str) -> None:
        self.catalogue.db.check_centre(centre)
        if centre != principal.centre or not principal.has(Role.CENTRE_ADMIN):
            raise Forbidden(f"only centre {centre!r}'s admins set its linking rules")

    def may_grant(self, principal: Principal) -> None:
        if not principal.has(*GRANT_ROLES):
            raise Forbidden("only pathologists and centre admins share slides")

    # -- the tile layer's view of it ----------------------------------------------------

    def locator_for(
        self, principal: Principal, view_seen: Callable[[Principal, str], bool] | None = None
    ) -> SlideLocator:
        """The slides `principal` may see, as the tile layer looks them up; with
        `view_seen` (the fast path's), see CallerLocator."""
        return CallerLocator(self, principal, view_seen)


class CallerLocator:
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
