"""Second-opinion requests between centres: the one place where consultations change.

Every change is one transaction: the consultation row (compare-and-set on its `version`,
so two consultants taking the same pool request cannot both win), its timeline event, its
audit event, the grants it gives or ends, and the notifications it sends. The workflow's
rules are exchange.sharing.workflow's; this module finds who the caller is to the
consultation, asks the workflow, and writes.

Sharing follows the request: submitting grants the addressee (a named pathologist, or the
pool's managers) the de-identified view of the chosen slides, for the purpose
`second_opinion`, until the due date plus a margin; assigning or taking a pool request
grants its consultant; closing, withdrawing or declining revokes every grant it made.

Nothing here names the patient: the case is known by its centre's pseudonymous reference,
and notifications say only that something awaits (exchange.live.notifications)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select, update
from sqlalchemy.orm import Session

from exchange.access import grants as grant_rows
from exchange.access.policy import Forbidden
from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.ids import looks_like_id, new_id
from exchange.core.models import (
    Annotation,
    Case,
    Centre,
    Consultation,
    ConsultationEvent,
    ConsultationGrant,
    ConsultationMaterial,
    ConsultationSlide,
    Grant,
    Message,
    Pool,
    PoolMember,
    Slide,
    User,
)
from exchange.core.principal import Principal, Purpose, Role
from exchange.live import notifications
from exchange.live.notifications import Event
from exchange.sharing.workflow import (
    ENDED,
    OPEN,
    Action,
    Actor,
    Addressing,
    State,
    decide,
    sees,
)

SPECIALTIES = (
    "breast",
    "gynaecology",
    "soft_tissue_bone",
    "haematopathology",
    "thoracic",
    "digestive",
    "head_neck",
    "skin",
    "neuro_endocrine",
    "uro",
    "paediatric",
)
# INCa's national rare-cancer pathology networks a request may belong to.
NETWORKS = ("RRePS", "LYMPHOPATH", "MESOPATH", "TENpath", "CARADERM", "TMRG", "other")
REQUEST_ROLES = frozenset({Role.PATHOLOGIST})
MAX_SLIDES = 50
MAX_MESSAGE = 10_000


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"


class InitialStatus(StrEnum):
    PROVISIONAL = "provisional"
    FORMAL = "formal"


class Confidence(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


class Agreement(StrEnum):
    CONCORDANT = "concordant"
    MINOR = "minor_discordance"
    MAJOR = "major_discordance"


class Consent(StrEnum):
    INFORMED = "informed_consent"
    NON_OPPOSITION = "non_opposition"


class MaterialStatus(StrEnum):
    SENT = "sent"
    RECEIVED = "received"
    RETURNED = "returned"


class ConsultationNotFound(ExchangeError):
    """No such consultation, or not one the caller takes part in: 404 either way."""

    http_status = 404


class InvalidConsultation(ExchangeError):
    """A request, an assignment or an answer that cannot be recorded as given: 400."""

    http_status = 400


class Conflict(ExchangeError):
    """Someone else moved the consultation first: 409, nothing changed."""

    http_status = 409


@dataclass(frozen=True)
class ConsultationConfig:
    routine_days: int = 7
    urgent_days: int = 2
    # How long after the due date the addressee may still open the slides.
    grant_margin_days: int = 7
    public_url: str = ""  # links in notifications ("" = relative)


@dataclass(frozen=True)
class Material:
    kind: str  # block, glass
    label: str


@dataclass(frozen=True)
class Draft:
    """What the requester writes; every field may be edited until submission."""

    slide_ids: Sequence[str] = ()
    case_id: str | None = None
    question: str = ""
    clinical_context: str = ""
    specimen_site: str = ""
    specimen_procedure: str = ""
    stains: str = ""
    initial_diagnosis: str = ""
    initial_status: InitialStatus = InitialStatus.PROVISIONAL
    initial_confidence: Confidence = Confidence.MODERATE
    urgency: Urgency = Urgency.ROUTINE
    addressee: str | None = None  # a username
    pool: str | None = None  # "centre/specialty", e.g. "rouen/soft_tissue_bone"
    network: str = ""
    consent: Consent | None = None
    material: Sequence[Material] = ()


@dataclass(frozen=True)
class Opinion:
    diagnosis: str
    agreement: Agreement
    confidence: Confidence
    comments: str = ""


@dataclass(frozen=True)
class Part:
    """Who the caller is to one consultation."""

    actors: frozenset[Actor]
    addressing: Addressing

    @property
    def requester_side(self) -> bool:
        return Actor.REQUESTER in self.actors


@dataclass
class Filters:
    box: str = "all"  # inbox (to me, my pools), outbox (from me), all
    states: Sequence[State] = ()
    urgency: Urgency | None = None
    overdue: bool = False
    q: str = ""  # the case reference or the question, folded
    sort: str = "-updated"  # updated, due, created; "-" first = descending
    limit: int = 50
    offset: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def _check_id(value: str) -> None:
    if not looks_like_id(value):
        raise ConsultationNotFound(f"no consultation {value!r}")


class Consultations:
    def __init__(self, db: Database, config: ConsultationConfig | None = None) -> None:
        self.db = db
        self.config = config or ConsultationConfig()

    # -- who the caller is -----------------------------------------------------------

    def part(self, session: Session, row: Consultation, principal: Principal) -> Part:
        actors: set[Actor] = set()
        if row.requester_id == principal.user_id:
            actors.add(Actor.REQUESTER)
        if principal.user_id in (row.addressee_user_id, row.assignee_id):
            actors.add(Actor.CONSULTANT)
        if row.pool_id is not None:
            member = session.get(PoolMember, (row.pool_id, principal.user_id))
            if member is not None:
                actors.add(Actor.POOL_MANAGER if member.manager else Actor.POOL_MEMBER)
        addressing = Addressing.POOL if row.pool_id else Addressing.USER
        return Part(frozenset(actors), addressing)

    def _load(
        self, session: Session, principal: Principal, consultation_id: str, *, lock: bool = False
    ) -> tuple[Consultation, Part]:
        _check_id(consultation_id)
        query = select(Consultation).where(Consultation.id == consultation_id)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise ConsultationNotFound(f"no consultation {consultation_id!r}")
        part = self.part(session, row, principal)
        if not sees(part.addressing, State(row.state), part.actors):
            raise ConsultationNotFound(f"no consultation {consultation_id!r}")
        return row, part

    # -- the request ---------------------------------------------------------------

    def create(self, principal: Principal, draft: Draft) -> str:
        """A new draft of the caller's; returns its id."""
        if not principal.has(*REQUEST_ROLES):
            raise Forbidden("only pathologists send second-opinion requests")
        with self.db.session() as session, session.begin():
            row = Consultation(
                id=new_id(),
                state=State.DRAFT.value,
                requester_id=principal.user_id,
                requester_centre=principal.centre,
                created_at=_now(),
                updated_at=_now(),
            )
            session.add(row)
            self._apply_draft(session, principal, row, draft)
            self._event(session, row, principal, "create", State.DRAFT, State.DRAFT)
            return row.id

    def edit(self, principal: Principal, consultation_id: str, draft: Draft, version: int) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            decide(part.addressing, State(row.state), part.actors, Action.EDIT)
            self._check_version(row, version)
            self._apply_draft(session, principal, row, draft)
            self._bump(session, row, version)

    def _apply_draft(
        self, session: Session, principal: Principal, row: Consultation, draft: Draft
    ) -> None:
        if len(draft.slide_ids) > MAX_SLIDES:
            raise InvalidConsultation(f"at most {MAX_SLIDES} slides per request")
        case: Case | None = None
        if draft.case_id is not None:
            case = session.get(Case, draft.case_id) if looks_like_id(draft.case_id) else None
            if case is None or case.centre != principal.centre:
                raise InvalidConsultation(f"no case {draft.case_id!r} in your centre")
        slides: list[Slide] = []
        for slide_id in dict.fromkeys(draft.slide_ids):
            slide = session.get(Slide, slide_id) if looks_like_id(slide_id) else None
            if slide is None or slide.centre != principal.centre:
                raise InvalidConsultation(f"no slide {slide_id!r} in your centre")
            if case is not None and slide.case_id != case.id:
                raise InvalidConsultation(f"slide {slide_id!r} is not of case {case.reference}")
            slides.append(slide)
        if draft.addressee is not None and draft.pool is not None:
            raise InvalidConsultation("address the request to a pathologist or a pool, not both")
        row.addressee_user_id = row.pool_id = row.addressee_centre = None
        if draft.addressee is not None:
            user = session.scalar(
                select(User).where(User.username == draft.addressee.strip().lower())
            )
            if user is None or not user.active or Role.PATHOLOGIST.value not in user.roles:
                raise InvalidConsultation(f"no pathologist {draft.addressee!r}")
            if user.id == principal.user_id:
                raise InvalidConsultation("a second opinion is asked of someone else")
            row.addressee_user_id, row.addressee_centre = user.id, user.centre
        elif draft.pool is not None:
            pool = self._pool_named(session, draft.pool)
            row.pool_id, row.addressee_centre = pool.id, pool.centre
        if draft.network and draft.network not in NETWORKS:
            raise InvalidConsultation(f"unknown network {draft.network!r}: one of {NETWORKS}")
        row.case_id = case.id if case else None
        row.case_reference = case.reference if case else ""
        row.question = draft.question
        row.clinical_context = draft.clinical_context
        row.specimen_site = draft.specimen_site
        row.specimen_procedure = draft.specimen_procedure
        row.stains = draft.stains
        row.initial_diagnosis = draft.initial_diagnosis
        row.initial_status = draft.initial_status.value
        row.initial_confidence = draft.initial_confidence.value
        row.urgency = draft.urgency.value
        row.network = draft.network
        row.consent = draft.consent.value if draft.consent else ""
        session.flush()
        session.query(ConsultationSlide).filter_by(consultation_id=row.id).delete()
        for position, slide in enumerate(slides):
            session.add(
                ConsultationSlide(consultation_id=row.id, slide_id=slide.id, position=position)
            )
        session.query(ConsultationMaterial).filter_by(consultation_id=row.id).delete()
        for item in draft.material:
            if item.kind not in ("block", "glass"):
                raise InvalidConsultation("material is a 'block' or a 'glass' slide")
            session.add(
                ConsultationMaterial(
                    id=new_id(), consultation_id=row.id, kind=item.kind, label=item.label
                )
            )

    def _pool_named(self, session: Session, name: str) -> Pool:
        centre, _, specialty = name.partition("/")
        pool = session.scalar(
            select(Pool).where(Pool.centre == centre, Pool.specialty == specialty)
        )
        if pool is None:
            raise InvalidConsultation(f"no pool {name!r} (centre/specialty)")
        return pool

    # -- transitions ------------------------------------------------------------------

    def submit(self, principal: Principal, consultation_id: str, version: int) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.SUBMIT)
            self._check_version(row, version)
            missing = [
                name
                for name, value in (
                    ("question", row.question.strip()),
                    ("initial_diagnosis", row.initial_diagnosis.strip()),
                    ("addressee or pool", row.addressee_user_id or row.pool_id),
                    ("consent", row.consent),
                )
                if not value
            ]
            slides = self._slide_ids(session, row.id)
            if not slides:
                missing.append("slides")
            if missing:
                raise InvalidConsultation("a request needs: " + ", ".join(missing))
            now = _now()
            days = (
                self.config.urgent_days
                if row.urgency == Urgency.URGENT
                else self.config.routine_days
            )
            row.submitted_at, row.due_at = now, now + timedelta(days=days)
            recipients: list[str]
            if row.addressee_user_id is not None:
                recipients = [row.addressee_user_id]
            else:
                recipients = self._pool_users(session, row.pool_id or "", managers=True)
            for user_id in recipients:
                self._grant(session, principal, row, user_id)
            self._move(session, row, principal, Action.SUBMIT, to, version)
            notifications.notify(
                session,
                recipients,
                Event.SUBMITTED,
                "consultation",
                row.id,
                self._text(session, row, "A second-opinion request awaits you"),
                self._link(row),
            )

    def withdraw(self, principal: Principal, consultation_id: str, version: int) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            before = State(row.state)
            to = decide(part.addressing, before, part.actors, Action.WITHDRAW)
            self._check_version(row, version)
            self._end_grants(session, principal, row)
            told = self._others(session, row, principal) if before is not State.DRAFT else []
            self._move(session, row, principal, Action.WITHDRAW, to, version)
            row.closed_at = _now()
            notifications.notify(
                session, told, Event.WITHDRAWN, "consultation", row.id,
                self._text(session, row, "A second-opinion request was withdrawn"),
                self._link(row),
            )  # fmt: skip

    def assign(
        self, principal: Principal, consultation_id: str, username: str, version: int
    ) -> None:
        """A pool manager gives the request to one of the pool's members (again: reassigns)."""
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.ASSIGN)
            self._check_version(row, version)
            user = session.scalar(select(User).where(User.username == username.strip().lower()))
            members = set(self._pool_users(session, row.pool_id or "", managers=False))
            if user is None or user.id not in members or not user.active:
                raise InvalidConsultation(f"{username!r} is not a member of this pool")
            previous = row.assignee_id
            if previous is not None and previous != user.id:
                self._end_grants(session, principal, row, only_user=previous)
            row.assignee_id = user.id
            self._grant(session, principal, row, user.id)
            self._move(session, row, principal, Action.ASSIGN, to, version, {"to": user.username})
            notifications.notify(
                session, [user.id], Event.ASSIGNED, "consultation", row.id,
                self._text(session, row, "A second-opinion request was assigned to you"),
                self._link(row),
            )  # fmt: skip

    def accept(self, principal: Principal, consultation_id: str, version: int) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.ACCEPT)
            self._check_version(row, version)
            if row.assignee_id is None:
                # A named addressee, or a pool member taking an unassigned request.
                row.assignee_id = principal.user_id
                self._grant(session, principal, row, principal.user_id)
            row.accepted_at = row.accepted_at or _now()
            self._move(session, row, principal, Action.ACCEPT, to, version)
            notifications.notify(
                session, [row.requester_id], Event.ACCEPTED, "consultation", row.id,
                self._text(session, row, "Your second-opinion request was accepted"),
                self._link(row),
            )  # fmt: skip

    def decline(
        self, principal: Principal, consultation_id: str, reason: str, version: int
    ) -> None:
        if not reason.strip():
            raise InvalidConsultation("say why the request is declined")
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.DECLINE)
            self._check_version(row, version)
            detail = {"reason": reason}
            if to is State.SUBMITTED:
                # Handed back to the pool: its managers assign it again.
                self._end_grants(session, principal, row, only_user=row.assignee_id)
                row.assignee_id = None
                told = self._pool_users(session, row.pool_id or "", managers=True)
                event, text = Event.RETURNED, "A second-opinion request came back to your pool"
            else:
                row.decline_reason = reason
                self._end_grants(session, principal, row)
                row.closed_at = _now()
                told = [row.requester_id]
                event, text = Event.DECLINED, "Your second-opinion request was declined"
            self._move(session, row, principal, Action.DECLINE, to, version, detail)
            notifications.notify(
                session, told, event, "consultation", row.id,
                self._text(session, row, text), self._link(row),
            )  # fmt: skip

    def request_info(
        self, principal: Principal, consultation_id: str, question: str, version: int
    ) -> None:
        self._discussed_move(
            principal, consultation_id, version, Action.REQUEST_INFO, question,
            Event.INFO_REQUESTED, "More information is asked about your request",
        )  # fmt: skip

    def provide_info(
        self, principal: Principal, consultation_id: str, answer: str, version: int
    ) -> None:
        self._discussed_move(
            principal, consultation_id, version, Action.PROVIDE_INFO, answer,
            Event.INFO_PROVIDED, "The information you asked for was given",
        )  # fmt: skip

    def _discussed_move(
        self,
        principal: Principal,
        consultation_id: str,
        version: int,
        action: Action,
        text: str,
        event: Event,
        notice: str,
    ) -> None:
        """A transition that carries a message of the thread (a question, its answer)."""
        if not text.strip():
            raise InvalidConsultation("write the question or the information")
        if len(text) > MAX_MESSAGE:
            raise InvalidConsultation(f"at most {MAX_MESSAGE} characters")
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, action)
            self._check_version(row, version)
            message = self._add_message(session, row, principal, "consultation", row.id, text, [])
            self._move(session, row, principal, action, to, version, {"message_id": message.id})
            notifications.notify(
                session, self._others(session, row, principal), event, "consultation", row.id,
                self._text(session, row, notice), self._link(row),
            )  # fmt: skip

    def answer(
        self, principal: Principal, consultation_id: str, opinion: Opinion, version: int
    ) -> None:
        if not opinion.diagnosis.strip():
            raise InvalidConsultation("the opinion needs a diagnosis")
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.ANSWER)
            self._check_version(row, version)
            row.answer_diagnosis = opinion.diagnosis
            row.answer_agreement = opinion.agreement.value
            row.answer_confidence = opinion.confidence.value
            row.answer_comments = opinion.comments
            row.answered_at = _now()
            self._move(
                session, row, principal, Action.ANSWER, to, version,
                {"agreement": opinion.agreement.value},
            )  # fmt: skip
            notifications.notify(
                session, [row.requester_id], Event.ANSWERED, "consultation", row.id,
                self._text(session, row, "Your second-opinion request was answered"),
                self._link(row),
            )  # fmt: skip

    def addendum(self, principal: Principal, consultation_id: str, text: str, version: int) -> None:
        if not text.strip():
            raise InvalidConsultation("an addendum needs its text")
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.ADDENDUM)
            self._check_version(row, version)
            self._move(session, row, principal, Action.ADDENDUM, to, version, {"text": text})
            notifications.notify(
                session, [row.requester_id], Event.ADDENDUM, "consultation", row.id,
                self._text(session, row, "An addendum was added to an opinion you asked for"),
                self._link(row),
            )  # fmt: skip

    def close(self, principal: Principal, consultation_id: str, version: int) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            to = decide(part.addressing, State(row.state), part.actors, Action.CLOSE)
            self._check_version(row, version)
            self._end_grants(session, principal, row)
            row.closed_at = _now()
            self._move(session, row, principal, Action.CLOSE, to, version)
            notifications.notify(
                session, self._others(session, row, principal), Event.CLOSED, "consultation",
                row.id, self._text(session, row, "A consultation you answered was closed"),
                self._link(row),
            )  # fmt: skip

    def track_material(
        self, principal: Principal, consultation_id: str, material_id: str, status: MaterialStatus
    ) -> None:
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id, lock=True)
            decide(part.addressing, State(row.state), part.actors, Action.TRACK_MATERIAL)
            item = (
                session.get(ConsultationMaterial, material_id)
                if looks_like_id(material_id)
                else None
            )
            if item is None or item.consultation_id != row.id:
                raise InvalidConsultation(f"no material {material_id!r} in this consultation")
            item.status, item.updated_at = status.value, _now()
            self._event(
                session, row, principal, Action.TRACK_MATERIAL.value, State(row.state),
                State(row.state), {"material": item.label, "status": status.value},
            )  # fmt: skip

    def viewed(self, principal: Principal, consultation_id: str) -> None:
        """The consultant opened it: the first time is the turnaround's first view."""
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id)
            if part.requester_side or row.first_viewed_at is not None:
                return
            if row.state in (State.DRAFT, *ENDED):
                return
            changed = session.execute(
                update(Consultation)
                .where(Consultation.id == row.id, Consultation.first_viewed_at.is_(None))
                .values(first_viewed_at=_now())
            )
            if changed.rowcount:  # type: ignore[attr-defined]
                self._event(
                    session, row, principal, "first_view", State(row.state), State(row.state)
                )

    # -- threads ---------------------------------------------------------------------

    def comment(
        self,
        principal: Principal,
        consultation_id: str,
        body: str,
        *,
        subject_type: str = "consultation",
        subject_id: str | None = None,
        links: Sequence[dict[str, Any]] = (),
    ) -> Message:
        if not body.strip():
            raise InvalidConsultation("a message needs its text")
        if len(body) > MAX_MESSAGE:
            raise InvalidConsultation(f"at most {MAX_MESSAGE} characters")
        with self.db.session() as session, session.begin():
            row, part = self._load(session, principal, consultation_id)
            decide(part.addressing, State(row.state), part.actors, Action.COMMENT)
            if subject_type == "annotation":
                # A thread on one annotation of the consultation's layer.
                from_layer = session.scalar(
                    select(func.count()).where(
                        Annotation.id == subject_id, Annotation.consultation_id == row.id
                    )
                )
                if not from_layer:
                    raise InvalidConsultation(f"no annotation {subject_id!r} in this consultation")
            elif subject_type != "consultation":
                raise InvalidConsultation("a thread is on the consultation or on an annotation")
            slides = set(self._slide_ids(session, row.id))
            public = self._public_ids(session, list(slides))
            for link in links:
                if link.get("slide") not in slides and link.get("slide") not in public.values():
                    raise InvalidConsultation("a view link points at one of the request's slides")
            message = self._add_message(
                session, row, principal, subject_type, subject_id or row.id, body, list(links)
            )
            mentioned = self._mentioned(session, row, body)
            message.mentions = [u.username for u in mentioned]
            others = self._others(session, row, principal)
            notifications.notify(
                session, [u for u in others if u not in {m.id for m in mentioned}],
                Event.MESSAGE, "consultation", row.id,
                self._text(session, row, "A new message in a consultation"), self._link(row),
            )  # fmt: skip
            notifications.notify(
                session, [m.id for m in mentioned if m.id != principal.user_id],
                Event.MENTION, "consultation", row.id,
                self._text(session, row, "You were mentioned in a consultation"),
                self._link(row),
            )  # fmt: skip
            session.flush()
            session.expunge(message)
            return message

    def _add_message(
        self,
        session: Session,
        row: Consultation,
        principal: Principal,
        subject_type: str,
        subject_id: str,
        body: str,
        links: list[dict[str, Any]],
    ) -> Message:
        message = Message(
            id=new_id(),
            consultation_id=row.id,
            subject_type=subject_type,
            subject_id=subject_id,
            author_id=principal.user_id,
            body=body,
            links=links,
            mentions=[],
            created_at=_now(),
        )
        session.add(message)
        return message

    def _mentioned(self, session: Session, row: Consultation, body: str) -> list[User]:
        """The consultation's participants named as @username in the text (others are
        not told: a mention does not share the consultation)."""
        names = {
            word[1:].rstrip(".,;:!?)").lower() for word in body.split() if word.startswith("@")
        }
        if not names:
            return []
        participants = set(self._participants(session, row))
        users = session.scalars(select(User).where(User.username.in_(names))).all()
        return [u for u in users if u.id in participants]

    # -- reading -----------------------------------------------------------------------

    def get(self, principal: Principal, consultation_id: str) -> ConsultationView:
        with self.db.session() as session:
            row, part = self._load(session, principal, consultation_id)
            return self._view(session, row, part, principal)

    def _view(
        self, session: Session, row: Consultation, part: Part, principal: Principal
    ) -> ConsultationView:
        slide_ids = self._slide_ids(session, row.id)
        public = self._public_ids(session, slide_ids)
        # The requester's side addresses its own slides by id; the consultant's by opaque id.
        own = principal.centre == row.requester_centre
        slides = [sid if own else public.get(sid, "") for sid in slide_ids]
        names = self._usernames(
            session,
            [row.requester_id, row.addressee_user_id, row.assignee_id]
            + [e.actor_id for e in self._events(session, row.id)]
            + [m.author_id for m in self._messages(session, row.id)],
        )
        pool = session.get(Pool, row.pool_id) if row.pool_id else None
        allowed = [action.value for action in Action if _allowed(part, State(row.state), action)]
        return ConsultationView(
            row=row,
            slides=slides,
            pool=f"{pool.centre}/{pool.specialty}" if pool else None,
            pool_name=pool.name if pool else "",
            names=names,
            events=list(self._events(session, row.id)),
            messages=list(self._messages(session, row.id)),
            material=list(
                session.scalars(
                    select(ConsultationMaterial)
                    .where(ConsultationMaterial.consultation_id == row.id)
                    .order_by(ConsultationMaterial.label)
                )
            ),
            actors=sorted(a.value for a in part.actors),
            allowed=allowed,
        )

    def find(self, principal: Principal, filters: Filters) -> tuple[list[Consultation], int]:
        """The caller's inbox (to them, their pools' queues and what they manage), outbox
        (what they asked), or both; newest activity first unless sorted otherwise."""
        with self.db.session() as session:
            pools = session.execute(
                select(PoolMember.pool_id, PoolMember.manager).where(
                    PoolMember.user_id == principal.user_id
                )
            ).all()
            managed = [p for p, manager in pools if manager]
            member = [p for p, manager in pools if not manager]
            inbox = or_(
                and_(
                    Consultation.addressee_user_id == principal.user_id,
                    Consultation.state != State.DRAFT.value,
                ),
                Consultation.assignee_id == principal.user_id,
                and_(Consultation.pool_id.in_(managed), Consultation.state != State.DRAFT.value)
                if managed
                else false(),
                and_(Consultation.pool_id.in_(member), Consultation.state == State.SUBMITTED.value)
                if member
                else false(),
            )
            outbox = Consultation.requester_id == principal.user_id
            where = {"inbox": inbox, "outbox": outbox}.get(filters.box, or_(inbox, outbox))
            query: Select[Any] = select(Consultation).where(where)
            if filters.states:
                query = query.where(Consultation.state.in_([s.value for s in filters.states]))
            if filters.urgency is not None:
                query = query.where(Consultation.urgency == filters.urgency.value)
            if filters.overdue:
                query = query.where(
                    Consultation.state.in_([s.value for s in OPEN]),
                    Consultation.due_at < _now(),
                )
            if filters.q.strip():
                needle = f"%{filters.q.strip().lower()}%"
                query = query.where(
                    or_(
                        func.lower(Consultation.case_reference).like(needle),
                        func.lower(Consultation.question).like(needle),
                    )
                )
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            key = filters.sort.lstrip("-")
            column = {
                "updated": Consultation.updated_at,
                "due": Consultation.due_at,
                "created": Consultation.created_at,
            }.get(key)
            if column is None:
                raise InvalidConsultation("sort by updated, due or created")
            descending = filters.sort.startswith("-")
            order = column.desc() if descending else column.asc()
            tie = Consultation.id.desc() if descending else Consultation.id.asc()
            rows = session.scalars(
                query.order_by(order.nulls_last(), tie).limit(filters.limit).offset(filters.offset)
            ).all()
            for r in rows:
                session.expunge(r)
            return list(rows), total

    def names(self, user_ids: Sequence[str | None]) -> dict[str, str]:
        with self.db.session() as session:
            return self._usernames(session, user_ids)

    # -- reminders (the hub's scheduled task) ------------------------------------------------

    def remind(self, due_within: timedelta = timedelta(hours=24)) -> int:
        """Tells the consultant (or the pool's managers, while unassigned) that a request is
        due soon, then that it is overdue: once each, whatever the hub processes (each
        reminder is claimed by a conditional update)."""
        sent = 0
        now = _now()
        for column, event, text, limit in (
            (Consultation.reminded_due_at, Event.DUE_SOON, "A second-opinion request is due soon",
             now + due_within),
            (Consultation.reminded_overdue_at, Event.OVERDUE, "A second-opinion request is overdue",
             now),
        ):  # fmt: skip
            with self.db.session() as session:
                ids = session.scalars(
                    select(Consultation.id).where(
                        Consultation.state.in_([s.value for s in OPEN]),
                        Consultation.due_at < limit,
                        column.is_(None),
                    )
                ).all()
            for consultation_id in ids:
                with self.db.session() as session, session.begin():
                    won = session.execute(
                        update(Consultation)
                        .where(Consultation.id == consultation_id, column.is_(None))
                        .values({column.key: now})
                    ).rowcount  # type: ignore[attr-defined]
                    row = session.get(Consultation, consultation_id)
                    if not won or row is None:
                        continue
                    if row.state == State.INFO_REQUESTED:
                        told = [row.requester_id]  # the answer waits on the requester
                    elif row.assignee_id or row.addressee_user_id:
                        told = [row.assignee_id or row.addressee_user_id or ""]
                    else:
                        told = self._pool_users(session, row.pool_id or "", managers=True)
                    notifications.notify(
                        session, told, event, "consultation", row.id,
                        self._text(session, row, text), self._link(row),
                    )  # fmt: skip
                    sent += 1
        return sent

    # -- pools --------------------------------------------------------------------------

    def add_pool(self, principal: Principal, centre: str, specialty: str, name: str = "") -> Pool:
        """A centre admin (of that centre) or a hub admin opens a specialty pool."""
        _may_admin(principal, centre)
        if specialty not in SPECIALTIES:
            raise InvalidConsultation(f"unknown specialty {specialty!r}: one of {SPECIALTIES}")
        with self.db.session() as session, session.begin():
            if session.get(Centre, centre) is None:
                raise InvalidConsultation(f"unknown centre {centre!r}")
            existing = session.scalar(
                select(Pool).where(Pool.centre == centre, Pool.specialty == specialty)
            )
            if existing is not None:
                session.expunge(existing)
                return existing
            pool = Pool(id=new_id(), centre=centre, specialty=specialty, name=name or specialty)
            session.add(pool)
            session.flush()
            session.expunge(pool)
            return pool

    def set_member(
        self, principal: Principal, pool_name: str, username: str, *, manager: bool
    ) -> None:
        with self.db.session() as session, session.begin():
            pool = self._pool_named(session, pool_name)
            _may_admin(principal, pool.centre)
            user = session.scalar(select(User).where(User.username == username.strip().lower()))
            if user is None or user.centre != pool.centre:
                raise InvalidConsultation(f"no user {username!r} in {pool.centre}")
            member = session.get(PoolMember, (pool.id, user.id))
            if member is None:
                session.add(PoolMember(pool_id=pool.id, user_id=user.id, manager=manager))
            else:
                member.manager = manager

    def pools(self) -> list[tuple[Pool, list[tuple[str, bool]]]]:
        with self.db.session() as session:
            out = []
            for pool in session.scalars(select(Pool).order_by(Pool.centre, Pool.specialty)):
                members = session.execute(
                    select(User.username, PoolMember.manager)
                    .join(User, User.id == PoolMember.user_id)
                    .where(PoolMember.pool_id == pool.id)
                    .order_by(User.username)
                ).all()
                session.expunge(pool)
                out.append((pool, [(u, bool(m)) for u, m in members]))
            return out

    # -- internals ---------------------------------------------------------------------

    def _check_version(self, row: Consultation, version: int) -> None:
        if row.version != version:
            raise Conflict(
                f"the consultation changed meanwhile (version {row.version}, not {version}): "
                "reload it"
            )

    def _bump(self, session: Session, row: Consultation, version: int) -> None:
        # Compare-and-set: on SQLite (no FOR UPDATE) two writers may both have read
        # `version`; exactly one update matches.
        changed = session.execute(
            update(Consultation)
            .where(Consultation.id == row.id, Consultation.version == version)
            .values(version=version + 1, updated_at=_now())
            .execution_options(synchronize_session=False)
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            raise Conflict("the consultation changed meanwhile: reload it")
        row.version = version + 1

    def _move(
        self,
        session: Session,
        row: Consultation,
        principal: Principal,
        action: Action,
        to: State,
        version: int,
        detail: dict[str, Any] | None = None,
    ) -> None:
        before = State(row.state)
        row.state = to.value
        session.flush()
        self._bump(session, row, version)
        self._event(session, row, principal, action.value, before, to, detail)

    def _event(
        self,
        session: Session,
        row: Consultation,
        principal: Principal,
        action: str,
        before: State,
        to: State,
        detail: dict[str, Any] | None = None,
    ) -> None:
        session.add(
            ConsultationEvent(
                id=new_id(),
                consultation_id=row.id,
                at=_now(),
                actor_id=principal.user_id,
                action=action,
                from_state=before.value,
                to_state=to.value,
                detail=detail or {},
            )
        )
        audit.record(
            session,
            AuditAction.CONSULTATION,
            actor=principal,
            target_type="consultation",
            target_id=row.id,
            detail={"action": action, "from": before.value, "to": to.value},
        )

    def _grant(
        self, session: Session, principal: Principal, row: Consultation, user_id: str
    ) -> None:
        """The user's de-identified view of the request's slides, until the due date and
        the margin; given on the requester's behalf."""
        live = set(
            session.scalars(
                select(Grant.slide_id)
                .join(ConsultationGrant, ConsultationGrant.grant_id == Grant.id)
                .where(
                    ConsultationGrant.consultation_id == row.id,
                    Grant.grantee_user_id == user_id,
                    Grant.revoked_at.is_(None),
                )
            )
        )
        due = row.due_at or (_now() + timedelta(days=self.config.routine_days))
        expires = due + timedelta(days=self.config.grant_margin_days)
        for slide_id in self._slide_ids(session, row.id):
            if slide_id in live:
                continue
            grant = grant_rows.add_grant(
                session,
                principal,
                grantor_id=row.requester_id,
                grantor_centre=row.requester_centre,
                purpose=Purpose.SECOND_OPINION,
                slide_id=slide_id,
                grantee_user_id=user_id,
                expires_at=expires,
                legal_basis=f"second-opinion request {row.id}",
            )
            session.add(ConsultationGrant(consultation_id=row.id, grant_id=grant.id))

    def _end_grants(
        self,
        session: Session,
        principal: Principal,
        row: Consultation,
        only_user: str | None = None,
    ) -> None:
        query = (
            select(Grant)
            .join(ConsultationGrant, ConsultationGrant.grant_id == Grant.id)
            .where(ConsultationGrant.consultation_id == row.id, Grant.revoked_at.is_(None))
        )
        if only_user is not None:
            query = query.where(Grant.grantee_user_id == only_user)
        for grant in session.scalars(query):
            grant_rows.end_grant(session, principal, grant)

    def _slide_ids(self, session: Session, consultation_id: str) -> list[str]:
        return list(
            session.scalars(
                select(ConsultationSlide.slide_id)
                .where(ConsultationSlide.consultation_id == consultation_id)
                .order_by(ConsultationSlide.position)
            )
        )

    def _public_ids(self, session: Session, slide_ids: Sequence[str]) -> dict[str, str]:
        if not slide_ids:
            return {}
        return {
            s.id: s.public_id or ""
            for s in session.scalars(select(Slide).where(Slide.id.in_(slide_ids)))
        }

    def _pool_users(self, session: Session, pool_id: str, *, managers: bool) -> list[str]:
        query = select(PoolMember.user_id).where(PoolMember.pool_id == pool_id)
        if managers:
            query = query.where(PoolMember.manager.is_(True))
        return sorted(session.scalars(query))

    def _participants(self, session: Session, row: Consultation) -> list[str]:
        people = [row.requester_id, row.addressee_user_id, row.assignee_id]
        if row.pool_id:
            people += self._pool_users(session, row.pool_id, managers=True)
        return [p for p in dict.fromkeys(people) if p]

    def _others(self, session: Session, row: Consultation, principal: Principal) -> list[str]:
        return [p for p in self._participants(session, row) if p != principal.user_id]

    def _events(self, session: Session, consultation_id: str) -> Sequence[ConsultationEvent]:
        return session.scalars(
            select(ConsultationEvent)
            .where(ConsultationEvent.consultation_id == consultation_id)
            .order_by(ConsultationEvent.at, ConsultationEvent.id)
        ).all()

    def _messages(self, session: Session, consultation_id: str) -> Sequence[Message]:
        return session.scalars(
            select(Message)
            .where(Message.consultation_id == consultation_id)
            .order_by(Message.created_at, Message.id)
        ).all()

    def _usernames(self, session: Session, user_ids: Sequence[str | None]) -> dict[str, str]:
        wanted = {u for u in user_ids if u}
        if not wanted:
            return {}
        return {u.id: u.username for u in session.scalars(select(User).where(User.id.in_(wanted)))}

    def _text(self, session: Session, row: Consultation, what: str) -> str:
        centre = session.get(Centre, row.requester_centre)
        urgent = " (urgent)" if row.urgency == Urgency.URGENT else ""
        return f"{what}{urgent} — from {centre.name if centre else row.requester_centre}"

    def _link(self, row: Consultation) -> str:
        return f"{self.config.public_url.rstrip('/')}/consultations/{row.id}"


@dataclass
class ConsultationView:
    row: Consultation
    slides: list[str]  # as the caller addresses them
    pool: str | None
    pool_name: str
    names: dict[str, str]
    events: list[ConsultationEvent]
    messages: list[Message]
    material: list[ConsultationMaterial]
    actors: list[str]
    allowed: list[str]


def _may_admin(principal: Principal, centre: str) -> None:
    if principal.has(Role.HUB_ADMIN):
        return
    if principal.has(Role.CENTRE_ADMIN) and principal.centre == centre:
        return
    raise Forbidden("pools are managed by their centre's admins")


def _allowed(part: Part, state: State, action: Action) -> bool:
    try:
        decide(part.addressing, state, part.actors, action)
    except ExchangeError:
        return False
    return True
