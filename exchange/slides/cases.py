"""Cases: a centre's specimens under a pseudonymous reference, grouping its slides (its
parts, blocks and stains) for the worklist, and so that they are shared together (a grant
on a case covers every slide attached to it).

The functions take the caller's session and write in its transaction. Who may write cases
(exchange.access) is the caller's check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from exchange.core.errors import ExchangeError
from exchange.core.ids import looks_like_id, new_id, new_public_id
from exchange.core.models import Case, Slide
from exchange.core.statuses import CaseStatus, LinkSource
from exchange.slides.search import index_case, index_slide, reference_key, stain_key

MAX_REFERENCE = 100


class CaseNotFound(ExchangeError):
    """No such case or slide in the caller's centre: 404."""

    http_status = 404


class DuplicateCase(ExchangeError):
    """The centre has a case of that reference already: 400."""

    http_status = 400


class InvalidCase(ExchangeError):
    """A reference with no letter or digit, a value too long: 400."""

    http_status = 400


@dataclass(frozen=True)
class CaseFields:
    """What is known of a case besides its reference (None: leave as it is)."""

    organ: str | None = None
    specimen_type: str | None = None
    received_on: date | None = None
    status: CaseStatus | None = None


@dataclass(frozen=True)
class Placement:
    """Where a slide was cut from, and how it is stained (None: not known)."""

    part: str | None = None
    block: str | None = None
    level: str | None = None
    stain: str | None = None


def _key(reference: str) -> str:
    key = reference_key(reference)
    if not key or len(reference.strip()) > MAX_REFERENCE:
        raise InvalidCase(f"{reference[:MAX_REFERENCE]!r} is no case reference")
    return key


def _apply(case: Case, fields: CaseFields) -> None:
    if fields.organ is not None:
        case.organ = fields.organ.strip()[:100]
    if fields.specimen_type is not None:
        case.specimen_type = fields.specimen_type.strip()[:100]
    if fields.received_on is not None:
        case.received_on = fields.received_on
    if fields.status is not None:
        case.status = CaseStatus(fields.status)
    case.updated_at = datetime.now(UTC)


def create_case(
    session: Session,
    centre: str,
    reference: str,
    fields: CaseFields = CaseFields(),
) -> Case:
    """A new case of `centre`; a reference the centre has already is refused."""
    case = _insert(session, centre, reference, fields)
    if case is None:
        raise DuplicateCase(f"case {reference!r} exists already in your centre")
    return case


def _insert(session: Session, centre: str, reference: str, fields: CaseFields) -> Case | None:
    """Inserts the case unless the centre has its reference (None then): INSERT ... ON
    CONFLICT DO NOTHING, so that two transactions creating one case at once (two slides
    of a case ingested together) leave one case and neither fails."""
    now = datetime.now(UTC)
    case = Case(
        id=new_id(),
        centre=centre,
        reference=reference.strip(),
        reference_key=_key(reference),
        public_id=new_public_id(),
        organ="",
        specimen_type="",
        received_on=now.date(),
        status=CaseStatus.RECEIVED,
        created_at=now,
    )
    _apply(case, fields)
    columns = {c.key: getattr(case, c.key) for c in Case.__table__.columns}
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(Case).values(columns)
    inserted = session.execute(
        statement.on_conflict_do_nothing().returning(Case.__table__.c.id)
    ).scalar()
    if inserted is None:
        return None
    case = session.get_one(Case, columns["id"])
    index_case(session, case)
    return case


def find_case(session: Session, centre: str, reference: str) -> Case | None:
    key = reference_key(reference)
    if not key:
        return None
    return session.scalars(
        select(Case).where(Case.centre == centre, Case.reference_key == key)
    ).first()


def case_for(
    session: Session, centre: str, reference: str, fields: CaseFields = CaseFields()
) -> Case:
    """The centre's case of that reference, created if new, updated with `fields`: what
    ingest and the lab system's feed call, concurrently too (a case created by another
    transaction meanwhile is found, not duplicated)."""
    case = find_case(session, centre, reference) or _insert(session, centre, reference, fields)
    if case is None:  # inserted by another transaction since we looked
        case = find_case(session, centre, reference)
        assert case is not None
    return update_case(session, case, fields)


def update_case(session: Session, case: Case, fields: CaseFields) -> Case:
    _apply(case, fields)
    index_case(session, case)
    return case


def place_slide(
    session: Session, slide: Slide, case: Case | None, placement: Placement, source: LinkSource
) -> None:
    """Puts `slide` into `case` (None: unlinks it) with its block and stain."""
    if case is not None and case.centre != slide.centre:
        raise CaseNotFound(f"no case {case.id!r}")  # a case never holds another centre's
    slide.case_id = case.id if case is not None else None
    slide.part = _short(placement.part, 20)
    slide.block = _short(placement.block, 20)
    slide.level = _short(placement.level, 20)
    slide.stain = _short(placement.stain, 100)
    slide.stain_key = stain_key(slide.stain)
    slide.link_source = source if case is not None else None
    index_slide(session, slide)


def _short(value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    if len(value) > limit:
        raise InvalidCase(f"{value[:limit]!r}... is longer than {limit} characters")
    return value or None


def attach_slide(session: Session, centre: str, case_id: str, slide_id: str) -> None:
    """Puts a slide of `centre` into one of its cases (keeping its block and stain)."""
    for value in (case_id, slide_id):
        if not looks_like_id(value):
            raise CaseNotFound(f"no such slide or case {value!r}")
    case = session.get(Case, case_id)
    slide = session.get(Slide, slide_id)
    if case is None or case.centre != centre:
        raise CaseNotFound(f"no case {case_id!r}")
    if slide is None or slide.centre != centre:
        raise CaseNotFound(f"no slide {slide_id!r}")
    place_slide(session, slide, case, placement_of(slide), LinkSource.MANUAL)


def placement_of(slide: Slide) -> Placement:
    return Placement(part=slide.part, block=slide.block, level=slide.level, stain=slide.stain)


def rename_case(session: Session, case: Case, reference: str) -> None:
    """Gives a case another reference (a typing error corrected); one the centre has
    already is refused."""
    key = _key(reference)
    other = find_case(session, case.centre, reference)
    if other is not None and other.id != case.id:
        raise DuplicateCase(f"case {reference!r} exists already in your centre")
    case.reference = reference.strip()
    case.reference_key = key
    index_case(session, case)
