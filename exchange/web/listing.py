"""The worklist's query parameters, shared by GET /api/cases and GET /api/slides:
`limit`, `cursor`, `sort` (date, reference, status), `order` (asc, desc), and the filters
`centre` (repeatable), `since`/`until` (YYYY-MM-DD, inclusive: the case's received date,
the slide's added date), `stain`, `organ`, `reference` (a case reference prefix), `q` (words,
accent- and case-insensitive, each matching the beginning of a word of the reference,
organ, stain or, on the full view, file name) and `shared` (only what other centres share
with the caller)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from exchange.slides import listing
from exchange.slides.listing import Order, Sort


class ListQuery(BaseModel):
    limit: int = Field(default=listing.DEFAULT_LIMIT, ge=1, le=listing.MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=2000)
    sort: Sort = Sort.DATE
    order: Order | None = None
    centre: list[str] = Field(default_factory=list, max_length=20)
    since: date | None = None
    until: date | None = None
    stain: str | None = Field(default=None, max_length=100)
    organ: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, max_length=100)
    q: str = Field(default="", max_length=200)
    shared: bool = False

    def filters(
        self,
        *,
        status: str | None = None,
        linked: bool | None = None,
        case_id: str | None = None,
    ) -> listing.Filters:
        return listing.Filters(
            centres=tuple(c[:32] for c in self.centre),
            date_from=self.since,
            date_to=self.until,
            stain=self.stain or None,
            status=status,
            organ=self.organ or None,
            reference=self.reference or None,
            query=self.q,
            linked=linked,
            case_id=case_id,
        )

    def page(self, default_order: Order) -> listing.PageRequest:
        return listing.PageRequest(
            sort=self.sort, order=self.order or default_order, limit=self.limit, cursor=self.cursor
        )
