"""HTTP routes of the hub: the slide catalogue, centres and uploads."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from exchange.core.models import Slide
from exchange.core.statuses import is_viewable
from exchange.slides.conversion import job
from exchange.slides.ingest import ingest_path
from exchange.web.auth import CurrentUser
from exchange.web.deps import CatalogueDep, PolicyDep, StoreDep, VisibleSlide
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


def _summary(slide: Slide, view: View = View.FULL) -> dict[str, object]:
    """The slide as listed. A de-identified view is addressed and named by the opaque id,
    with no file name, no error text (it may quote the file name), the date cut to its
    year."""
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


def _detail(slide: Slide, view: View = View.FULL) -> SlideDetailOut:
    w0 = slide.levels[0][0]
    full = view is View.FULL
    return SlideDetailOut(
        **_summary(slide, view),  # type: ignore[arg-type]
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
    view: Annotated[
        View, Query(description="deidentified: every slide as another centre sees it")
    ] = View.FULL,
) -> list[SlideOut]:
    """The slides the caller may see (exchange.access.policy): their centre's, and the shared ones
    (de-identified, by opaque id)."""
    visible = policy.visible(principal)
    out = []
    for access in visible:
        shown = View.DEIDENTIFIED if view is not View.FULL else access.view
        if shown is View.DEIDENTIFIED and access.slide.public_id is None:
            continue
        out.append(SlideOut(**_summary(access.slide, shown)))  # type: ignore[arg-type]
    return out


@router.get("/slides/{slide_id}")
def slide_detail(access: VisibleSlide, catalogue: CatalogueDep) -> SlideDetailOut:
    # The row as it is now: the policy's cached decision may hold an older copy (status).
    slide, view = catalogue.get(access.slide.id) or access.slide, access.view
    out = _detail(slide, view)
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
