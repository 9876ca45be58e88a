"""The lab system's feed (LIS): case records pushed over HTTP (POST /api/lis/records) or
imported from a CSV or JSON export (`iain lis import`), in the same shape.

A record is a case (reference, organ, specimen type, received date, status) and the slides
the lab made of it, each known by its label: the text of its barcode, or the scanner's
file name. A slide scanned already (same barcode, or same file name) joins its case now;
one still to come is kept as an ExpectedSlide and joins when it is ingested
(exchange.slides.linking). Importing the same records again changes nothing.

Why not HL7 v2 (ORM^O01) here: the three centres' interface engines already turn their
LIS messages into CSV or JSON over HTTPS for other consumers, an MLLP listener is one more
open port and parser facing the hospital network, and HL7 v2 dialects differ per LIS
vendor (the fields that carry block and stain are site-specific). An ORM adapter can map
onto `CaseRecord` outside the hub if a centre needs one."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from exchange.core.errors import ExchangeError
from exchange.core.models import ExpectedSlide, Slide
from exchange.core.statuses import CaseStatus, LinkSource
from exchange.slides.cases import CaseFields, Placement, case_for, place_slide

MAX_RECORDS = 5000
MAX_LABEL = 256
CSV_COLUMNS = (
    "reference",
    "organ",
    "specimen_type",
    "received_on",
    "status",
    "label",
    "part",
    "block",
    "level",
    "stain",
)


class InvalidRecords(ExchangeError):
    """A record the feed cannot take (no reference, a bad date or status): 400, and
    nothing of the batch is written."""

    http_status = 400


@dataclass(frozen=True)
class SlideRecord:
    label: str
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True)
class CaseRecord:
    reference: str
    fields: CaseFields = field(default_factory=CaseFields)
    slides: tuple[SlideRecord, ...] = ()


@dataclass
class ImportResult:
    cases: int = 0
    slides_linked: int = 0  # scanned already: placed now
    slides_expected: int = 0  # still to come: placed at ingest
    linked_ids: list[str] = field(default_factory=list)


def import_records(session: Session, centre: str, records: Sequence[CaseRecord]) -> ImportResult:
    """Writes the records into `centre`, in the caller's transaction."""
    if len(records) > MAX_RECORDS:
        raise InvalidRecords(f"at most {MAX_RECORDS} records at once")
    result = ImportResult()
    for record in records:
        case = case_for(session, centre, record.reference, record.fields)
        result.cases += 1
        for slide_record in record.slides:
            label = slide_record.label.strip()
            if not label or len(label) > MAX_LABEL:
                raise InvalidRecords(
                    f"case {record.reference!r}: a slide label of 1 to 256 characters"
                )
            expected = session.get(ExpectedSlide, (centre, label))
            if expected is None:
                expected = ExpectedSlide(centre=centre, label=label)
                session.add(expected)
            expected.case_reference = case.reference
            placement = slide_record.placement
            expected.part, expected.block = placement.part, placement.block
            expected.level, expected.stain = placement.level, placement.stain
            scanned = session.scalars(
                select(Slide).where(
                    Slide.centre == centre, or_(Slide.barcode == label, Slide.name == label)
                )
            ).all()
            for slide in scanned:
                place_slide(session, slide, case, placement, LinkSource.LIS)
                result.linked_ids.append(slide.id)
            if scanned:
                result.slides_linked += len(scanned)
            else:
                result.slides_expected += 1
    return result


# -- reading exports ------------------------------------------------------------------------


def _text(value: object, what: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int):
        raise InvalidRecords(f"{what} must be text")
    text = str(value).strip()
    if len(text) > limit:
        raise InvalidRecords(f"{what} is longer than {limit} characters")
    return text or None


def _date(value: object, what: str) -> date | None:
    text = _text(value, what, 32)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRecords(f"{what} {text!r} is no date (YYYY-MM-DD)") from None


def _status(value: object, what: str) -> CaseStatus | None:
    text = _text(value, what, 20)
    if text is None:
        return None
    try:
        return CaseStatus(text)
    except ValueError:
        allowed = ", ".join(CaseStatus)
        raise InvalidRecords(f"{what} {text!r} is none of {allowed}") from None


def _placement(row: dict[str, object], where: str) -> Placement:
    return Placement(
        part=_text(row.get("part"), f"{where}: part", 20),
        block=_text(row.get("block"), f"{where}: block", 20),
        level=_text(row.get("level"), f"{where}: level", 20),
        stain=_text(row.get("stain"), f"{where}: stain", 100),
    )


def _fields(row: dict[str, object], where: str) -> CaseFields:
    return CaseFields(
        organ=_text(row.get("organ"), f"{where}: organ", 100),
        specimen_type=_text(row.get("specimen_type"), f"{where}: specimen_type", 100),
        received_on=_date(row.get("received_on"), f"{where}: received_on"),
        status=_status(row.get("status"), f"{where}: status"),
    )


def records_from_json(items: Iterable[object]) -> list[CaseRecord]:
    """Records from JSON objects: {"reference", "organ"?, "specimen_type"?, "received_on"?,
    "status"?, "slides"?: [{"label", "part"?, "block"?, "level"?, "stain"?}]}."""
    out: list[CaseRecord] = []
    for number, item in enumerate(items, 1):
        where = f"record {number}"
        if not isinstance(item, dict):
            raise InvalidRecords(f"{where} is not an object")
        reference = _text(item.get("reference"), f"{where}: reference", 100)
        if reference is None:
            raise InvalidRecords(f"{where} has no reference")
        slides = item.get("slides") or []
        if not isinstance(slides, list):
            raise InvalidRecords(f"{where}: slides must be a list")
        slide_records = []
        for index, slide in enumerate(slides, 1):
            if not isinstance(slide, dict):
                raise InvalidRecords(f"{where}, slide {index} is not an object")
            label = _text(slide.get("label"), f"{where}, slide {index}: label", MAX_LABEL)
            if label is None:
                raise InvalidRecords(f"{where}, slide {index} has no label")
            slide_records.append(SlideRecord(label, _placement(slide, f"{where}, slide {index}")))
        out.append(CaseRecord(reference, _fields(item, where), tuple(slide_records)))
        if len(out) > MAX_RECORDS:
            raise InvalidRecords(f"at most {MAX_RECORDS} records at once")
    return out


def records_from_csv(text: str) -> list[CaseRecord]:
    """Records from CSV with a header row of CSV_COLUMNS (any order, unknown ones refused):
    one row per slide, the case's columns repeated; a row without label is a case alone."""
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
    if not reader.fieldnames or "reference" not in reader.fieldnames:
        raise InvalidRecords("the CSV needs a header row with a 'reference' column")
    if unknown:
        raise InvalidRecords(f"unknown CSV columns: {', '.join(sorted(unknown))}")
    cases: dict[str, dict[str, object]] = {}
    for row in reader:
        reference = (row.get("reference") or "").strip()
        entry = cases.setdefault(reference, {**row, "slides": []})
        for key in ("organ", "specimen_type", "received_on", "status"):
            if row.get(key):
                entry[key] = row[key]
        if row.get("label"):
            slides = entry["slides"]
            assert isinstance(slides, list)
            slides.append(row)
    return records_from_json(cases.values())


def records_from_file(name: str, content: bytes) -> list[CaseRecord]:
    """A .csv or .json export's records."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRecords(f"{name} is not UTF-8 text") from None
    if name.lower().endswith(".csv"):
        return records_from_csv(text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRecords(f"{name} is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]
    if not isinstance(data, list):
        raise InvalidRecords(f"{name}: a list of records, or {{'records': [...]}}")
    return records_from_json(data)
