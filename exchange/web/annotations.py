"""HTTP routes of slide annotations: /api/slides/{slide_id}/annotations.

The request bodies' form is checked here, with pydantic: text lengths, colours, kinds.
Geometries are checked by exchange.annotations.service with the hub's one GeoJSON check
(exchange.core.geojson: types, finite numbers, closed rings, vertex counts, the slide's
bounds). Whatever fails is a 400 with a JSON `detail`."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from exchange.annotations import service as svc
from exchange.annotations.service import (
    DEFAULT_COLOUR,
    DEFAULT_KIND,
    KIND_GEOMETRIES,
    MAX_COMMENT,
    MAX_IMPORT_FEATURES,
    MAX_LABEL,
    AnnotationData,
    InvalidAnnotation,
)
from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.web import deps
from exchange.web.auth import CurrentUser
from exchange.web.deps import CatalogueDep

# Annotations belong to the full view of the slide (exchange.access.policy): other callers get 404.
router = APIRouter(
    prefix="/api/slides/{slide_id}/annotations",
    tags=["annotations"],
    dependencies=[Depends(deps.home_slide)],
)
WRITE = [Depends(deps.annotatable_slide)]

COLOUR_PATTERN = r"^#[0-9a-fA-F]{6}$"

# --- GeoJSON geometry ---------------------------------------------------------------------------


class GeometryIn(BaseModel):
    """Only its type is read here: exchange.core.geojson checks the rest, with the slide's
    bounds (exchange.annotations.service)."""

    model_config = ConfigDict(extra="ignore")  # GeoJSON allows foreign members ("bbox"...)

    type: str
    coordinates: Any = None

    def raw(self) -> dict[str, Any]:
        return {"type": self.type, "coordinates": self.coordinates}


def _default_kind(gtype: str) -> str:
    kind = DEFAULT_KIND.get(gtype)
    if kind is None:
        known = ", ".join(DEFAULT_KIND)
        raise InvalidAnnotation(f"geometry type must be one of {known}, not {gtype!r}")
    return kind


# --- IAIN's own feature form -----------------------------------------------------------------

Kind = Literal["point", "rectangle", "ellipse", "polygon", "freehand", "line"]


class AnnotationProperties(BaseModel):
    # What the server writes (created_at, measurements...) may come back: it is ignored.
    model_config = ConfigDict(extra="ignore")

    kind: Kind | None = None
    label: str = Field("", max_length=MAX_LABEL)
    colour: str = Field(
        DEFAULT_COLOUR,
        pattern=COLOUR_PATTERN,
        validation_alias=AliasChoices("colour", "color"),
    )
    comment: str = Field("", max_length=MAX_COMMENT)
    version: Annotated[int, Field(strict=True, ge=1)] | None = None


class AnnotationFeature(BaseModel):
    """One annotation as GeoJSON: {"type": "Feature", "geometry": ..., "properties": ...}."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["Feature"]
    id: str | int | None = None  # ignored: the server names annotations
    geometry: GeometryIn
    properties: AnnotationProperties = Field(
        default_factory=lambda: AnnotationProperties.model_validate({})
    )

    def data(self) -> AnnotationData:
        p = self.properties
        # The kind's geometry types are checked by the service, with the geometry.
        return AnnotationData(
            kind=p.kind or _default_kind(self.geometry.type),
            geometry=self.geometry.raw(),
            label=p.label,
            colour=p.colour.lower(),
            comment=p.comment,
        )


# --- QuPath's feature form (import) -----------------------------------------------------------


