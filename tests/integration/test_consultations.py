"""Second opinions between centres, on a real hub (SQLite and PostgreSQL): the workflow's
whole matrix, the request from Lille to Rouen's soft-tissue pool end to end, the grants it
gives and ends, notifications, and the refusals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.audit import chain
from exchange.core.models import AuditEvent, Consultation, Grant, Notification, User
from exchange.core.principal import Principal, Role
from exchange.identity.accounts import principal_of
from exchange.sharing.consultations import (
    Agreement,
    Confidence,
    Consent,
    Consultations,
    Draft,
    Material,
    MaterialStatus,
    Opinion,
)
from exchange.sharing.workflow import Action, Actor, Addressing, State
from iain.app import create_app
from iain.settings import Settings
from tests.hub import auth_headers, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"
TILE = "_files/9/0_0.jpeg"

# --- the workflow, as the issue states it, written out independently of its code ------------
S, A = State, Actor
ALLOWED: dict[tuple[Addressing, State, Actor, Action], State] = {}


def _allow(
    addressings: tuple[Addressing, ...],
    states: tuple[State, ...],
    actors: tuple[Actor, ...],
    action: Action,
    to: State | None = None,
) -> None:
    for addressing in addressings:
        for state in states:
            for actor in actors:
                ALLOWED[(addressing, state, actor, action)] = to or state


BOTH, USER, POOL = (Addressing.USER, Addressing.POOL), (Addressing.USER,), (Addressing.POOL,)
_allow(BOTH, (S.DRAFT,), (A.REQUESTER,), Action.EDIT)
_allow(BOTH, (S.DRAFT,), (A.REQUESTER,), Action.SUBMIT, S.SUBMITTED)
# Withdrawn by the requester only before acceptance.
_allow(BOTH, (S.DRAFT, S.SUBMITTED, S.ASSIGNED), (A.REQUESTER,), Action.WITHDRAW, S.WITHDRAWN)
_allow(POOL, (S.SUBMITTED, S.ASSIGNED), (A.POOL_MANAGER,), Action.ASSIGN, S.ASSIGNED)
_allow(USER, (S.SUBMITTED,), (A.CONSULTANT,), Action.ACCEPT, S.ACCEPTED)
_allow(POOL, (S.SUBMITTED,), (A.POOL_MEMBER, A.POOL_MANAGER), Action.ACCEPT, S.ACCEPTED)
_allow(POOL, (S.ASSIGNED,), (A.CONSULTANT,), Action.ACCEPT, S.ACCEPTED)
_allow(USER, (S.SUBMITTED,), (A.CONSULTANT,), Action.DECLINE, S.DECLINED)
_allow(POOL, (S.SUBMITTED, S.ASSIGNED), (A.POOL_MANAGER,), Action.DECLINE, S.DECLINED)
_allow(POOL, (S.ASSIGNED,), (A.CONSULTANT,), Action.DECLINE, S.SUBMITTED)  # back to the pool
_allow(BOTH, (S.ACCEPTED,), (A.CONSULTANT,), Action.REQUEST_INFO, S.INFO_REQUESTED)
_allow(BOTH, (S.INFO_REQUESTED,), (A.REQUESTER,), Action.PROVIDE_INFO, S.ACCEPTED)
_allow(BOTH, (S.ACCEPTED,), (A.CONSULTANT,), Action.ANSWER, S.ANSWERED)
_allow(BOTH, (S.ANSWERED,), (A.CONSULTANT,), Action.ADDENDUM)
_allow(BOTH, (S.ANSWERED,), (A.REQUESTER,), Action.CLOSE, S.CLOSED)
DISCUSSING = (S.SUBMITTED, S.ASSIGNED, S.ACCEPTED, S.INFO_REQUESTED, S.ANSWERED)
PARTIES = (A.REQUESTER, A.CONSULTANT, A.POOL_MANAGER)
_allow(BOTH, DISCUSSING, PARTIES, Action.COMMENT)
_allow(BOTH, (*DISCUSSING, S.CLOSED, S.DECLINED, S.WITHDRAWN), PARTIES, Action.TRACK_MATERIAL)


def sees(addressing: Addressing, state: State, actors: frozenset[Actor]) -> bool:
    if A.REQUESTER in actors:
        return True
    if state is S.DRAFT:
        return False
    if actors & {A.CONSULTANT, A.POOL_MANAGER}:
        return True
    return A.POOL_MEMBER in actors and addressing is Addressing.POOL and state is S.SUBMITTED


def expected(addressing: Addressing, state: State, actors: frozenset[Actor], action: Action) -> str:
    if not sees(addressing, state, actors):
        return "404"
    for actor in actors:
        if (addressing, state, actor, action) in ALLOWED:
            return ALLOWED[(addressing, state, actor, action)].value
    elsewhere = any((addressing, s, actor, action) in ALLOWED for s in State for actor in actors)
    return "409" if elsewhere else "403"


# --- a hub with Lille's requester and Rouen's soft-tissue pool -----------------------------


@dataclass
class People:
    settings: Settings
    client: TestClient
    service: Consultations
    slide_id: str
    headers: dict[str, dict[str, str]]
    principals: dict[str, Principal]

    def call(self, who: str, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.headers[who], **kw)


NAMES = {
    "requester": ("path.lille", "lille", ("pathologist",)),
    "addressee": ("expert.rouen", "rouen", ("pathologist",)),  # named addressee
    "manager": ("manager.rouen", "rouen", ("pathologist",)),  # the pool's manager
    "consultant": ("sarcoma.rouen", "rouen", ("pathologist",)),  # a pool member
    "member": ("other.rouen", "rouen", ("pathologist",)),  # another pool member
    "stranger": ("path.caen", "caen", ("pathologist",)),
    "admin": ("admin.rouen", "rouen", ("centre_admin",)),
}


@pytest.fixture
def people(settings: Settings) -> Iterator[People]:
    slide_id = ingest(settings, sample(SVS), "lille")
    headers = {
        key: auth_headers(settings, name, centre=centre, roles=roles)
        for key, (name, centre, roles) in NAMES.items()
    }
    with TestClient(create_app(settings)) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        with hub.db.session() as session:
            users = {u.username: u for u in session.scalars(select(User))}
            principals = {key: principal_of(users[name]) for key, (name, _c, _r) in NAMES.items()}
        made = client.post(
            "/api/pools",
            json={"centre": "rouen", "specialty": "soft_tissue_bone", "name": "Sarcomes"},
            headers=headers["admin"],
        )
        assert made.status_code == 201, made.text
        for key, manager in (("manager", True), ("consultant", False), ("member", False)):
            put = client.put(
                f"/api/pools/rouen/soft_tissue_bone/members/{NAMES[key][0]}",
                json={"manager": manager},
                headers=headers["admin"],
            )
            assert put.status_code == 204, put.text
        yield People(settings, client, hub.consultations, slide_id, headers, principals)


def request_body(slide_id: str, **over: Any) -> dict[str, Any]:
    body = {
        "slide_ids": [slide_id],
        "question": "Leiomyosarcoma or cellular leiomyoma?",
        "clinical_context": "Uterine mass, 8 cm.",
        "specimen_site": "uterus",
        "specimen_procedure": "hysterectomy",
        "stains": "HES, desmin, h-caldesmon",
        "initial_diagnosis": "Smooth-muscle tumour of uncertain malignant potential",
        "initial_status": "provisional",
        "initial_confidence": "low",
        "urgency": "urgent",
        "pool": "rouen/soft_tissue_bone",
        "network": "RRePS",
        "consent": "non_opposition",
        "material": [{"kind": "block", "label": "A3"}],
    }
    return body | over


# --- the matrix ---------------------------------------------------------------------------


def _draft(people: People, addressing: Addressing) -> Draft:
    return Draft(
        slide_ids=[people.slide_id],
        question="Which grade?",
        initial_diagnosis="Sarcoma, grade uncertain",
        addressee=NAMES["addressee"][0] if addressing is Addressing.USER else None,
        pool="rouen/soft_tissue_bone" if addressing is Addressing.POOL else None,
        consent=Consent.INFORMED,
        material=[Material("block", "A1")],
    )


def _version(people: People, consultation_id: str) -> int:
    with people.service.db.session() as session:
        row = session.get(Consultation, consultation_id)
        assert row is not None
        return row.version


def _to_state(people: People, addressing: Addressing, state: State) -> str | None:
    """A consultation brought to `state` the way users would; None: not reachable."""
    svc, p = people.service, people.principals
    consultant = "addressee" if addressing is Addressing.USER else "consultant"
    cid = svc.create(p["requester"], _draft(people, addressing))

    def step(who: str, fn: Callable[..., None], *args: Any) -> None:
        fn(p[who], cid, *args, _version(people, cid))

    if state is S.DRAFT:
        return cid
    if state is S.WITHDRAWN:
        step("requester", svc.withdraw)
        return cid
    step("requester", svc.submit)
    if state is S.SUBMITTED:
        return cid
    if addressing is Addressing.POOL:
        step("manager", svc.assign, NAMES["consultant"][0])
        if state is S.ASSIGNED:
            return cid
    elif state is S.ASSIGNED:
        return None
    if state is S.DECLINED:
        step("manager" if addressing is Addressing.POOL else consultant, svc.decline, "no")
        return cid
    step(consultant, svc.accept)
    if state is S.ACCEPTED:
        return cid
    if state is S.INFO_REQUESTED:
        step(consultant, svc.request_info, "Ki-67?")
        return cid
    step(consultant, svc.answer, Opinion("Leiomyosarcoma", Agreement.MINOR, Confidence.HIGH))
    if state is S.ANSWERED:
        return cid
    step("requester", svc.close)
    return cid


ACTOR_USER = {
    Actor.REQUESTER: "requester",
    Actor.POOL_MANAGER: "manager",
    Actor.POOL_MEMBER: "member",
}


def _act(people: People, who: str, action: Action, cid: str) -> None:
    svc, principal, version = people.service, people.principals[who], _version(people, cid)
    match action:
        case Action.EDIT:
            svc.edit(principal, cid, _draft_of(people, cid), version)
        case Action.SUBMIT | Action.WITHDRAW | Action.ACCEPT | Action.CLOSE:
            getattr(svc, action.value)(principal, cid, version)
        case Action.ASSIGN:
            svc.assign(principal, cid, NAMES["consultant"][0], version)
        case Action.DECLINE:
            svc.decline(principal, cid, "out of my field", version)
        case Action.REQUEST_INFO | Action.PROVIDE_INFO | Action.ADDENDUM:
            getattr(svc, action.value)(principal, cid, "some text", version)
        case Action.ANSWER:
            svc.answer(
                principal, cid, Opinion("Leiomyosarcoma", Agreement.MAJOR, Confidence.LOW), version
            )
        case Action.COMMENT:
            svc.comment(principal, cid, "a remark")
        case Action.TRACK_MATERIAL:
            view = svc.get(people.principals["requester"], cid)
            svc.track_material(principal, cid, view.material[0].id, MaterialStatus.RECEIVED)


def _draft_of(people: People, cid: str) -> Draft:
    with people.service.db.session() as session:
        row = session.get(Consultation, cid)
        assert row is not None
        addressing = Addressing.POOL if row.pool_id else Addressing.USER
    return _draft(people, addressing)


def test_the_whole_matrix_of_states_actors_and_actions(people: People) -> None:
    """Every reachable (addressing, state) x every kind of participant x every action: the
    service answers what the workflow says, and a refused action changes nothing."""
    checked = 0
    for addressing in Addressing:
        for state in State:
            for actor in Actor:
                if addressing is Addressing.USER and actor in (A.POOL_MANAGER, A.POOL_MEMBER):
                    continue
                for action in Action:
                    cid = _to_state(people, addressing, state)
                    if cid is None:
                        continue
                    if actor is A.CONSULTANT:
                        who = "addressee" if addressing is Addressing.USER else "consultant"
                    else:
                        who = ACTOR_USER[actor]
                    with people.service.db.session() as session:
                        row = session.get(Consultation, cid)
                        assert row is not None
                        part = people.service.part(session, row, people.principals[who])
                    if actor not in part.actors:
                        continue  # e.g. a pool's consultant before any assignment
                    want = expected(addressing, state, part.actors, action)
                    before = _snapshot(people, cid)
                    try:
                        _act(people, who, action, cid)
                    except Exception as exc:
                        got = str(getattr(exc, "http_status", repr(exc)))
                        assert _snapshot(people, cid) == before, (addressing, state, actor, action)
                    else:
                        with people.service.db.session() as session:
                            row = session.get(Consultation, cid)
                            assert row is not None
                            got = row.state
                    assert got == want, (addressing.value, state.value, actor.value, action.value)
                    checked += 1
    assert checked > 300


def _snapshot(people: People, cid: str) -> tuple[Any, ...]:
    with people.service.db.session() as session:
        row = session.get(Consultation, cid)
        assert row is not None
        audit_rows = session.scalar(select(func.count()).select_from(AuditEvent))
        grants = session.scalar(select(func.count()).select_from(Grant))
        return (row.state, row.version, row.assignee_id, audit_rows, grants)


# --- end to end, over HTTP ------------------------------------------------------------------


def _unread(people: People, who: str) -> list[dict[str, Any]]:
    got = people.call(who, "GET", "/api/notifications").json()
    return [n for n in got["items"] if not n["read"]]


def test_lille_asks_rouens_soft_tissue_pool_and_gets_an_answer(people: People) -> None:
    call = people.call
    made = call("requester", "POST", "/api/consultations", json=request_body(people.slide_id))
    assert made.status_code == 201, made.text
    c = made.json()
    cid = c["id"]
    assert c["state"] == "draft" and c["slides"] == [people.slide_id]
    # A draft is the requester's alone.
    assert call("manager", "GET", f"/api/consultations/{cid}").status_code == 404
    sub = call("requester", "POST", f"/api/consultations/{cid}/submit", json={"version": 1})
    assert sub.status_code == 200, sub.text
    c = sub.json()
    assert c["state"] == "submitted" and c["due_at"] is not None
    # The pool's manager is told, and sees it in the inbox; the member sees the queue.
    note = _unread(people, "manager")
    assert [n["event"] for n in note] == ["submitted"]
    assert "Leiomyosarcoma" not in str(note) and people.slide_id not in str(note)
    inbox = call("manager", "GET", "/api/consultations?box=inbox").json()
    assert [i["id"] for i in inbox["items"]] == [cid] and inbox["items"][0]["urgency"] == "urgent"
    assert call("member", "GET", "/api/consultations?box=inbox").json()["total"] == 1
    assert call("stranger", "GET", f"/api/consultations/{cid}").status_code == 404
    # Assigned to the consultant, who is told.
    assigned = call(
        "manager",
        "POST",
        f"/api/consultations/{cid}/assign",
        json={"version": c["version"], "user": NAMES["consultant"][0]},
    )
    assert assigned.status_code == 200, assigned.text
    assert [n["event"] for n in _unread(people, "consultant")] == ["assigned"]
    # The other member no longer sees it.
    assert call("member", "GET", f"/api/consultations/{cid}").status_code == 404
    seen = call("consultant", "GET", f"/api/consultations/{cid}").json()
    public = seen["slides"][0]
    assert public != people.slide_id and seen["first_viewed_at"] is not None
    assert "accept" in seen["allowed"] and "answer" not in seen["allowed"]
    # Withdrawn only before acceptance: after it, the requester's attempt is a 409.
    acc = call(
        "consultant", "POST", f"/api/consultations/{cid}/accept", json={"version": seen["version"]}
    )
    assert acc.status_code == 200, acc.text
    c = acc.json()
    late = call(
        "requester", "POST", f"/api/consultations/{cid}/withdraw", json={"version": c["version"]}
    )
    assert late.status_code == 409
    # The slide in the de-identified view only.
    assert call("consultant", "GET", f"/slides/{public}{TILE}").status_code == 200
    assert call("consultant", "GET", f"/api/slides/{people.slide_id}").status_code == 404
    label = call("consultant", "GET", f"/api/slides/{public}")
    assert label.status_code == 200 and label.json()["associated_images"] == {}
    # A question, an answer in the thread, the opinion.
    asked = call(
        "consultant",
        "POST",
        f"/api/consultations/{cid}/request-info",
        json={"version": c["version"], "text": "Mitotic count per 10 HPF?"},
    )
    assert asked.status_code == 200 and asked.json()["state"] == "info_requested"
    assert "info_requested" in [n["event"] for n in _unread(people, "requester")]
    wrong = call(
        "consultant",
        "POST",
        f"/api/consultations/{cid}/provide-info",
        json={"version": asked.json()["version"], "text": "?"},
    )
    assert wrong.status_code == 403
    given = call(
        "requester",
        "POST",
        f"/api/consultations/{cid}/provide-info",
        json={"version": asked.json()["version"], "text": "12 per 10 HPF"},
    )
    assert given.status_code == 200 and given.json()["state"] == "accepted"
    msg = call(
        "consultant",
        "POST",
        f"/api/consultations/{cid}/messages",
        json={
            "body": "<script>alert(1)</script> thanks @path.lille, see here",
            "links": [{"slide": public, "x": 1000, "y": 800, "zoom": 4}],
        },
    )
    assert msg.status_code == 201, msg.text
    assert msg.json()["mentions"] == ["path.lille"]
    bad_link = call(
        "consultant",
        "POST",
        f"/api/consultations/{cid}/messages",
        json={"body": "x", "links": [{"slide": "zzzzzzzzzzzz", "x": 1, "y": 1, "zoom": 1}]},
    )
    assert bad_link.status_code == 400
    answered = call(
        "consultant",
        "POST",
        f"/api/consultations/{cid}/answer",
        json={
            "version": given.json()["version"],
            "diagnosis": "Leiomyosarcoma, FNCLCC grade 2",
            "agreement": "minor_discordance",
            "confidence": "high",
            "comments": "Coagulative necrosis present.",
        },
    )
    assert answered.status_code == 200, answered.text
    # Lille sees the opinion and the thread, and closes: the grant is gone.
    mine = call("requester", "GET", f"/api/consultations/{cid}").json()
    assert mine["answer"]["agreement"] == "minor_discordance"
    assert mine["messages"][-1]["body"].startswith("<script>")  # stored as typed, escaped on show
    closed = call(
        "requester", "POST", f"/api/consultations/{cid}/close", json={"version": mine["version"]}
    )
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert call("consultant", "GET", f"/slides/{public}{TILE}").status_code == 404
    # The record stays; the timeline and the audit chain show each step.
    record = call("consultant", "GET", f"/api/consultations/{cid}").json()
    steps = [e["action"] for e in record["timeline"]]
    assert steps == [
        "create", "submit", "assign", "first_view", "accept", "request_info",
        "provide_info", "answer", "close",
    ]  # fmt: skip
    with people.service.db.session() as session:
        assert chain.verify(session).intact
        actions = [
            e.detail["action"]
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.target_id == cid).order_by(AuditEvent.seq)
            )
        ]
        assert actions == steps
        grants = session.scalars(select(Grant).where(Grant.purpose == "second_opinion")).all()
        assert grants and all(g.revoked_at is not None for g in grants)


def test_two_members_taking_one_pool_request_exactly_one_wins(people: People) -> None:
    call = people.call
    c = call("requester", "POST", "/api/consultations", json=request_body(people.slide_id)).json()
    c = call(
        "requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 1}
    ).json()
    results: dict[str, int] = {}

    def take(who: str) -> None:
        r = call(
            who, "POST", f"/api/consultations/{c['id']}/accept", json={"version": c["version"]}
        )
        results[who] = r.status_code

    threads = [threading.Thread(target=take, args=(w,)) for w in ("consultant", "member")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The loser is refused: 409 if it read the request before the winner's commit, else 404
    # (an accepted request is no longer in the pool's queue).
    assert sorted(results.values())[0] == 200 and sorted(results.values())[1] in (404, 409)
    with people.service.db.session() as session:
        row = session.get(Consultation, c["id"])
        assert row is not None and row.state == "accepted"
        winner = next(w for w, s in results.items() if s == 200)
        assert row.assignee_id == people.principals[winner].user_id
        live = session.scalars(
            select(Grant).where(Grant.purpose == "second_opinion", Grant.revoked_at.is_(None))
        ).all()
        # The manager's (triage) grant and the winner's; none for the loser.
        loser = next(w for w in results if w != winner)
        assert people.principals[loser].user_id not in {g.grantee_user_id for g in live}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/consultations", {"slide_ids": ["zzzzzzzzzzzz"]}, 400),
        ("/api/consultations", {"pool": "rouen/astrology"}, 400),
        ("/api/consultations", {"addressee": "path.lille"}, 400),  # oneself
        ("/api/consultations", {"question": "x" * 20_000}, 400),
        ("/api/consultations", {"urgency": "yesterday"}, 400),
        ("/api/consultations", {"unknown": 1}, 400),
    ],
)
def test_malformed_requests_are_refused_with_a_4xx(
    people: People, path: str, body: dict[str, Any], status: int
) -> None:
    got = people.call("requester", "POST", path, json=body)
    assert got.status_code == status, got.text
    with people.service.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Consultation)) == 0


def test_unknown_and_others_consultations_are_the_same_404(people: People) -> None:
    call = people.call
    c = call("requester", "POST", "/api/consultations", json=request_body(people.slide_id)).json()
    for path in (f"/api/consultations/{c['id']}", "/api/consultations/zzzzzzzzzzzz"):
        got = call("stranger", "GET", path)
        assert got.status_code == 404
    assert call("stranger", "GET", "/api/consultations/..%2F..").status_code == 404
    # Submitting an incomplete request says what is missing.
    bare = call("requester", "POST", "/api/consultations", json={}).json()
    refused = call(
        "requester", "POST", f"/api/consultations/{bare['id']}/submit", json={"version": 1}
    )
    assert refused.status_code == 400 and "question" in refused.json()["detail"]
    # A stale version: 409, nothing changed.
    stale = call("requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 7})
    assert stale.status_code == 409
    # A technician may not ask for a second opinion.
    tech = auth_headers(people.settings, "tech.lille", centre="lille", roles=("technician",))
    got = people.client.post("/api/consultations", json={}, headers=tech)
    assert got.status_code == 403


def test_a_revoked_grant_stops_the_slides_but_the_consultation_stays(people: People) -> None:
    call = people.call
    body = request_body(people.slide_id, pool=None, addressee=NAMES["addressee"][0])
    c = call("requester", "POST", "/api/consultations", json=body).json()
    c = call(
        "requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 1}
    ).json()
    seen = call("addressee", "GET", f"/api/consultations/{c['id']}").json()
    public = seen["slides"][0]
    assert call("addressee", "GET", f"/slides/{public}{TILE}").status_code == 200
    given = call("requester", "GET", "/api/grants").json()
    assert len(given) == 1 and given[0]["purpose"] == "second_opinion"
    assert call("requester", "DELETE", f"/api/grants/{given[0]['id']}").status_code == 204
    assert call("addressee", "GET", f"/slides/{public}{TILE}").status_code == 404
    assert call("addressee", "GET", f"/api/consultations/{c['id']}").json()["state"] == "submitted"


def test_reminders_are_sent_once_whatever_the_number_of_runs(people: People) -> None:
    call = people.call
    body = request_body(people.slide_id, pool=None, addressee=NAMES["addressee"][0])
    c = call("requester", "POST", "/api/consultations", json=body).json()
    call("requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 1})
    from datetime import timedelta

    # Urgent: due in 2 days; "due soon" within 3 days is now; then overdue when past.
    assert people.service.remind(due_within=timedelta(days=3)) == 1
    assert people.service.remind(due_within=timedelta(days=3)) == 0
    with people.service.db.session() as session, session.begin():
        row = session.get(Consultation, c["id"])
        assert row is not None and row.due_at is not None
        row.due_at = row.due_at - timedelta(days=3)
    assert people.service.remind() == 1 and people.service.remind() == 0
    events = [n["event"] for n in _unread(people, "addressee")]
    assert events.count("due_soon") == 1 and events.count("overdue") == 1
    overdue = call("addressee", "GET", "/api/consultations?box=inbox&overdue=true").json()
    assert overdue["total"] == 1 and overdue["items"][0]["overdue"] is True


def test_notifications_are_marked_read_and_choices_are_kept(people: People) -> None:
    call = people.call
    body = request_body(people.slide_id, pool=None, addressee=NAMES["addressee"][0])
    c = call("requester", "POST", "/api/consultations", json=body).json()
    call("requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 1})
    got = call("addressee", "GET", "/api/notifications").json()
    assert got["unread"] == 1
    marked = call("addressee", "POST", "/api/notifications/read", json={}).json()
    assert marked == {"marked": 1, "unread": 0}
    put = call(
        "addressee",
        "PUT",
        "/api/notifications/settings",
        json={"email": "expert@chb.example", "choices": {"message": {"app": True, "email": True}}},
    )
    assert put.status_code == 200 and put.json()["choices"]["message"]["email"] is True
    bad = call("addressee", "PUT", "/api/notifications/settings", json={"email": "not an address"})
    assert bad.status_code == 400
    with people.service.db.session() as session:
        pending = session.scalars(select(Notification).where(Notification.mail_state != "")).all()
        assert pending == []  # the first one was made before an address was given


def test_roles_outside_the_workflow_may_not_manage_pools(people: People) -> None:
    got = people.call(
        "requester", "POST", "/api/pools", json={"centre": "rouen", "specialty": "breast"}
    )
    assert got.status_code == 403
    assert Role.CENTRE_ADMIN.value in NAMES["admin"][2]


def test_a_notification_reaches_the_page_open_on_another_hub_process(
    people: People,
) -> None:
    """Two hubs on one database (two servers, each with its own feed): the addressee's page
    listens on the second while the request is submitted through the first."""
    import json
    import time

    import httpx

    from tests.hub import serving

    body = request_body(people.slide_id, pool=None, addressee=NAMES["addressee"][0])
    c = people.call("requester", "POST", "/api/consultations", json=body).json()
    with (
        serving(people.settings) as other,
        httpx.Client(base_url=other, headers=people.headers["addressee"], timeout=10) as web,
        web.stream("GET", "/api/notifications/stream") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == "event: hello"
        assert json.loads(next(lines).removeprefix("data: ")) == {"unread": 0}
        sent = time.monotonic()
        done = people.call(
            "requester", "POST", f"/api/consultations/{c['id']}/submit", json={"version": 1}
        )
        assert done.status_code == 200
        for line in lines:
            if line.startswith("data: "):
                pushed = json.loads(line.removeprefix("data: "))
                break
        waited = time.monotonic() - sent
    assert pushed["unread"] == 1 and pushed["notification"]["event"] == "submitted"
    assert pushed["notification"]["link"].endswith(f"/consultations/{c['id']}")
    assert waited < 5  # the feed polls every 0.25 s; the benchmark measures the p95
