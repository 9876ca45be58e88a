"""HTTP routes of the hub: the slide catalogue, centres and uploads."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.core.models import Case, Slide
from exchange.core.statuses import SlideStatus, is_viewable
from exchange.slides import listing
from exchange.slides.conversion import job
from exchange.slides.ingest import ingest_path
from exchange.slides.listing import Order
from exchange.web.auth import CurrentUser
from exchange.web.deps import CatalogueDep, PolicyDep, StoreDep, VisibleSlide
from exchange.web.hub import HubDep
from exchange.web.listing import ListQuery
from tiles.deid import View, public_date, public_vendor
from tiles.errors import InvalidRequest

router = APIRouter(prefix="/api", tags=["slides"])


class CentreOut(BaseModel):
    code: str
    name: str
    city: str


class LevelOut(BaseModel):
    width: int
    height: int
    downsample: float


class SlideOut(BaseModel):
    id: str
    name: str
    centre: str
    status: str
    # Whether the viewer can open the slide: the viewer reads this, not a list of statuses.
    viewable: bool
    error: str | None
    vendor: str
    width: int
    height: int
    mpp: float | None
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    created_at: datetime
    dzi_url: str
    iiif_url: str
    thumbnail_url: str
    # "deidentified": no label, macro, annotations or overlays here (tiles.deid).
    view: View = View.FULL
    # Its case (addressed as the case is seen: id, or opaque id on a de-identified view)
    # and where it was cut from; None while it is to be linked.
    case_id: str | None = None
    case_reference: str | None = None
    part: str | None = None
    block: str | None = None
    level: str | None = None
    stain: str | None = None
    # Full view only: how its case was found (barcode, file_name, lis, manual), its label's
    # barcode text.
    link_source: str | None = None
    barcode: str | None = None


class SlidePageOut(BaseModel):
    items: list[SlideOut]
    # Every slide the filters match that the caller may see, over all pages.
    total: int
    # Give it back as `cursor` for the next page; None on the last one.
    next_cursor: str | None


class ConversionOut(BaseModel):
    # queued, converting, ready (tiles from the pyramid), skipped (the original is as
    # good: note says why), failed (error says why; tiles from the original)
    status: str
    percent: float
    note: str | None
    error: str | None
    seconds: float | None


class SlideDetailOut(SlideOut):
    levels: list[LevelOut]
    associated_images: dict[str, str]
    size_bytes: int
    # Allow-listed vendor metadata under our own keys (tiles.deid.public_metadata).
    metadata: dict[str, Any]
    # The normalised pyramid (exchange.slides.conversion); None for slides that never had one.
    conversion: ConversionOut | None = None


def summary(slide: Slide, view: View = View.FULL, case: Case | None = None) -> dict[str, object]:
    """The slide as listed. A de-identified view is addressed and named by the opaque id,
    with no file name, no error text (it may quote the file name), the date cut to its
    year, its case by the case's opaque id."""
    full = view is View.FULL
    address = slide.id if full else slide.public_id or ""
    out: dict[str, object] = {
        "id": address,
        "name": slide.name if full else address,
        "centre": slide.centre,
        "status": slide.status,
        "viewable": is_viewable(slide.status),
        "error": slide.error if full else None,
        "vendor": slide.vendor if full else public_vendor(slide.vendor),
        "width": slide.width,
        "height": slide.height,
        "mpp": slide.mpp_x if slide.mpp_x is not None else slide.mpp_y,
        "mpp_x": slide.mpp_x,
        "mpp_y": slide.mpp_y,
        "objective_power": slide.objective_power,
        "created_at": slide.created_at if full else public_date(slide.created_at),
        "dzi_url": f"/slides/{address}.dzi",
        "iiif_url": f"/iiif/3/{address}/info.json",
        "thumbnail_url": f"/api/slides/{address}/thumbnail",
    }
    if not full:
        out["view"] = View.DEIDENTIFIED
    if case is not None and case.id == slide.case_id:
        out["case_id"] = case.id if full else case.public_id
        out["case_reference"] = case.reference
    out |= {"part": slide.part, "block": slide.block, "level": slide.level, "stain": slide.stain}
    if full:
        out |= {"link_source": slide.link_source, "barcode": slide.barcode}
    return out


def _metadata(slide: Slide) -> dict[str, Any]:
    if slide.public_metadata is not None:
        return dict(slide.public_metadata)
    # Ingested before the allow-list was recorded: what the catalogue row itself holds.
    out: dict[str, Any] = {
        "vendor": public_vendor(slide.vendor),
        "width": slide.width,
        "height": slide.height,
        "levels": slide.levels,
    }
    for key, value in (
        ("mpp_x", slide.mpp_x),
        ("mpp_y", slide.mpp_y),
        ("objective_power", slide.objective_power),
    ):
        if value is not None:
            out[key] = value
    return out


