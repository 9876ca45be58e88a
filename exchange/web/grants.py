"""Sharing over HTTP: grants on slides and cases.

POST   /api/grants              {"slide_id" | "case_id", "centre" | "user", "purpose",
                                 "expires_at"?, "legal_basis"?}  -> the grant (201)
DELETE /api/grants/{grant_id}   revokes it (204)
GET    /api/grants              what the caller's centre gave and received
(Cases, and attaching slides to them: exchange.web.cases.)

Rules (exchange.access.policy): pathologists and centre admins share their own centre's slides
and cases, and revoke what their centre gave. A slide or case the caller may not share
answers the same 404 as an unknown one. Each grant and revocation writes an audit event in
the same transaction. A received grant names the slide only by its opaque id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from exchange.access import grants
from exchange.access.grants import GrantRequest
from exchange.access.policy import SLIDE_ROLES, is_live
from exchange.core.models import Grant, Slide, User
from exchange.core.principal import Principal, Purpose
from exchange.web.auth import CurrentUser
from exchange.web.deps import CatalogueDep, PolicyDep

router = APIRouter(prefix="/api", tags=["sharing"])


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
        created_at=grant.created_at,
        expires_at=grant.expires_at,
        revoked_at=grant.revoked_at,
        live=is_live(grant),
        direction="given" if given else "received",
    )


@router.post("/grants", status_code=201)
def create_grant(
    body: GrantIn, principal: CurrentUser, policy: PolicyDep, catalogue: CatalogueDep
) -> GrantOut:
    request = GrantRequest(
        purpose=body.purpose,
        slide_id=body.slide_id,
        case_id=body.case_id,
        centre=body.centre,
        username=body.user,
        expires_at=body.expires_at,
        legal_basis=body.legal_basis,
    )
    with catalogue.session() as session, session.begin():
        grant, grantee_user = grants.create_grant(session, policy, principal, request)
    # A new grant widens access: decisions cached as "no" must not outlive it.
    policy.forget()
    users = {grantee_user.id: grantee_user.username} if grantee_user else {}
    return _out(grant, principal, {}, users)


@router.delete("/grants/{grant_id}", status_code=204)
def revoke_grant(
    grant_id: str, principal: CurrentUser, policy: PolicyDep, catalogue: CatalogueDep
) -> Response:
    grants.check_ids(grant_id)
    with catalogue.session() as session, session.begin():
        grants.revoke_grant(session, policy, principal, grant_id)
    # Revocation stops access at once on this hub (see exchange.access.policy).
    policy.forget()
    return Response(status_code=204)


@router.get("/grants")
def list_grants(principal: CurrentUser, catalogue: CatalogueDep) -> list[GrantOut]:
    if not principal.has(*SLIDE_ROLES):
        return []  # hub_admin: administration, not who shares which slide
    with catalogue.session() as session:
        found = grants.grants_of(session, principal)
        slide_ids = {g.slide_id for g in found if g.slide_id}
        public_ids = {
            s.id: s.public_id or ""
            for s in session.scalars(select(Slide).where(Slide.id.in_(slide_ids)))
        }
        user_ids = {g.grantee_user_id for g in found if g.grantee_user_id}
        users = {
            u.id: u.username for u in session.scalars(select(User).where(User.id.in_(user_ids)))
        }
    return [_out(g, principal, public_ids, users) for g in found]
