"""HTTP routes of slide annotations: /api/slides/{slide_id}/annotations.

The request bodies are checked here, with pydantic: GeoJSON geometry types, finite numbers,
closed rings, vertex counts, text lengths, colours. Whatever fails is a 400 with a JSON
`detail`; what needs the slide (bounds) is checked by exchange.annotations.service."""

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
    field_validator,
    model_validator,
)

from exchange.annotations import service as svc
from exchange.annotations.service import (
    DEFAULT_COLOUR,
    DEFAULT_KIND,
    KIND_GEOMETRIES,
    MAX_COMMENT,
    MAX_IMPORT_FEATURES,
    MAX_LABEL,
    MAX_VERTICES,
    AnnotationData,
    InvalidAnnotation,
)
from exchange.audit import chain as audit
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

# --- GeoJSON geometry, as far as annotations use it --------------------------------------------

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Position = Annotated[list[Number], Field(min_length=2, max_length=3)]
Ring = Annotated[list[Position], Field(min_length=4, max_length=MAX_VERTICES)]


def _check_ring(ring: list[list[float]]) -> None:
    if ring[0][:2] != ring[-1][:2]:
        raise ValueError("a polygon ring must be closed: its last position equals its first")


def _check_vertices(count: int) -> None:
    if count > MAX_VERTICES:
        raise ValueError(f"at most {MAX_VERTICES} vertices per feature, not {count}")


class _Geometry(BaseModel):
    model_config = ConfigDict(extra="ignore")  # GeoJSON allows foreign members ("bbox"...)

    def dump(self) -> dict[str, Any]:
        """As stored: positions cut to (x, y)."""
        raise NotImplementedError


def _xy(pos: list[float]) -> list[float]:
    return [pos[0], pos[1]]


class PointGeometry(_Geometry):
    type: Literal["Point"]
    coordinates: Position

    def dump(self) -> dict[str, Any]:
        return {"type": "Point", "coordinates": _xy(self.coordinates)}


class MultiPointGeometry(_Geometry):
    """Only on import: QuPath writes a points annotation as one MultiPoint."""

    type: Literal["MultiPoint"]
    coordinates: Annotated[list[Position], Field(min_length=1, max_length=MAX_IMPORT_FEATURES)]

    def dump(self) -> dict[str, Any]:
        raise NotImplementedError  # split into points by the import

    def points(self) -> list[dict[str, Any]]:
        return [{"type": "Point", "coordinates": _xy(p)} for p in self.coordinates]


class LineStringGeometry(_Geometry):
    type: Literal["LineString"]
    coordinates: Annotated[list[Position], Field(min_length=2, max_length=MAX_VERTICES)]

    def dump(self) -> dict[str, Any]:
        return {"type": "LineString", "coordinates": [_xy(p) for p in self.coordinates]}


class PolygonGeometry(_Geometry):
    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1)]

    @field_validator("coordinates")
    @classmethod
    def _rings(cls, rings: list[list[list[float]]]) -> list[list[list[float]]]:
        _check_vertices(sum(len(r) for r in rings))
        for ring in rings:
            _check_ring(ring)
        return rings

    def dump(self) -> dict[str, Any]:
        return {
            "type": "Polygon",
            "coordinates": [[_xy(p) for p in ring] for ring in self.coordinates],
        }


class MultiPolygonGeometry(_Geometry):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[Annotated[list[Ring], Field(min_length=1)]], Field(min_length=1)]

    @field_validator("coordinates")
    @classmethod
    def _polygons(cls, polygons: list[list[list[list[float]]]]) -> list[list[list[list[float]]]]:
        _check_vertices(sum(len(r) for p in polygons for r in p))
        for polygon in polygons:
            for ring in polygon:
                _check_ring(ring)
        return polygons

    def dump(self) -> dict[str, Any]:
        return {
            "type": "MultiPolygon",
            "coordinates": [
                [[_xy(p) for p in ring] for ring in polygon] for polygon in self.coordinates
            ],
        }


Geometry = Annotated[
    PointGeometry | LineStringGeometry | PolygonGeometry | MultiPolygonGeometry,
    Field(discriminator="type"),
]
ImportGeometry = Annotated[
    PointGeometry
    | MultiPointGeometry
    | LineStringGeometry
    | PolygonGeometry
    | MultiPolygonGeometry,
    Field(discriminator="type"),
]

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
    geometry: Geometry
    properties: AnnotationProperties = Field(
        default_factory=lambda: AnnotationProperties.model_validate({})
    )

    @model_validator(mode="after")
    def _kind_fits_geometry(self) -> AnnotationFeature:
        gtype = self.geometry.type
        if self.properties.kind is None:
            self.properties.kind = DEFAULT_KIND[gtype]  # type: ignore[assignment]
        allowed = KIND_GEOMETRIES[self.properties.kind]  # type: ignore[index]
        if gtype not in allowed:
            raise ValueError(f"a {self.properties.kind} needs a {' or '.join(allowed)} geometry")
        return self

    def data(self) -> AnnotationData:
        p = self.properties
        assert p.kind is not None
        return AnnotationData(
            kind=p.kind,
            geometry=self.geometry.dump(),
            label=p.label,
            colour=p.colour.lower(),
            comment=p.comment,
        )


# --- QuPath's feature form (import) -----------------------------------------------------------


class QuPathFeature(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["Feature"]
    geometry: ImportGeometry
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
        if isinstance(self.geometry, MultiPointGeometry):
            geometries = self.geometry.points()
        else:
            geometries = [self.geometry.dump()]
        out = []
        for geometry in geometries:
            gtype = geometry["type"]
            fits = kind is not None and gtype in KIND_GEOMETRIES[kind]
            out.append(
                AnnotationData(
                    kind=kind if fits and kind else DEFAULT_KIND[gtype],
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
            catalogue,
            "export_annotations",
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