def _detail(slide: Slide, view: View = View.FULL, case: Case | None = None) -> SlideDetailOut:
    w0 = slide.levels[0][0]
    full = view is View.FULL
    return SlideDetailOut(
        **summary(slide, view, case),  # type: ignore[arg-type]
        levels=[LevelOut(width=w, height=h, downsample=w0 / w) for w, h in slide.levels],
        # Empty on the de-identified view: label and macro show the glass label (tiles.deid).
        associated_images={
            name: f"/api/slides/{slide.id}/associated/{name}" for name in slide.associated
        }
        if full
        else {},
        size_bytes=slide.size_bytes,
        metadata=_metadata(slide),
    )


@router.get("/centres")
def list_centres(_user: CurrentUser, catalogue: CatalogueDep) -> list[CentreOut]:
    return [CentreOut(code=c.code, name=c.name, city=c.city) for c in catalogue.db.centres()]


@router.get("/slides")
def list_slides(
    principal: CurrentUser,
    policy: PolicyDep,
    hub: HubDep,
    filters: Annotated[ListQuery, Query()],
    view: Annotated[
        View, Query(description="deidentified: every slide as another centre sees it")
    ] = View.FULL,
    status: Annotated[SlideStatus | None, Query()] = None,
    linked: Annotated[bool | None, Query(description="false: the slides to be linked")] = None,
    case: Annotated[str | None, Query(max_length=64, description="a case's id")] = None,
) -> SlidePageOut:
    """A page of the slides the caller may see (exchange.access.policy): their centre's,
    and those shared with them (de-identified, by opaque id); oldest first unless
    `order=desc`. Filters, search and counts are the database's (exchange.slides.listing)."""
    branches = policy.slide_branches(principal, shared_only=filters.shared)
    with hub.db.session() as session:
        case_filter = None
        if case is not None:
            found = policy.case_access(session, principal, case)
            case_filter = found[0].id if found else "-"  # an unseen case lists nothing
        page = listing.list_slides(
            session,
            branches,
            filters.filters(status=status, linked=linked, case_id=case_filter),
            filters.page(default_order=Order.ASC),
            hub.cursors,
        )
        cases = _cases_of(session, page.items)
    out = []
    for slide in page.items:
        shown = View.DEIDENTIFIED if view is not View.FULL else policy.view_of(principal, slide)
        out.append(SlideOut(**summary(slide, shown, cases.get(slide.case_id or ""))))  # type: ignore[arg-type]
    return SlidePageOut(items=out, total=page.total, next_cursor=page.next_cursor)


def _cases_of(session: Session, slides: Sequence[Slide]) -> dict[str, Case]:
    ids = {s.case_id for s in slides if s.case_id}
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(ids)))}


@router.get("/slides/{slide_id}")
def slide_detail(access: VisibleSlide, catalogue: CatalogueDep) -> SlideDetailOut:
    # The row as it is now: the policy's cached decision may hold an older copy (status).
    slide, view = catalogue.get(access.slide.id) or access.slide, access.view
    with catalogue.session() as session:
        case = session.get(Case, slide.case_id) if slide.case_id else None
    out = _detail(slide, view, case)
    conversion = job(catalogue, slide.id)
    if conversion is not None:
        # The error may quote the file name: never on the de-identified view.
        full = view is View.FULL
        out.conversion = ConversionOut(
            status=conversion.status,
            percent=conversion.percent,
            note=conversion.note,
            error=conversion.error if full else None,
            seconds=conversion.seconds,
        )
    return out


@router.post("/slides", status_code=201)
async def upload_slide(
    catalogue: CatalogueDep,
    store: StoreDep,
    principal: CurrentUser,
    policy: PolicyDep,
    file: Annotated[UploadFile, File(description="one slide file (SVS, NDPI, TIFF, DICOM...)")],
    centre: Annotated[str | None, Form()] = None,
) -> SlideDetailOut:
    """Single-file upload into the caller's centre; validated exactly like `iain ingest`."""
    centre = centre or principal.centre
    policy.may_upload(principal, centre)
    name = Path(file.filename or "").name
    if not name or name in (".", ".."):
        raise InvalidRequest("the upload needs a file name")
    with tempfile.TemporaryDirectory(prefix="iain-upload-") as tmp:
        path = Path(tmp) / name
        with path.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, file.file, out, 1024 * 1024)
        slide = await run_in_threadpool(ingest_path, store, catalogue, path, centre)
    return _detail(slide)
