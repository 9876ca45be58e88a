"""The worklist's search: words folded (no accents, no case), kept as search terms
(exchange.core.models.SearchTerm), so that a word typed matches by one index range scan
("réf" finds "REF", "b26-001" finds "B26-00123") on SQLite and PostgreSQL alike, with no
substring scan of 500,000 rows.

A case's terms: its reference (each word and the words joined), organ and specimen type,
all public (the de-identified view shows them). A slide's: its stain (public) and its file
name's words (private: a file name may carry identifiers, so only callers who see the full
view may find a slide by it)."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import ColumnElement, and_, delete
from sqlalchemy.orm import Session

from exchange.core.models import Case, SearchTerm, Slide

TERM_CHARS = 100
# A query's words beyond this are ignored (each is one more index scan).
MAX_WORDS = 6
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """`text` without accents, case folded: "Réf É" -> "ref e"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The folded letter-and-digit runs of `text`."""
    return [w for w in _SEPARATORS.split(fold(text)) if w]


def reference_key(reference: str) -> str:
    """A case reference as compared, sorted and searched: "B26-00123" and "b26 00123" are
    one reference, "b2600123"."""
    return "".join(words(reference))[:TERM_CHARS]


def stain_key(stain: str | None) -> str | None:
    """A stain as filtered: "HER-2", "her2" and "Her 2" are one stain."""
    key = "".join(words(stain or ""))[:TERM_CHARS]
    return key or None


def terms(text: str) -> set[str]:
    """The terms a text is found by: each word, and its words joined (so that a reference
    typed without its separators matches)."""
    found = words(text)
    out = {w[:TERM_CHARS] for w in found}
    if len(found) > 1:
        out.add("".join(found)[:TERM_CHARS])
    return out


def query_words(query: str) -> list[str]:
    """What a search box's text looks for: each space-separated word, folded and joined
    ("B26-001" -> "b26001"); every one must match a term's beginning."""
    out: list[str] = []
    for part in query.split():
        key = "".join(words(part))[:TERM_CHARS]
        if key and key not in out:
            out.append(key)
    return out[:MAX_WORDS]


def index_case(session: Session, case: Case) -> None:
    """(Re)writes a case's own terms, in the caller's transaction."""
    session.execute(
        delete(SearchTerm).where(SearchTerm.case_id == case.id, SearchTerm.slide_id.is_(None))
    )
    found = terms(case.reference) | terms(case.organ) | terms(case.specimen_type)
    session.add_all(
        SearchTerm(centre=case.centre, term=t, case_id=case.id, public=True) for t in found
    )


def index_slide(session: Session, slide: Slide) -> None:
    """(Re)writes a slide's terms (and the case they point to), in the caller's transaction."""
    session.execute(delete(SearchTerm).where(SearchTerm.slide_id == slide.id))
    public = terms(slide.stain or "")
    private = terms(slide.name) - public
    session.add_all(
        SearchTerm(
            centre=slide.centre,
            term=t,
            case_id=slide.case_id,
            slide_id=slide.id,
            public=t in public,
        )
        for t in public | private
    )


def _prefix(word: str) -> ColumnElement[bool]:
    # A range, not LIKE: "%" or "_" typed in the box mean nothing, and both databases scan
    # the (centre, term) index for it (terms are [0-9a-z], compared bytewise: "~" is past "z").
    return and_(SearchTerm.term >= word, SearchTerm.term < word + "~")
