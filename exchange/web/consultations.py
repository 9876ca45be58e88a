"""Second opinions over HTTP (exchange.sharing.consultations does the work).

POST /api/consultations                        a draft (201); PUT .../{id} edits it
GET  /api/consultations?box=inbox|outbox|all&state=&urgency=&overdue=&q=&sort=&limit=&offset=
GET  /api/consultations/{id}                   the request, slides, timeline, thread, answer
POST /api/consultations/{id}/{action}          submit, withdraw, assign, accept, decline,
                                               request-info, provide-info, answer, addendum,
                                               close — each with the `version` it saw
POST /api/consultations/{id}/messages          a message of its thread (or an annotation's)
PUT  /api/consultations/{id}/material/{mid}    a block or glass: sent, received, returned
GET  /api/consultations/options                specialties, networks, pools, due days
GET  /api/pools; POST /api/pools; PUT /api/pools/{centre}/{specialty}/members/{username}

Refusals: not a participant or unknown: 404; the wrong part in it: 403; the wrong state, or
a stale `version`: 409; nothing changes then."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from exchange.sharing import consultations as svc
from exchange.sharing.consultations import (
    Agreement,
    Confidence,
    Consent,
    ConsultationView,
    Draft,
    Filters,
    InitialStatus,
    Material,
    MaterialStatus,
    Opinion,
    Urgency,
)
from exchange.sharing.workflow import OPEN, State
from exchange.web.auth import CurrentUser
from exchange.web.hub import HubDep

router = APIRouter(prefix="/api", tags=["second opinions"])

Text = Annotated[str, Field(max_length=svc.MAX_MESSAGE)]
Short = Annotated[str, Field(max_length=200)]


class MaterialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["block", "glass"]
    label: Annotated[str, Field(min_length=1, max_length=100)]


class DraftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slide_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=svc.MAX_SLIDES
    )
    case_id: Annotated[str, Field(max_length=64)] | None = None
    question: Text = ""
    clinical_context: Text = ""
    specimen_site: Short = ""
    specimen_procedure: Short = ""
    stains: Annotated[str, Field(max_length=500)] = ""
    initial_diagnosis: Text = ""
    initial_status: InitialStatus = InitialStatus.PROVISIONAL
    initial_confidence: Confidence = Confidence.MODERATE
    urgency: Urgency = Urgency.ROUTINE
    addressee: Annotated[str, Field(max_length=150)] | None = None
    pool: Annotated[str, Field(max_length=100)] | None = None
    network: Annotated[str, Field(max_length=50)] = ""
    consent: Consent | None = None
    material: list[MaterialIn] = Field(default_factory=list, max_length=100)

    def draft(self) -> Draft:
        return Draft(
            slide_ids=self.slide_ids,
            case_id=self.case_id,
            question=self.question,
            clinical_context=self.clinical_context,
            specimen_site=self.specimen_site,
            specimen_procedure=self.specimen_procedure,
            stains=self.stains,
            initial_diagnosis=self.initial_diagnosis,
            initial_status=self.initial_status,
            initial_confidence=self.initial_confidence,
            urgency=self.urgency,
            addressee=self.addressee,
            pool=self.pool,
            network=self.network,
            consent=self.consent,
            material=[Material(m.kind, m.label) for m in self.material],
        )


class EditIn(DraftIn):
    version: int


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int


class AssignIn(VersionIn):
    user: Annotated[str, Field(min_length=1, max_length=150)]


class ReasonIn(VersionIn):
    reason: Annotated[str, Field(min_length=1, max_length=svc.MAX_MESSAGE)]


class TextIn(VersionIn):
    text: Annotated[str, Field(min_length=1, max_length=svc.MAX_MESSAGE)]


class AnswerIn(VersionIn):
    diagnosis: Annotated[str, Field(min_length=1, max_length=svc.MAX_MESSAGE)]
    agreement: Agreement
    confidence: Confidence
    comments: Text = ""


class ViewLink(BaseModel):
    """A viewport on one of the request's slides: centre (level-0 px) and zoom."""

    model_config = ConfigDict(extra="forbid")
    slide: Annotated[str, Field(max_length=64)]
    x: Annotated[float, Field(ge=0, le=10_000_000)]
    y: Annotated[float, Field(ge=0, le=10_000_000)]
    zoom: Annotated[float, Field(gt=0, le=10_000)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[str, Field(min_length=1, max_length=svc.MAX_MESSAGE)]
    subject_type: Literal["consultation", "annotation"] = "consultation"
    subject_id: Annotated[str, Field(max_length=64)] | None = None
    links: list[ViewLink] = Field(default_factory=list, max_length=20)


class MaterialStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: MaterialStatus


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    centre: Annotated[str, Field(max_length=32)]
    specialty: Annotated[str, Field(max_length=50)]
    name: Short = ""


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manager: bool = False


def _summary(row: Any, names: dict[str, str], now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "version": row.version,
        "urgency": row.urgency,
        "case_reference": row.case_reference,
        "question": row.question[:200],
        "requester": names.get(row.requester_id, ""),
        "requester_centre": row.requester_centre,
        "addressee": names.get(row.addressee_user_id or ""),
        "addressee_centre": row.addressee_centre,
        "assignee": names.get(row.assignee_id or ""),
        "pool_id": row.pool_id,
        "network": row.network,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "submitted_at": row.submitted_at,
        "due_at": row.due_at,
        "overdue": bool(row.due_at is not None and row.due_at < now and State(row.state) in OPEN),
    }


def _full(view: ConsultationView) -> dict[str, Any]:
    row, names = view.row, view.names
    out = _summary(row, names, datetime.now(UTC))
    out.update(
        {
            "question": row.question,
            "clinical_context": row.clinical_context,
            "specimen_site": row.specimen_site,
            "specimen_procedure": row.specimen_procedure,
            "stains": row.stains,
            "initial_diagnosis": row.initial_diagnosis,
            "initial_status": row.initial_status,
            "initial_confidence": row.initial_confidence,
            "consent": row.consent,
            "pool": view.pool,
            "pool_name": view.pool_name,
            "slides": view.slides,
            "decline_reason": row.decline_reason,
            "answer": None
            if not row.answered_at
            else {
                "diagnosis": row.answer_diagnosis,
                "agreement": row.answer_agreement,
                "confidence": row.answer_confidence,
                "comments": row.answer_comments,
                "answered_at": row.answered_at,
                "addenda": [
                    {"text": e.detail.get("text", ""), "at": e.at}
                    for e in view.events
                    if e.action == "addendum"
                ],
            },
            "first_viewed_at": row.first_viewed_at,
            "accepted_at": row.accepted_at,
            "answered_at": row.answered_at,
            "closed_at": row.closed_at,
            "timeline": [
                {
                    "at": e.at,
                    "actor": names.get(e.actor_id, ""),
                    "action": e.action,
                    "from": e.from_state,
                    "to": e.to_state,
                    "detail": e.detail,
                }
                for e in view.events
            ],
            "messages": [
                {
                    "id": m.id,
                    "author": names.get(m.author_id, ""),
                    "body": m.body,
                    "subject_type": m.subject_type,
                    "subject_id": m.subject_id,
                    "mentions": m.mentions,
                    "links": m.links,
                    "created_at": m.created_at,
                }
                for m in view.messages
            ],
            "material": [
                {"id": m.id, "kind": m.kind, "label": m.label, "status": m.status}
                for m in view.material
            ],
            "you": view.actors,
            "allowed": view.allowed,
        }
    )
    return out


@router.get("/consultations/options")
def options(hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    pools = [
        {
            "id": pool.id,
            "pool": f"{pool.centre}/{pool.specialty}",
            "centre": pool.centre,
            "specialty": pool.specialty,
            "name": pool.name,
        }
        for pool, _members in hub.consultations.pools()
    ]
    config = hub.consultations.config
    return {
        "specialties": list(svc.SPECIALTIES),
        "networks": list(svc.NETWORKS),
        "pools": pools,
        "due_days": {"routine": config.routine_days, "urgent": config.urgent_days},
    }


@router.post("/consultations", status_code=201)
async def create(body: DraftIn, hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    consultation_id = await run_in_threadpool(hub.consultations.create, principal, body.draft())
    view = await run_in_threadpool(hub.consultations.get, principal, consultation_id)
    return _full(view)


@router.get("/consultations")
async def find(
    hub: HubDep,
    principal: CurrentUser,
    box: Literal["inbox", "outbox", "all"] = "all",
    state: Annotated[list[State] | None, Query()] = None,
    urgency: Urgency | None = None,
    overdue: bool = False,
    q: Annotated[str, Query(max_length=100)] = "",
    sort: Literal["updated", "-updated", "due", "-due", "created", "-created"] = "-updated",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    filters = Filters(
        box=box,
        states=state or (),
        urgency=urgency,
        overdue=overdue,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    rows, total = await run_in_threadpool(hub.consultations.find, principal, filters)
    names = await run_in_threadpool(
        hub.consultations.names,
        [u for r in rows for u in (r.requester_id, r.addressee_user_id, r.assignee_id)],
    )
    now = datetime.now(UTC)
    return {"total": total, "items": [_summary(r, names, now) for r in rows]}


@router.get("/consultations/{consultation_id}")
async def get(consultation_id: str, hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    await run_in_threadpool(hub.consultations.viewed, principal, consultation_id)
    view = await run_in_threadpool(hub.consultations.get, principal, consultation_id)
    return _full(view)


@router.put("/consultations/{consultation_id}")
async def edit(
    consultation_id: str, body: EditIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.edit, principal, consultation_id, body.draft(), body.version
    )
    return await _after(hub, principal, consultation_id)


async def _after(hub: Any, principal: Any, consultation_id: str) -> dict[str, Any]:
    # Grants widened or narrowed: cached decisions must not outlive them on this hub.
    hub.policy.forget()
    view = await run_in_threadpool(hub.consultations.get, principal, consultation_id)
    return _full(view)


@router.post("/consultations/{consultation_id}/submit")
async def submit(
    consultation_id: str, body: VersionIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(hub.consultations.submit, principal, consultation_id, body.version)
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/withdraw")
async def withdraw(
    consultation_id: str, body: VersionIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(hub.consultations.withdraw, principal, consultation_id, body.version)
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/assign")
async def assign(
    consultation_id: str, body: AssignIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.assign, principal, consultation_id, body.user, body.version
    )
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/accept")
async def accept(
    consultation_id: str, body: VersionIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(hub.consultations.accept, principal, consultation_id, body.version)
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/decline", response_model=None)
async def decline(
    consultation_id: str, body: ReasonIn, hub: HubDep, principal: CurrentUser
) -> Response | dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.decline, principal, consultation_id, body.reason, body.version
    )
    hub.policy.forget()
    try:
        view = await run_in_threadpool(hub.consultations.get, principal, consultation_id)
    except svc.ConsultationNotFound:
        # Handed back to the pool: the consultant no longer takes part in it.
        return Response(status_code=204)
    return _full(view)


@router.post("/consultations/{consultation_id}/request-info")
async def request_info(
    consultation_id: str, body: TextIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.request_info, principal, consultation_id, body.text, body.version
    )
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/provide-info")
async def provide_info(
    consultation_id: str, body: TextIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.provide_info, principal, consultation_id, body.text, body.version
    )
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/answer")
async def answer(
    consultation_id: str, body: AnswerIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    opinion = Opinion(body.diagnosis, body.agreement, body.confidence, body.comments)
    await run_in_threadpool(
        hub.consultations.answer, principal, consultation_id, opinion, body.version
    )
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/addendum")
async def addendum(
    consultation_id: str, body: TextIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(
        hub.consultations.addendum, principal, consultation_id, body.text, body.version
    )
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/close")
async def close(
    consultation_id: str, body: VersionIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    await run_in_threadpool(hub.consultations.close, principal, consultation_id, body.version)
    return await _after(hub, principal, consultation_id)


@router.post("/consultations/{consultation_id}/messages", status_code=201)
async def post_message(
    consultation_id: str, body: MessageIn, hub: HubDep, principal: CurrentUser
) -> dict[str, Any]:
    message = await run_in_threadpool(
        lambda: hub.consultations.comment(
            principal,
            consultation_id,
            body.body,
            subject_type=body.subject_type,
            subject_id=body.subject_id,
            links=[link.model_dump() for link in body.links],
        )
    )
    return {
        "id": message.id,
        "body": message.body,
        "mentions": message.mentions,
        "links": message.links,
        "created_at": message.created_at,
    }


@router.put("/consultations/{consultation_id}/material/{material_id}", status_code=204)
async def track_material(
    consultation_id: str,
    material_id: str,
    body: MaterialStatusIn,
    hub: HubDep,
    principal: CurrentUser,
) -> Response:
    await run_in_threadpool(
        hub.consultations.track_material, principal, consultation_id, material_id, body.status
    )
    return Response(status_code=204)


@router.get("/pools")
def list_pools(hub: HubDep, principal: CurrentUser) -> list[dict[str, Any]]:
    return [
        {
            "id": pool.id,
            "pool": f"{pool.centre}/{pool.specialty}",
            "name": pool.name,
            "members": [{"user": u, "manager": m} for u, m in members],
        }
        for pool, members in hub.consultations.pools()
    ]


@router.post("/pools", status_code=201)
def add_pool(body: PoolIn, hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    pool = hub.consultations.add_pool(principal, body.centre, body.specialty, body.name)
    return {"id": pool.id, "pool": f"{pool.centre}/{pool.specialty}", "name": pool.name}


@router.put("/pools/{centre}/{specialty}/members/{username}", status_code=204)
def set_member(
    centre: str, specialty: str, username: str, body: MemberIn, hub: HubDep, principal: CurrentUser
) -> Response:
    hub.consultations.set_member(principal, f"{centre}/{specialty}", username, manager=body.manager)
    return Response(status_code=204)
