"""Catalogue rows at hospital scale, for the worklist's benchmark and paging tests: cases
with their slides (H&E, IHC, special stains) and search terms across the three centres,
written by bulk inserts (500,000 slides in about a minute). The slides have no bytes: each
row points at `pyramid_of` (a real slide's location) or at nothing, which is what the
listing reads anyway."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from exchange.core.db import Database
from exchange.core.ids import new_id, new_public_id
from exchange.core.models import Case, SearchTerm, Slide
from exchange.core.statuses import CaseStatus, LinkSource, SlideStatus
from exchange.slides.search import reference_key, stain_key, terms

CENTRES = ("caen", "lille", "rouen")
ORGANS = ("breast", "colon", "prostate", "lung", "skin", "kidney", "liver", "stomach", "lymph node")
SPECIMENS = ("biopsy", "resection", "excision", "core needle biopsy")
IHC = ("HER2", "ER", "PR", "Ki-67", "CK7", "CK20", "CD20", "CD3", "p53", "PD-L1")
SPECIAL = ("PAS", "Masson", "Giemsa", "Perls")
BATCH = 5000


def _slide_row(
    case: dict[str, Any], index: int, stain: str, block: str, created: datetime
) -> dict[str, Any]:
    slide_id = new_id()
    name = f"{case['reference']}_{block}_{stain.replace(' ', '')}_{index}.svs"
    return {
        "id": slide_id,
        "name": name,
        "centre": case["centre"],
        "status": SlideStatus.READY,
        "vendor": "aperio",
        "reader": "tiff",
        "width": 46000,
        "height": 32914,
        "mpp_x": 0.2498,
        "mpp_y": 0.2498,
        "objective_power": 40.0,
        "levels": [[46000, 32914], [11500, 8228], [2875, 2057]],
        "associated": ["label", "macro", "thumbnail"],
        "main_key": f"slides/{slide_id}/original/{name}",
        "main_size": 1_500_000_000,
        "keys": [f"slides/{slide_id}/original/{name}"],
        "index_key": None,
        "content_hash": new_id(32),
        "size_bytes": 1_500_000_000,
        "created_at": created,
        "public_id": new_public_id(),
        "public_metadata": None,
        "case_id": case["id"],
        "stain": stain,
        "stain_key": stain_key(stain),
        "part": block[0],
        "block": block,
        "level": "1",
        "barcode": f"{case['reference']}|{block}|{stain}",
        "link_source": LinkSource.BARCODE,
    }


def generate(
    cases: int, slides_per_case: float = 5.0, seed: int = 1, days: int = 3 * 365
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(case row, its slide rows), received over the last `days` days, references in each
    centre's own style (Caen "B26-012345", Lille "L2026.012345", Rouen "R26H012345")."""
    rng = random.Random(seed)
    today = date(2026, 12, 1)
    for number in range(cases):
        centre = CENTRES[number % 3]
        received = today - timedelta(days=rng.randrange(days))
        serial = number // 3 + 1
        yy = received.year % 100
        reference = {
            "caen": f"B{yy:02d}-{serial:06d}",
            "lille": f"L{received.year}.{serial:06d}",
            "rouen": f"R{yy:02d}H{serial:06d}",
        }[centre]
        created = datetime(received.year, received.month, received.day, 8, tzinfo=UTC)
        case = {
            "id": new_id(),
            "centre": centre,
            "reference": reference,
            "reference_key": reference_key(reference),
            "public_id": new_public_id(),
            "organ": rng.choice(ORGANS),
            "specimen_type": rng.choice(SPECIMENS),
            "received_on": received,
            "status": rng.choice(list(CaseStatus)),
            "created_at": created,
            "updated_at": created,
        }
        count = max(1, round(rng.gauss(slides_per_case, 1.5)))
        slides = []
        for index in range(count):
            block = f"{'ABC'[index % 3]}{index // 3 + 1}"
            stain = "H&E" if index == 0 else rng.choice(IHC if rng.random() < 0.8 else SPECIAL)
            moment = created + timedelta(hours=2 + index, seconds=rng.randrange(3600))
            slides.append(_slide_row(case, index, stain, block, moment))
        yield case, slides


def _terms(case: dict[str, Any], slides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for term in terms(case["reference"]) | terms(case["organ"]) | terms(case["specimen_type"]):
        out.append(
            {
                "centre": case["centre"],
                "term": term,
                "case_id": case["id"],
                "slide_id": None,
                "public": True,
            }
        )
    for slide in slides:
        public = terms(slide["stain"])
        for term in public | terms(slide["name"]):
            out.append(
                {
                    "centre": slide["centre"],
                    "term": term,
                    "case_id": case["id"],
                    "slide_id": slide["id"],
                    "public": term in public,
                }
            )
    return out


def fill(db: Database, cases: int, slides_per_case: float = 5.0, seed: int = 1) -> int:
    """Writes `cases` generated cases with their slides and terms; the slide count."""
    total = 0
    batch_cases: list[dict[str, Any]] = []
    batch_slides: list[dict[str, Any]] = []
    batch_terms: list[dict[str, Any]] = []

    def flush() -> None:
        with db.engine.begin() as conn:
            conn.execute(insert(Case), batch_cases)
            conn.execute(insert(Slide), batch_slides)
            conn.execute(insert(SearchTerm), batch_terms)
        batch_cases.clear()
        batch_slides.clear()
        batch_terms.clear()

    for case, slides in generate(cases, slides_per_case, seed):
        batch_cases.append(case)
        batch_slides += slides
        batch_terms += _terms(case, slides)
        total += len(slides)
        if len(batch_slides) >= BATCH:
            flush()
    if batch_cases:
        flush()
    return total
