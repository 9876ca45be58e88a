"""Sharing over HTTP: grants, and the few case routes that case grants need.

POST   /api/grants              {"slide_id" | "case_id", "centre" | "user", "purpose",
                                 "expires_at"?, "legal_basis"?}  -> the grant (201)
DELETE /api/grants/{grant_id}   revokes it (204)
GET    /api/grants              what the caller's centre gave and received
POST   /api/cases               {"reference", "organ"?, "specimen_type"?} -> the case (201)
PUT    /api/cases/{case_id}/slides/{slide_id}   attaches a slide of the centre to the case

Rules (exchange.access.policy): pathologists and centre admins share their own centre's slides
and cases, and revoke what their centre gave. A slide or case the caller may not share
answers the same 404 as an unknown one. Each grant and revocation writes an audit event in
the same transaction. A received grant names the slide only by its opaque id.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from exchange.access.policy import SLIDE_ROLES, aware, is_live
from exchange.audit import chain as audit
from exchange.core.errors import ExchangeError
from exchange.core.models import Case, Centre, Grant, Slide, User
from exchange.core.principal import Principal, Purpose
from exchange.slides.catalogue import new_slide_id
from exchange.web.auth import CurrentUser
from exchange.web.deps import CatalogueDep, PolicyDep

router = APIRouter(prefix="/api", tags=["sharing"])

_ID = re.compile(r"[a-z0-9]{1,64}")


class InvalidGrant(ExchangeError):
    """A grant or case request that cannot be done as asked: 400."""

    http_status = 400


class GrantNotFound(ExchangeError):
    """No such grant, case or slide for this caller: 404."""

    http_status = 404


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slide_id: str | None = Field(default=None, max_length=64)
    case_id: str | None = Field(default=None, max_length=64)
    centre: str | None = Field(default=None, max_length=32)
    user: str | None = Field(default=None, max_length=150, description="a username")
    purpose: Purpose
    expires_at: datetime | None = None
    legal_basis: str = Field(default="", max_length=500)


class GrantOut(BaseModel):
    id: str
    # Given: the slide's id; received: its opaque id (the de-identified view's address).
    slide_id: str | None
    case_id: str | None
    grantor_centre: str
    grantee_centre: str | None
    grantee_user: str | None
    purpose: str
    legal_basis: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    live: bool
    direction: Literal["given", "received"]


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=100, description="pseudonymous reference")
    organ: str = Field(default="", max_length=100)
    specimen_type: str = Field(default="", max_length=100)


class CaseOut(BaseModel):
    id: str
    centre: str
    reference: str
    organ: str
    specimen_type: str


def _out(
    grant: Grant, caller: Principal, public_ids: dict[str, str], users: dict[str, str]
) -> GrantOut:
    given = grant.grantor_centre == caller.centre
    slide_id = grant.slide_id
    if slide_id is not None and not given:
        slide_id = public_ids.get(slide_id)
    return GrantOut(
        id=grant.id,
        slide_id=slide_id,
        case_id=grant.case_id if given else None,
        grantor_centre=grant.grantor_centre,
        grantee_centre=grant.grantee_centre,
        grantee_user=users.get(grant.grantee_user_id or ""),
        purpose=grant.purpose,
        legal_basis=grant.legal_basis,
        created_at=aware(grant.created_at),
        expires_at=aware(grant.expires_at) if grant.expires_at else None,
        revoked_at=aware(grant.revoked_at) if grant.revoked_at else None,
        live=is_live(grant),
        direction="given" if given else "received",
    )


def _check_ids(*ids: str | None) -> None:
    for value in ids:
        if value is not None and not _ID.fullmatch(value):
            raise GrantNotFound(f"no such slide or case {value!r}")


@router.post("/grants", status_code=201)
def create_grant(
    body: GrantIn, principal: CurrentUser, policy: PolicyDep, catalogue: CatalogueDep
) -> GrantOut:
    if (body.slide_id is None) == (body.case_id is None):
        raise InvalidGrant("name exactly one of 'slide_id' and 'case_id'")
    if (body.centre is None) == (body.user is None):
        raise InvalidGrant("name exactly one of 'centre' and 'user'")
    expires_at = body.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidGrant("'expires_at' needs a time zone, e.g. 2027-01-31T18:00:00Z")
        if expires_at <= datetime.now(UTC):
            raise InvalidGrant("'expires_at' is in the past")
    _check_ids(body.slide_id, body.case_id)
    policy.may_grant(principal)
    with catalogue.session() as session, session.begin():
        # What is shared: a slide or case of the caller's own centre, else "not found".
        if body.slide_id is not None:
            slide = session.get(Slide, body.slide_id)
            if slide is None or slide.centre != principal.centre:
                raise GrantNotFound(f"no slide {body.slide_id!r}")
        else:
            case = session.get(Case, body.case_id)
            if case is None or case.centre != principal.centre:
                raise GrantNotFound(f"no case {body.case_id!r}")
        grantee_user: User | None = None
        if body.centre is not None:
            if session.get(Centre, body.centre) is None:
                raise InvalidGrant(f"unknown centre {body.centre!r}")
            if body.centre == principal.centre:
                raise InvalidGrant("a centre sees its own slides already")
        else:
            grantee_user = session.scalar(
                select(User).where(User.username == (body.user or "").strip().lower())
            )
            if grantee_user is None or not grantee_user.active:
                raise InvalidGrant(f"unknown user {body.user!r}")
            if grantee_user.centre == principal.centre:
                raise InvalidGrant("a user sees their own centre's slides already")
        grant = Grant(
            id=new_slide_id(),
            slide_id=body.slide_id,
            case_id=body.case_id,
            grantor_id=principal.user_id,
            grantor_centre=principal.centre,
            grantee_centre=body.centre,
            grantee_user_id=grantee_user.id if grantee_user else None,
            purpose=body.purpose.value,
            legal_basis=body.legal_basis,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
        session.add(grant)
        session.flush()
        audit.record(
            session,
            "grant",
            actor=principal,
            target_type="slide" if body.slide_id else "case",
            target_id=body.slide_id or body.case_id or "",
            detail={
                "grant_id": grant.id,
                "grantee_centre": body.centre,
                "grantee_user_id": grant.grantee_user_id,
                "purpose": grant.purpose,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    users = {grantee_user.id: grantee_user.username} if grantee_user else {}
    # A new grant widens access: decisions cached as "no" must not outlive it.
    policy.forget()
    return _out(grant, principal, {}, users)


@router.delete("/grants/{grant_id}", status_code=204)
def revoke_grant(
    grant_id: str, principal: CurrentUser, policy: PolicyDep, catalogue: CatalogueDep
) -> Response:
    _check_ids(grant_id)
    with catalogue.session() as session, session.begin():
        grant = session.get(Grant, grant_id)
        # Only the giving centre revokes; anyone else is told the grant does not exist.
        if grant is None or grant.grantor_centre != principal.centre:
            raise GrantNotFound(f"no grant {grant_id!r}")
        policy.may_grant(principal)
        if grant.revoked_at is None:
            grant.revoked_at = datetime.now(UTC)
            audit.record(
                session,
                "revoke",
                actor=principal,
                target_type="slide" if grant.slide_id else "case",
                target_id=grant.slide_id or grant.case_id or "",
                detail={"grant_id": grant.id},
            )
    # Revocation stops access at once on this hub (see exchange.access.policy).
    policy.forget()
    return Response(status_code=204)


@router.get("/grants")
def list_grants(principal: CurrentUser, catalogue: CatalogueDep) -> list[GrantOut]:
    if not principal.has(*SLIDE_ROLES):
        return []  # hub_admin: administration, not who shares which slide
    with catalogue.session() as session:
        grants = session.scalars(
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
        slide_ids = {g.slide_id for g in grants if g.slide_id}
        public_ids = {
            s.id: s.public_id or ""
            for s in session.scalars(select(Slide).where(Slide.id.in_(slide_ids)))
        }
        user_ids = {g.grantee_user_id for g in grants if g.grantee_user_id}
        users = {
            u.id: u.username for u in session.scalars(select(User).where(User.id.in_(user_ids)))
        }
    return [_out(g, principal, public_ids, users) for g in grants]


# -- cases ------------------------------------------------------------------------------


def _case_writer(principal: CurrentUser, policy: PolicyDep) -> Principal:
    policy.may_grant(principal)
    return principal


CaseWriter = Annotated[Principal, Depends(_case_writer)]


@router.post("/cases", status_code=201)
def create_case(body: CaseIn, principal: CaseWriter, catalogue: CatalogueDep) -> CaseOut:
    case = Case(
        id=new_slide_id(),
        centre=principal.centre,
        reference=body.reference.strip(),
        organ=body.organ,
        specimen_type=body.specimen_type,
    )
    try:
        with catalogue.session() as session, session.begin():
            session.add(case)
    except IntegrityError:
        raise InvalidGrant(f"case {body.reference!r} exists already in your centre") from None
    return CaseOut(
        id=case.id,
        centre=case.centre,
        reference=case.reference,
        organ=case.organ,
        specimen_type=case.specimen_type,
    )


@router.put("/cases/{case_id}/slides/{slide_id}", status_code=204)
def attach_slide(
    case_id: str,
    slide_id: str,
    principal: CaseWriter,
    policy: PolicyDep,
    catalogue: CatalogueDep,
) -> Response:
    _check_ids(case_id, slide_id)
    with catalogue.session() as session, session.begin():
        case = session.get(Case, case_id)
        slide = session.get(Slide, slide_id)
        if case is None or case.centre != principal.centre:
            raise GrantNotFound(f"no case {case_id!r}")
        if slide is None or slide.centre != principal.centre:
            raise GrantNotFound(f"no slide {slide_id!r}")
        slide.case_id = case.id
    # The slide may now be shared through its case's grants.
    policy.forget()
    return Response(status_code=204)
