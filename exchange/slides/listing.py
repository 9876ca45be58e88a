"""The worklist's pages: cases (with their slides) and slides, filtered, searched, sorted
and paged in the database, for catalogues of hundreds of thousands of slides.

Access. What a caller may list comes as `Branch`es (exchange.access.policy builds them):
disjoint conditions — their own centre's rows, other centres' rows shared with them — each
with the search terms it may match. Each branch is one indexed query, ordered and limited
by the database; the pages of the branches are merged here. A row outside every branch is
never read, counted nor matched: a filter or a search cannot hint at it.

Paging. Keyset ("seek") cursors: a page ends at a row, the next starts after its sort key,
so rows inserted meanwhile neither shift nor repeat the pages (offsets would) and a page
deep in the list costs what the first does. A cursor is sealed (authenticated encryption
with the hub's key): it holds full dates and ids of rows a de-identified view does not
show, and a forged one is refused."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ColumnElement, and_, exists, func, literal, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from exchange.core.errors import ExchangeError
from exchange.core.models import Case, SearchTerm, Slide
from exchange.slides.search import query_words, reference_key, stain_key

T = TypeVar("T")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
# A case row shows at most this many of its slides (a case has a handful; a huge one
# says "and N more" and opens whole).
MAX_SLIDES_PER_CASE = 24


class InvalidListing(ExchangeError):
    """A malformed cursor, sort or filter: 400."""

    http_status = 400


class Sort(StrEnum):
    DATE = "date"  # cases: received; slides: added
    REFERENCE = "reference"  # the case reference (folded)
    STATUS = "status"  # then date


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class Branch:
    """One disjoint part of what a caller may list: `rows`, a condition on the listed
    table (Case or Slide); `terms`, the SearchTerm rows its search may match."""

    rows: ColumnElement[bool]
    terms: ColumnElement[bool]


@dataclass(frozen=True)
class Filters:
    centres: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    stain: str | None = None
    status: str | None = None  # the case's status (cases), the slide's (slides)
    organ: str | None = None
    reference: str | None = None  # a case reference prefix
    query: str = ""
    # Slides only: linked to a case or not; within one case.
    linked: bool | None = None
    case_id: str | None = None


@dataclass(frozen=True)
class PageRequest:
    sort: Sort = Sort.DATE
    order: Order = Order.DESC
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None


@dataclass
class CaseRow:
    case: Case
    slides: list[Slide] = field(default_factory=list)
    slide_count: int = 0
    stains: list[str] = field(default_factory=list)


class Cursors:
    """Seals and opens cursors with a key derived from the hub's secret."""

    def __init__(self, secret: str) -> None:
        key = hashlib.sha256(b"iain worklist cursor\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, what: str, request: PageRequest, key: Sequence[Any]) -> str:
        payload = [what, request.sort, request.order, [_plain(v) for v in key]]
        return self._fernet.encrypt(json.dumps(payload).encode()).decode()

    def open(self, what: str, request: PageRequest) -> list[Any] | None:
        if request.cursor is None:
            return None
        if len(request.cursor) > 2000:
            raise InvalidListing("that cursor is not one this hub gave")
        try:
            payload = json.loads(self._fernet.decrypt(request.cursor.encode()))
        except (InvalidToken, ValueError):
            raise InvalidListing("that cursor is not one this hub gave") from None
        if payload[:3] != [what, request.sort, request.order]:
            raise InvalidListing("that cursor belongs to another list or sort: start again")
        return list(payload[3])


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


# -- filters --------------------------------------------------------------------------------


def _prefix(column: InstrumentedAttribute[str], key: str) -> ColumnElement[bool]:
    # Keys are [0-9a-z] compared bytewise (models.FoldedKey): "~" is past "z".
    return and_(column >= key, column < key + "~")


def _case_filters(f: Filters) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if f.centres:
        out.append(Case.centre.in_(f.centres))
    if f.date_from is not None:
        out.append(Case.received_on >= f.date_from)
    if f.date_to is not None:
        out.append(Case.received_on <= f.date_to)
    if f.status:
        out.append(Case.status == f.status)
    if f.organ:
        out.append(func.lower(Case.organ) == f.organ.strip().lower())
    if f.reference:
        key = reference_key(f.reference)
        if not key:
            raise InvalidListing("a reference filter needs letters or digits")
        out.append(_prefix(Case.reference_key, key))
    return out


def _stain(f: Filters) -> str | None:
    if not f.stain:
        return None
    key = stain_key(f.stain)
    if key is None:
        raise InvalidListing("a stain filter needs letters or digits")
    return key


def _term_match(word: str, branch: Branch, column: Any, *extra: ColumnElement[bool]) -> Any:
    return select(column).where(_prefix(SearchTerm.term, word), branch.terms, *extra)


# -- cases ----------------------------------------------------------------------------------


def _case_key(sort: Sort) -> list[Any]:
    if sort is Sort.REFERENCE:
        return [Case.reference_key, Case.id]
    if sort is Sort.STATUS:
        return [Case.status, Case.received_on, Case.id]
    return [Case.received_on, Case.id]


def _case_values(case: Case, sort: Sort) -> tuple[Any, ...]:
    if sort is Sort.REFERENCE:
        return (case.reference_key, case.id)
    if sort is Sort.STATUS:
        return (case.status, case.received_on, case.id)
    return (case.received_on, case.id)


def _decode_case_key(values: list[Any], sort: Sort) -> tuple[Any, ...]:
    try:
        if sort is Sort.REFERENCE:
            return (str(values[0]), str(values[1]))
        if sort is Sort.STATUS:
            return (str(values[0]), date.fromisoformat(values[1]), str(values[2]))
        return (date.fromisoformat(values[0]), str(values[1]))
    except (IndexError, TypeError, ValueError):
        raise InvalidListing("that cursor is not one this hub gave") from None


def _seek(columns: list[Any], after: tuple[Any, ...] | None, order: Order) -> list[Any]:
    if after is None:
        return []
    key = tuple_(*columns)
    # Typed literals: each value is bound as its column stores it (SQLite's datetimes).
    value = tuple_(*(literal(v, type_=c.type) for c, v in zip(columns, after, strict=True)))
    return [key < value if order is Order.DESC else key > value]


def _ordered(columns: list[Any], order: Order) -> list[Any]:
    return [c.desc() if order is Order.DESC else c.asc() for c in columns]


def list_cases(
    session: Session,
    branches: Sequence[Branch],
    filters: Filters,
    page: PageRequest,
    cursors: Cursors,
    slide_rows: Callable[[Sequence[str]], ColumnElement[bool]],
) -> Page[CaseRow]:
    """A page of cases, each with its slides (those `slide_rows(case_ids)` lets through:
    the caller's slide scope), newest first by default."""
    limit = max(1, min(page.limit, MAX_LIMIT))
    after = cursors.open("cases", page)
    seek_after = None if after is None else _decode_case_key(after, page.sort)
    conditions = _case_filters(filters)
    stain = _stain(filters)
    # The stain filter two ways: counting, the cases of the slides of that stain (one
    # index range); paging, a check per case as the sort index is walked, which stops
    # once the page is full (SQLite would otherwise sort every case of that stain).
    count_only: list[ColumnElement[bool]] = []
    page_only: list[ColumnElement[bool]] = []
    if stain is not None:
        count_only.append(Case.id.in_(select(Slide.case_id).where(Slide.stain_key == stain)))
        page_only.append(
            exists(select(Slide.id).where(Slide.case_id == Case.id, Slide.stain_key == stain))
        )
    words = query_words(filters.query)
    key = _case_key(page.sort)
    found: list[Case] = []
    total = 0
    for branch in branches:
        where = [branch.rows, *conditions]
        where += [Case.id.in_(_term_match(w, branch, SearchTerm.case_id)) for w in words]
        counted = select(func.count()).select_from(Case).where(*where, *count_only)
        total += session.scalar(counted) or 0
        found += session.scalars(
            select(Case)
            .where(*where, *page_only, *_seek(key, seek_after, page.order))
            .order_by(*_ordered(key, page.order))
            .limit(limit + 1)
        ).all()
    found.sort(key=lambda c: _case_values(c, page.sort), reverse=page.order is Order.DESC)
    more = len(found) > limit
    found = found[:limit]
    rows = {c.id: CaseRow(c) for c in found}
    if rows:
        _add_slides(session, rows, slide_rows(list(rows)), MAX_SLIDES_PER_CASE)
    next_cursor = cursors.seal("cases", page, _case_values(found[-1], page.sort)) if more else None
    return Page([rows[c.id] for c in found], total, next_cursor)


def _add_slides(
    session: Session, rows: dict[str, CaseRow], visible: ColumnElement[bool], most: int
) -> None:
    for slide in session.scalars(
        select(Slide)
        .where(Slide.case_id.in_(list(rows)), visible)
        .order_by(Slide.case_id, Slide.part, Slide.block, Slide.level, Slide.created_at)
    ):
        row = rows[slide.case_id or ""]
        row.slide_count += 1
        if len(row.slides) < most:
            row.slides.append(slide)
        if slide.stain and slide.stain not in row.stains:
            row.stains.append(slide.stain)


def case_with_slides(session: Session, case: Case, visible: ColumnElement[bool]) -> CaseRow:
    """One case with every slide of it that `visible` lets through."""
    rows = {case.id: CaseRow(case)}
    _add_slides(session, rows, visible, most=10_000)
    return rows[case.id]


# -- slides ---------------------------------------------------------------------------------


def _slide_key(sort: Sort) -> list[Any]:
    if sort is Sort.STATUS:
        return [Slide.status, Slide.created_at, Slide.id]
    return [Slide.created_at, Slide.id]


def _slide_values(slide: Slide, sort: Sort) -> tuple[Any, ...]:
    if sort is Sort.STATUS:
        return (slide.status, slide.created_at, slide.id)
    return (slide.created_at, slide.id)


def _decode_slide_key(values: list[Any], sort: Sort) -> tuple[Any, ...]:
    try:
        if sort is Sort.STATUS:
            return (str(values[0]), _moment(values[1]), str(values[2]))
        return (_moment(values[0]), str(values[1]))
    except (IndexError, TypeError, ValueError):
        raise InvalidListing("that cursor is not one this hub gave") from None


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def list_slides(
    session: Session,
    branches: Sequence[Branch],
    filters: Filters,
    page: PageRequest,
    cursors: Cursors,
) -> Page[Slide]:
    """A page of slides; the reference sort is the cases' (slides sort by date or status)."""
    if page.sort is Sort.REFERENCE:
        raise InvalidListing("slides sort by date or status; cases sort by reference")
    limit = max(1, min(page.limit, MAX_LIMIT))
    after = cursors.open("slides", page)
    seek_after = None if after is None else _decode_slide_key(after, page.sort)
    conditions: list[ColumnElement[bool]] = []
    if filters.centres:
        conditions.append(Slide.centre.in_(filters.centres))
    if filters.date_from is not None:
        conditions.append(Slide.created_at >= _day_start(filters.date_from))
    if filters.date_to is not None:
        conditions.append(Slide.created_at < _day_start(filters.date_to + timedelta(days=1)))
    if filters.status:
        conditions.append(Slide.status == filters.status)
    stain = _stain(filters)
    if stain is not None:
        conditions.append(Slide.stain_key == stain)
    if filters.linked is not None:
        conditions.append(Slide.case_id.is_not(None) if filters.linked else Slide.case_id.is_(None))
    if filters.case_id is not None:
        conditions.append(Slide.case_id == filters.case_id)
    case_conditions = _case_filters(Filters(organ=filters.organ, reference=filters.reference))
    if case_conditions:
        conditions.append(Slide.case_id.in_(select(Case.id).where(*case_conditions)))
    words = query_words(filters.query)
    key = _slide_key(page.sort)
    found: list[Slide] = []
    total = 0
    for branch in branches:
        where = [branch.rows, *conditions]
        for word in words:
            # A slide's own words (name, stain), or its case's (reference, organ).
            where.append(
                or_(
                    Slide.id.in_(
                        _term_match(
                            word, branch, SearchTerm.slide_id, SearchTerm.slide_id.is_not(None)
                        )
                    ),
                    Slide.case_id.in_(
                        _term_match(word, branch, SearchTerm.case_id, SearchTerm.slide_id.is_(None))
                    ),
                )
            )
        total += session.scalar(select(func.count()).select_from(Slide).where(*where)) or 0
        found += session.scalars(
            select(Slide)
            .where(*where, *_seek(key, seek_after, page.order))
            .order_by(*_ordered(key, page.order))
            .limit(limit + 1)
        ).all()
    found.sort(key=lambda s: _slide_values(s, page.sort), reverse=page.order is Order.DESC)
    more = len(found) > limit
    found = found[:limit]
    next_cursor = (
        cursors.seal("slides", page, _slide_values(found[-1], page.sort)) if more else None
    )
    return Page(found, total, next_cursor)
