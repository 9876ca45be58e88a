"""Grants: a centre shares one of its slides or cases with another centre, or with one
user of another centre, for a purpose (exchange.core.principal.Purpose).

The functions that write take the caller's session and write inside its transaction, with
their audit event: a feature that shares as part of something larger (a second-opinion
request: its grants and its notification) commits all of it or nothing. After the commit,
the caller drops the policy's cached decisions (`Policy.forget`): a grant widens access, a
revocation narrows it, and neither may wait for a cache to expire.

Rules (exchange.access.policy): pathologists and centre admins share their own centre's
slides and cases, and revoke what their centre gave. A slide, case or grant the caller may
not touch is "not found", as an unknown one is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from exchange.access.policy import Policy
from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.errors import ExchangeError
from exchange.core.ids import looks_like_id, new_id
from exchange.core.models import Case, Centre, Grant, Slide, User
from exchange.core.principal import Principal, Purpose


class InvalidGrant(ExchangeError):
    """A grant or case request that cannot be done as asked: 400."""

    http_status = 400


class GrantNotFound(ExchangeError):
    """No such grant, case or slide for this caller: 404."""

    http_status = 404


@dataclass(frozen=True)
class GrantRequest:
    """What to share (a slide or a case), with whom (a centre or a user) and why."""

    purpose: Purpose
    slide_id: str | None = None
    case_id: str | None = None
    centre: str | None = None
    username: str | None = None
    expires_at: datetime | None = None
    legal_basis: str = ""


def check_ids(*ids: str | None) -> None:
    """Ids that cannot exist are "not found" before any query."""
    for value in ids:
        if value is not None and not looks_like_id(value):
            raise GrantNotFound(f"no such slide, case or grant {value!r}")


def create_grant(
    session: Session, policy: Policy, principal: Principal, request: GrantRequest
) -> tuple[Grant, User | None]:
    """The grant (and the user it names, if any), added to the session with its audit
    event. Raises InvalidGrant, GrantNotFound or Forbidden; writes nothing then."""
    if (request.slide_id is None) == (request.case_id is None):
        raise InvalidGrant("name exactly one of 'slide_id' and 'case_id'")
    if (request.centre is None) == (request.username is None):
        raise InvalidGrant("name exactly one of 'centre' and 'user'")
    expires_at = request.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidGrant("'expires_at' needs a time zone, e.g. 2027-01-31T18:00:00Z")
        if expires_at <= datetime.now(UTC):
            raise InvalidGrant("'expires_at' is in the past")
    check_ids(request.slide_id, request.case_id)
    policy.may_grant(principal)
    # What is shared: a slide or case of the caller's own centre, else "not found".
    if request.slide_id is not None:
        slide = session.get(Slide, request.slide_id)
        if slide is None or slide.centre != principal.centre:
            raise GrantNotFound(f"no slide {request.slide_id!r}")
    else:
        case = session.get(Case, request.case_id)
        if case is None or case.centre != principal.centre:
            raise GrantNotFound(f"no case {request.case_id!r}")
    grantee_user: User | None = None
    if request.centre is not None:
        if session.get(Centre, request.centre) is None:
            raise InvalidGrant(f"unknown centre {request.centre!r}")
        if request.centre == principal.centre:
            raise InvalidGrant("a centre sees its own slides already")
    else:
        grantee_user = session.scalar(
            select(User).where(User.username == (request.username or "").strip().lower())
        )
        if grantee_user is None or not grantee_user.active:
            raise InvalidGrant(f"unknown user {request.username!r}")
        if grantee_user.centre == principal.centre:
            raise InvalidGrant("a user sees their own centre's slides already")
    grant = add_grant(
        session,
        principal,
        grantor_id=principal.user_id,
        grantor_centre=principal.centre,
        purpose=request.purpose,
        slide_id=request.slide_id,
        case_id=request.case_id,
        grantee_centre=request.centre,
        grantee_user_id=grantee_user.id if grantee_user else None,
        expires_at=expires_at,
        legal_basis=request.legal_basis,
    )
    return grant, grantee_user


def add_grant(
    session: Session,
    actor: Principal,
    *,
    grantor_id: str,
    grantor_centre: str,
    purpose: Purpose,
    slide_id: str | None = None,
    case_id: str | None = None,
    grantee_centre: str | None = None,
    grantee_user_id: str | None = None,
    expires_at: datetime | None = None,
    legal_basis: str = "",
) -> Grant:
    """The grant row and its audit event, without the checks of `create_grant`: for a
    feature that has made its own (a second-opinion request grants its addressee on its
    requester's behalf, whoever moves it along)."""
    grant = Grant(
        id=new_id(),
        slide_id=slide_id,
        case_id=case_id,
        grantor_id=grantor_id,
        grantor_centre=grantor_centre,
        grantee_centre=grantee_centre,
        grantee_user_id=grantee_user_id,
        purpose=purpose.value,
        legal_basis=legal_basis,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session,
        AuditAction.GRANT,
        actor=actor,
        target_type="slide" if slide_id else "case",
        target_id=slide_id or case_id or "",
        detail={
            "grant_id": grant.id,
            "grantee_centre": grantee_centre,
            "grantee_user_id": grantee_user_id,
            "purpose": grant.purpose,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return grant


def end_grant(session: Session, actor: Principal, grant: Grant) -> None:
    """Revokes the grant with its audit event (once: ending it again changes nothing)."""
    if grant.revoked_at is None:
        grant.revoked_at = datetime.now(UTC)
        audit.record(
            session,
            AuditAction.REVOKE,
            actor=actor,
            target_type="slide" if grant.slide_id else "case",
            target_id=grant.slide_id or grant.case_id or "",
            detail={"grant_id": grant.id},
        )


def revoke_grant(session: Session, policy: Policy, principal: Principal, grant_id: str) -> Grant:
    """Ends the grant (once: revoking again changes nothing), with its audit event."""
    grant = session.get(Grant, grant_id)
    # Only the giving centre revokes; anyone else is told the grant does not exist.
    if grant is None or grant.grantor_centre != principal.centre:
        raise GrantNotFound(f"no grant {grant_id!r}")
    policy.may_grant(principal)
    end_grant(session, principal, grant)
    return grant


def grants_of(session: Session, principal: Principal) -> Sequence[Grant]:
    """What the caller's centre gave, and what it or the caller received, oldest first."""
    return session.scalars(
        select(Grant)
        .where(
            or_(
                Grant.grantor_centre == principal.centre,
                Grant.grantee_centre == principal.centre,
                Grant.grantee_user_id == principal.user_id,
            )
        )
        .order_by(Grant.created_at, Grant.id)
    ).all()
