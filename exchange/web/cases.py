"""Cases over HTTP: the case-centric worklist, a case with its slides, editing, linking
slides, the centre's linking rules and the lab system's feed.

GET    /api/cases                      a page of cases with their slides (exchange.web.listing)
GET    /api/cases/{case_id}            one case, every slide (opaque id: de-identified view)
POST   /api/cases                      {"reference", "organ"?, "specimen_type"?,
                                        "received_on"?, "status"?} -> the case (201)
PATCH  /api/cases/{case_id}            the same fields, each optional
PUT    /api/cases/{case_id}/slides/{slide_id}   puts a slide of the centre into the case
PUT    /api/slides/{slide_id}/case     {"case_reference" | null, "part"?, "block"?, "level"?,
                                        "stain"?}: a slide placed by hand (new case if need be)
GET    /api/centres/{code}/rules       the centre's linking rules (exchange.slides.linking)
PUT    /api/centres/{code}/rules       {"barcode_rule", "file_name_rule"} (centre admins)
POST   /api/lis/records                {"records": [...]}: the lab system feed (slides.lis)

Writes are the own centre's, by pathologists, residents, technicians and centre admins
(exchange.access.policy), each audited in its transaction. An unknown or unseen case or
slide answers one and the same 404."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from exchange.access.policy import Policy, home_view
from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.models import Case, Centre, Slide
from exchange.core.principal import Principal
from exchange.core.statuses import CaseStatus, LinkSource
from exchange.slides import cases, linking, lis, listing
from exchange.slides.listing import CaseRow, Order
from exchange.web.auth import CurrentUser
from exchange.web.deps import PolicyDep
from exchange.web.hub import HubDep
from exchange.web.listing import ListQuery
from exchange.web.slides import SlideOut, summary
from tiles.deid import View

router = APIRouter(prefix="/api", tags=["cases"])


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=100, description="pseudonymous reference")
    organ: str = Field(default="", max_length=100)
    specimen_type: str = Field(default="", max_length=100)
    received_on: date | None = None
    status: CaseStatus | None = None


class CasePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str | None = Field(default=None, min_length=1, max_length=100)
    organ: str | None = Field(default=None, max_length=100)
    specimen_type: str | None = Field(default=None, max_length=100)
    received_on: date | None = None
    status: CaseStatus | None = None


class CaseOut(BaseModel):
    # The case's id on the full view, its opaque id on the de-identified one.
    id: str
    centre: str
    reference: str
    organ: str
    specimen_type: str
    # None on the de-identified view, which shows the year only.
    received_on: date | None
    received_year: int
    status: str
    view: View
    slide_count: int
    stains: list[str]
    # In block order; a case row of a list shows the first MAX_SLIDES_PER_CASE.
    slides: list[SlideOut]


class CasePageOut(BaseModel):
    items: list[CaseOut]
    total: int
    next_cursor: str | None


class PlacementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_reference: str | None = Field(max_length=100, description="null: unlink the slide")
    part: str | None = Field(default=None, max_length=20)
    block: str | None = Field(default=None, max_length=20)
    level: str | None = Field(default=None, max_length=20)
    stain: str | None = Field(default=None, max_length=100)


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    barcode_rule: str | None = Field(default=None, max_length=linking.MAX_RULE)
    file_name_rule: str | None = Field(default=None, max_length=linking.MAX_RULE)


class RulesOut(BaseModel):
    centre: str
    barcode_rule: str | None
    file_name_rule: str | None


class LisIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(max_length=lis.MAX_RECORDS)


class LisOut(BaseModel):
    cases: int
    slides_linked: int
    slides_expected: int


def _case_out(policy: Policy, principal: Principal, row: CaseRow) -> CaseOut:
    case = row.case
    full = case.centre == principal.centre and home_view(principal) is View.FULL
    view = View.FULL if full else View.DEIDENTIFIED
    return CaseOut(
        id=case.id if full else case.public_id or "",
        centre=case.centre,
        reference=case.reference,
        organ=case.organ,
        specimen_type=case.specimen_type,
        received_on=case.received_on if full else None,
        received_year=case.received_on.year,
        status=case.status,
        view=view,
        slide_count=row.slide_count,
        stains=row.stains,
        slides=[
            SlideOut(**summary(s, policy.view_of(principal, s), case))  # type: ignore[arg-type]
            for s in row.slides
        ],
    )


@router.get("/cases")
def list_cases(
    principal: CurrentUser,
    policy: PolicyDep,
    hub: HubDep,
    filters: Annotated[ListQuery, Query()],
    status: Annotated[CaseStatus | None, Query()] = None,
) -> CasePageOut:
    """A page of the cases the caller may see, each with its slides: their centre's, and
    those shared with them whole; newest received first unless `order=asc`."""
    with hub.db.session() as session:
        page = listing.list_cases(
            session,
            policy.case_branches(principal, shared_only=filters.shared),
            filters.filters(status=status),
            filters.page(default_order=Order.DESC),
            hub.cursors,
            lambda _ids: policy.slide_rows(principal),
        )
        items = [_case_out(policy, principal, row) for row in page.items]
    return CasePageOut(items=items, total=page.total, next_cursor=page.next_cursor)


def _seen_case(session: Session, policy: Policy, principal: Principal, case_id: str) -> Case:
    found = policy.case_access(session, principal, case_id)
    if found is None:
        raise cases.CaseNotFound(f"no case {case_id!r}")
    return found[0]


@router.get("/cases/{case_id}")
def case_detail(case_id: str, principal: CurrentUser, policy: PolicyDep, hub: HubDep) -> CaseOut:
    with hub.db.session() as session:
        case = _seen_case(session, policy, principal, case_id)
        row = listing.case_with_slides(session, case, policy.slide_rows(principal))
        return _case_out(policy, principal, row)


def _own_case(session: Session, policy: Policy, principal: Principal, case_id: str) -> Case:
    """A case the caller may edit: their centre's, seen in full (404 otherwise, 403 for a
    role that may not edit)."""
    found = policy.case_access(session, principal, case_id)
    if found is None or found[1] is not View.FULL:
        raise cases.CaseNotFound(f"no case {case_id!r}")
    policy.may_edit_cases(principal)
    return found[0]


def _fields(body: CaseIn | CasePatch) -> cases.CaseFields:
    return cases.CaseFields(
        organ=body.organ,
        specimen_type=body.specimen_type,
        received_on=body.received_on,
        status=body.status,
    )


@router.post("/cases", status_code=201)
def create_case(body: CaseIn, principal: CurrentUser, policy: PolicyDep, hub: HubDep) -> CaseOut:
    policy.may_edit_cases(principal)
    with hub.db.session() as session, session.begin():
        case = cases.create_case(session, principal.centre, body.reference, _fields(body))
        audit.record(
            session, AuditAction.CASE_CREATE, actor=principal, target_type="case", target_id=case.id
        )
        return _case_out(policy, principal, CaseRow(case))


@router.patch("/cases/{case_id}")
def update_case(
    case_id: str, body: CasePatch, principal: CurrentUser, policy: PolicyDep, hub: HubDep
) -> CaseOut:
    with hub.db.session() as session, session.begin():
        case = _own_case(session, policy, principal, case_id)
        if body.reference is not None:
            cases.rename_case(session, case, body.reference)
        cases.update_case(session, case, _fields(body))
        changed = sorted(body.model_dump(exclude_unset=True))
        audit.record(
            session,
            AuditAction.CASE_UPDATE,
            actor=principal,
            target_type="case",
            target_id=case.id,
            detail={"fields": changed},
        )
        row = listing.case_with_slides(session, case, policy.slide_rows(principal))
        return _case_out(policy, principal, row)


@router.put("/cases/{case_id}/slides/{slide_id}", status_code=204)
def attach_slide(
    case_id: str, slide_id: str, principal: CurrentUser, policy: PolicyDep, hub: HubDep
) -> Response:
    with hub.db.session() as session, session.begin():
        case = _own_case(session, policy, principal, case_id)
        policy.may_place(session, principal, case)
        cases.attach_slide(session, principal.centre, case.id, slide_id)
        audit.record(
            session,
            AuditAction.SLIDE_PLACE,
            actor=principal,
            target_type="slide",
            target_id=slide_id,
            detail={"case": case.id},
        )
    # The slide may now be shared through its case's grants.
    policy.forget()
    return Response(status_code=204)


@router.put("/slides/{slide_id}/case")
def place_slide(
    slide_id: str, body: PlacementIn, principal: CurrentUser, policy: PolicyDep, hub: HubDep
) -> SlideOut:
    """A technician's correction: the slide's case (created if new), block and stain."""
    access = policy.access(principal, slide_id)
    if access is None or not access.full:
        raise cases.CaseNotFound(f"no slide {slide_id!r}")
    policy.may_edit_cases(principal)
    with hub.db.session() as session, session.begin():
        slide = session.get_one(Slide, access.slide.id)
        case = (
            cases.case_for(session, slide.centre, body.case_reference)
            if body.case_reference
            else None
        )
        policy.may_place(session, principal, case)
        placement = cases.Placement(
            part=body.part, block=body.block, level=body.level, stain=body.stain
        )
        cases.place_slide(session, slide, case, placement, LinkSource.MANUAL)
        audit.record(
            session,
            AuditAction.SLIDE_PLACE,
            actor=principal,
            target_type="slide",
            target_id=slide.id,
            detail={"case": case.id if case else None},
        )
        out = SlideOut(**summary(slide, View.FULL, case))  # type: ignore[arg-type]
    policy.forget()  # grants on its old or new case now cover it or not
    return out


@router.get("/centres/{code}/rules")
def centre_rules(code: str, principal: CurrentUser, policy: PolicyDep, hub: HubDep) -> RulesOut:
    policy.may_set_rules(principal, code)
    with hub.db.session() as session:
        centre = session.get_one(Centre, code)
        return RulesOut(
            centre=code, barcode_rule=centre.barcode_rule, file_name_rule=centre.file_name_rule
        )


@router.put("/centres/{code}/rules")
def set_centre_rules(
    code: str, body: RulesIn, principal: CurrentUser, policy: PolicyDep, hub: HubDep
) -> RulesOut:
    policy.may_set_rules(principal, code)
    for rule in (body.barcode_rule, body.file_name_rule):
        if rule:
            linking.compile_rule(rule)
    with hub.db.session() as session, session.begin():
        centre = session.get_one(Centre, code)
        centre.barcode_rule = body.barcode_rule or None
        centre.file_name_rule = body.file_name_rule or None
        audit.record(
            session,
            AuditAction.CENTRE_RULES,
            actor=principal,
            target_type="centre",
            target_id=code,
            detail={"barcode_rule": centre.barcode_rule, "file_name_rule": centre.file_name_rule},
        )
        return RulesOut(
            centre=code, barcode_rule=centre.barcode_rule, file_name_rule=centre.file_name_rule
        )


@router.post("/lis/records")
def lis_records(body: LisIn, principal: CurrentUser, policy: PolicyDep, hub: HubDep) -> LisOut:
    """The lab system's push: cases and the slides it made of them, into the caller's
    centre. All or nothing: one bad record refuses the batch (400, saying which)."""
    policy.may_edit_cases(principal)
    records = lis.records_from_json(body.records)
    with hub.db.session() as session, session.begin():
        result = lis.import_records(session, principal.centre, records)
        audit.record(
            session,
            AuditAction.LIS_IMPORT,
            actor=principal,
            target_type="centre",
            target_id=principal.centre,
            detail={
                "cases": result.cases,
                "slides_linked": result.slides_linked,
                "slides_expected": result.slides_expected,
            },
        )
    if result.slides_linked:
        policy.forget()
    return LisOut(
        cases=result.cases,
        slides_linked=result.slides_linked,
        slides_expected=result.slides_expected,
    )
