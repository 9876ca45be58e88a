"""Cases: a centre's specimens under a pseudonymous reference, grouping its slides so that
they are shared together (a grant on a case covers every slide attached to it).

The functions take the caller's session and write in its transaction. Who may write cases
(pathologists and centre admins, as for sharing) is the caller's check (exchange.access)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.core.errors import ExchangeError
from exchange.core.ids import looks_like_id, new_id
from exchange.core.models import Case, Slide
from exchange.core.principal import Principal


class CaseNotFound(ExchangeError):
    """No such case or slide in the caller's centre: 404."""

    http_status = 404


class DuplicateCase(ExchangeError):
    """The centre has a case of that reference already: 400."""

    http_status = 400


def create_case(
    session: Session,
    principal: Principal,
    reference: str,
    *,
    organ: str = "",
    specimen_type: str = "",
) -> Case:
    """A new case of the caller's centre, flushed (a duplicate reference is refused now)."""
    case = Case(
        id=new_id(),
        centre=principal.centre,
        reference=reference.strip(),
        organ=organ,
        specimen_type=specimen_type,
    )
    session.add(case)
    try:
        session.flush()
    except IntegrityError:  # the caller's transaction rolls back with the error
        raise DuplicateCase(f"case {reference!r} exists already in your centre") from None
    return case


def attach_slide(session: Session, principal: Principal, case_id: str, slide_id: str) -> None:
    """Puts a slide of the caller's centre into one of its cases."""
    for value in (case_id, slide_id):
        if not looks_like_id(value):
            raise CaseNotFound(f"no such slide or case {value!r}")
    case = session.get(Case, case_id)
    slide = session.get(Slide, slide_id)
    if case is None or case.centre != principal.centre:
        raise CaseNotFound(f"no case {case_id!r}")
    if slide is None or slide.centre != principal.centre:
        raise CaseNotFound(f"no slide {slide_id!r}")
    slide.case_id = case.id