class QuPathFeature(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["Feature"]
    geometry: GeometryIn
    properties: dict[str, Any] | None = None

    def data(self) -> list[AnnotationData]:
        props = self.properties or {}
        label = svc.qupath_label(props)
        if len(label) > MAX_LABEL:
            raise InvalidAnnotation(f"a label has at most {MAX_LABEL} characters")
        kind, comment = svc.qupath_metadata(props)
        if len(comment) > MAX_COMMENT:
            raise InvalidAnnotation(f"a comment has at most {MAX_COMMENT} characters")
        colour = svc.qupath_colour(props) or DEFAULT_COLOUR
        geometries = [self.geometry.raw()]
        if self.geometry.type == "MultiPoint":
            # QuPath writes a points annotation as one MultiPoint: a point annotation each.
            points = self.geometry.coordinates
            if not isinstance(points, list) or not 0 < len(points) <= MAX_IMPORT_FEATURES:
                raise InvalidAnnotation(
                    f"a MultiPoint has 1 to {MAX_IMPORT_FEATURES} positions on import"
                )
            geometries = [{"type": "Point", "coordinates": p} for p in points]
        out = []
        for geometry in geometries:
            gtype = geometry["type"]
            fits = kind is not None and gtype in KIND_GEOMETRIES.get(kind, ())
            out.append(
                AnnotationData(
                    kind=kind if fits and kind else _default_kind(gtype),
                    geometry=geometry,
                    label=label,
                    colour=colour,
                    comment=comment,
                )
            )
        return out


class QuPathCollection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["FeatureCollection"]
    features: Annotated[list[QuPathFeature], Field(max_length=MAX_IMPORT_FEATURES)]


QuPathImport = Annotated[QuPathCollection | QuPathFeature, Field(discriminator="type")]
QuPathBody = QuPathImport | Annotated[list[QuPathFeature], Field(max_length=MAX_IMPORT_FEATURES)]

# --- Request bodies ---------------------------------------------------------------------------
# Parsed here rather than by FastAPI: Python's json accepts NaN and Infinity, which GeoJSON does
# not, and a validation error's echo of such input could not be sent back as JSON.

MAX_BODY_BYTES = 256 * 1024 * 1024
T = TypeVar("T")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise InvalidAnnotation(f"the body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidAnnotation(f"the body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise InvalidAnnotation(f"the body is not valid JSON: {exc}") from None


JsonBody = Annotated[Any, Depends(_json_body)]


def _validate(adapter: TypeAdapter[T], body: Any) -> T:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False)[:5]:
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        more = exc.error_count() - len(problems)
        tail = f" (and {more} more)" if more > 0 else ""
        raise InvalidAnnotation("invalid annotation: " + "; ".join(problems) + tail) from None


FEATURE = TypeAdapter(AnnotationFeature)
QUPATH = TypeAdapter(QuPathBody)

# --- Routes -----------------------------------------------------------------------------------


def _json(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code)


@router.get("", summary="All annotations of a slide, as GeoJSON (or QuPath's GeoJSON)")
def list_annotations(
    slide_id: str,
    catalogue: CatalogueDep,
    user: CurrentUser,
    format: Annotated[Literal["geojson", "qupath"], Query()] = "geojson",
) -> JSONResponse:
    slide, rows = svc.list_annotations(catalogue, slide_id)
    if format == "qupath":
        # A download for use outside IAIN: audited (the viewer's own reads are not).
        audit.record_now(
            catalogue.db,
            AuditAction.EXPORT_ANNOTATIONS,
            actor=user,
            target_type="slide",
            target_id=slide.id,
            detail={"format": "qupath", "count": len(rows)},
        )
        return _json(svc.feature_collection(svc.qupath_feature(r) for r in rows))
    return _json(svc.feature_collection(svc.feature(r, slide) for r in rows))


@router.post(
    "", status_code=201, dependencies=WRITE, summary="Add one annotation (a GeoJSON Feature)"
)
async def create_annotation(
    slide_id: str, catalogue: CatalogueDep, raw: JsonBody, user: CurrentUser
) -> JSONResponse:
    body = _validate(FEATURE, raw)
    slide, row = await run_in_threadpool(
        svc.create_annotation, catalogue, slide_id, body.data(), user
    )
    return _json(svc.feature(row, slide), 201)


@router.post(
    "/import",
    status_code=201,
    dependencies=WRITE,
    summary="Add the features of a QuPath GeoJSON export (FeatureCollection, Feature or array)",
)
async def import_qupath(
    slide_id: str, catalogue: CatalogueDep, raw: JsonBody, user: CurrentUser
) -> JSONResponse:
    body = _validate(QUPATH, raw)
    if isinstance(body, QuPathCollection):
        features = body.features
    elif isinstance(body, QuPathFeature):
        features = [body]
    else:
        features = body
    items = [item for f in features for item in f.data()]
    if not items:
        raise InvalidAnnotation("no features to import")
    slide, rows = await run_in_threadpool(svc.create_annotations, catalogue, slide_id, items, user)
    return _json(svc.feature_collection(svc.feature(r, slide) for r in rows), 201)


@router.get("/{annotation_id}", summary="One annotation, as a GeoJSON Feature")
def get_annotation(slide_id: str, annotation_id: str, catalogue: CatalogueDep) -> JSONResponse:
    slide, row = svc.get_annotation(catalogue, slide_id, annotation_id)
    return _json(svc.feature(row, slide))


@router.put(
    "/{annotation_id}",
    dependencies=WRITE,
    summary="Replace an annotation; 409 when properties.version is not the stored one",
)
async def replace_annotation(
    slide_id: str,
    annotation_id: str,
    catalogue: CatalogueDep,
    raw: JsonBody,
    user: CurrentUser,
) -> JSONResponse:
    body = _validate(FEATURE, raw)
    slide, row = await run_in_threadpool(
        svc.replace_annotation,
        catalogue,
        slide_id,
        annotation_id,
        body.data(),
        body.properties.version,
        user,
    )
    return _json(svc.feature(row, slide))


@router.delete(
    "/{annotation_id}",
    dependencies=WRITE,
    status_code=204,
    summary="Delete an annotation; 409 when ?version= is not the stored one",
)
async def delete_annotation(
    slide_id: str,
    annotation_id: str,
    catalogue: CatalogueDep,
    user: CurrentUser,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    await run_in_threadpool(
        svc.delete_annotation, catalogue, slide_id, annotation_id, version, user
    )
    return Response(status_code=204)
