"""Which case a new slide belongs to, found at ingest from, in order:

1. its label's barcodes (read in the ingest sandbox, tiles.labels): a code the lab system
   announced (exchange.slides.lis, an ExpectedSlide), else the centre's barcode rule;
2. its file name: announced by the lab system as such, else the centre's file-name rule.

A rule is a regular expression with named groups: `case` (the reference, required), and
`part`, `block`, `level`, `stain` if the label or name carries them, e.g.
`^(?P<case>[A-Z]\\d{2}-\\d{5})_(?P<block>[A-Z]\\d+)_(?P<stain>[^_.]+)` for
"B26-00123_A1_HER2.svs". A slide nothing matches stays unlinked: the worklist lists it
under "to be linked", for a technician to place by hand."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.core.errors import ExchangeError
from exchange.core.models import Centre, ExpectedSlide, Slide
from exchange.core.statuses import LinkSource
from exchange.slides.cases import InvalidCase, Placement, case_for, place_slide

GROUPS = frozenset({"case", "part", "block", "level", "stain"})
MAX_RULE = 1000
# A rule runs on short texts only (a file name, a barcode's text): bounded backtracking.
MAX_TEXT = 256


class InvalidRule(ExchangeError):
    """A rule that is no regular expression, or has no `case` group: 400."""

    http_status = 400


def compile_rule(rule: str) -> re.Pattern[str]:
    """The rule as a pattern; InvalidRule says what is wrong with it."""
    if len(rule) > MAX_RULE:
        raise InvalidRule(f"a rule is at most {MAX_RULE} characters")
    try:
        pattern = re.compile(rule)
    except re.error as exc:
        raise InvalidRule(f"not a regular expression: {exc}") from None
    names = set(pattern.groupindex)
    if "case" not in names:
        raise InvalidRule("a rule needs a (?P<case>...) group: the case reference")
    if names - GROUPS:
        unknown = ", ".join(sorted(names - GROUPS))
        raise InvalidRule(f"unknown groups {unknown}: use {', '.join(sorted(GROUPS))}")
    return pattern


@dataclass(frozen=True)
class Identity:
    """A slide's case reference and placement, and where they were read."""

    reference: str
    placement: Placement
    source: LinkSource
    barcode: str | None = None


def apply_rule(rule: str | None, text: str) -> tuple[str, Placement] | None:
    """The case reference and placement a rule reads in `text` (None: no match)."""
    if not rule or not text or len(text) > MAX_TEXT:
        return None
    try:
        match = compile_rule(rule).search(text)
    except InvalidRule:
        return None  # rules are checked when set; one stored by hand is skipped, not fatal
    if match is None or not (match.group("case") or "").strip():
        return None
    found = match.groupdict()
    return found["case"].strip(), Placement(
        part=found.get("part"),
        block=found.get("block"),
        level=found.get("level"),
        stain=found.get("stain"),
    )


def identify(
    session: Session, centre: str, file_name: str, barcodes: tuple[str, ...]
) -> Identity | None:
    """What the barcodes, then the file name, say of a new slide of `centre`."""
    row = session.get(Centre, centre)
    stem = PurePath(file_name).stem
    for code in barcodes:
        expected = _expected(session, centre, code)
        if expected is not None:
            return Identity(*expected, source=LinkSource.LIS, barcode=code)
        read = apply_rule(row.barcode_rule if row else None, code)
        if read is not None:
            return Identity(*read, source=LinkSource.BARCODE, barcode=code)
    barcode = barcodes[0] if barcodes else None
    for label in (file_name, stem):
        expected = _expected(session, centre, label)
        if expected is not None:
            return Identity(*expected, source=LinkSource.LIS, barcode=barcode)
    read = apply_rule(row.file_name_rule if row else None, file_name)
    if read is not None:
        return Identity(*read, source=LinkSource.FILE_NAME, barcode=barcode)
    return None


def _expected(session: Session, centre: str, label: str) -> tuple[str, Placement] | None:
    if not label or len(label) > 256:
        return None
    found = session.scalars(
        select(ExpectedSlide).where(ExpectedSlide.centre == centre, ExpectedSlide.label == label)
    ).first()
    if found is None:
        return None
    return found.case_reference, Placement(
        part=found.part, block=found.block, level=found.level, stain=found.stain
    )


def link_new_slide(session: Session, slide: Slide, barcodes: tuple[str, ...]) -> None:
    """Places a slide being recorded into its case, if its label or name says which; in
    the caller's transaction (the slide and its link are recorded together)."""
    identity = identify(session, slide.centre, slide.name, barcodes)
    slide.barcode = (barcodes[0] if barcodes else None) if identity is None else identity.barcode
    if identity is not None:
        try:
            case = case_for(session, slide.centre, identity.reference)
            place_slide(session, slide, case, identity.placement, identity.source)
            return
        except InvalidCase:
            pass  # a reference or block the rule read badly: to be linked by hand
    place_slide(session, slide, None, Placement(), LinkSource.MANUAL)  # its name's terms
