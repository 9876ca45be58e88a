"""Slide annotations: the one place where they are written.

Every create, replace and delete goes through this module, in one transaction each, so the
audit log has a single hook: `_changed`, called inside that transaction.

Geometry is GeoJSON (Point, LineString, Polygon, MultiPolygon) in level-0 pixel coordinates;
its shape has been checked at the HTTP boundary (exchange.web.annotations), this module
checks what needs the slide: that every position lies on it. Text is stored as given; escaping
it is the viewer's job."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from exchange.annotations.measure import geometry_area_mm2, line_length_um
from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.errors import ExchangeError
from exchange.core.geojson import GeometryRules, InvalidGeometry, check_geometry
from exchange.core.ids import new_id
from exchange.core.models import Annotation, Slide, utcnow
from exchange.core.principal import Principal
from exchange.slides.catalogue import Catalogue
from tiles.errors import SlideNotFound

KINDS = ("point", "rectangle", "ellipse", "polygon", "freehand", "line")
# Which geometry types each kind may have (ellipses are stored as polygons, as QuPath does).
KIND_GEOMETRIES: dict[str, tuple[str, ...]] = {
    "point": ("Point",),
    "line": ("LineString",),
    "rectangle": ("Polygon",),
    "ellipse": ("Polygon",),
    "polygon": ("Polygon", "MultiPolygon"),
    "freehand": ("Polygon", "MultiPolygon"),
}
DEFAULT_KIND = {"Point": "point", "LineString": "line", "Polygon": "polygon"}
DEFAULT_KIND["MultiPolygon"] = "polygon"
DEFAULT_COLOUR = "#ffcc00"
MAX_LABEL = 200
MAX_COMMENT = 10_000
MAX_VERTICES = 100_000
MAX_IMPORT_FEATURES = 200_000


class AnnotationNotFound(ExchangeError):
    """No annotation with this id on this slide."""

    http_status = 404


class InvalidAnnotation(ExchangeError):
    """An annotation that cannot be stored (off the slide, kind and geometry disagree...)."""

    http_status = 400


class StaleAnnotation(ExchangeError):
    """The client edited an older version of the annotation than the stored one."""

    http_status = 409


@dataclass(frozen=True)
class AnnotationData:
    """What a client sets on an annotation; the geometry is checked against the slide."""

    kind: str
    geometry: dict[str, Any]
    label: str = ""
    colour: str = DEFAULT_COLOUR
    comment: str = ""


def new_annotation_id() -> str:
    return new_id(16)  # a slide may hold 100,000 of them: more bits than other records


# --- Reading ---------------------------------------------------------------------------------


def _slide(session: Session, slide_id: str) -> Slide:
    slide = session.get(Slide, slide_id) if len(slide_id) <= 64 else None
    if slide is None:
        raise SlideNotFound(f"no slide {slide_id!r}")
    return slide


def _annotation(session: Session, slide_id: str, annotation_id: str) -> Annotation:
    row = session.get(Annotation, annotation_id) if len(annotation_id) <= 64 else None
    if row is None or row.slide_id != slide_id:
        raise AnnotationNotFound(f"no annotation {annotation_id!r} on slide {slide_id!r}")
    return row


def list_annotations(catalogue: Catalogue, slide_id: str) -> tuple[Slide, Sequence[Annotation]]:
    with catalogue.session() as session:
        slide = _slide(session, slide_id)
        rows = session.scalars(
            select(Annotation)
            .where(Annotation.slide_id == slide_id)
            .order_by(Annotation.created_at, Annotation.id)
        ).all()
        return slide, rows


def get_annotation(
    catalogue: Catalogue, slide_id: str, annotation_id: str
) -> tuple[Slide, Annotation]:
    with catalogue.session() as session:
        return _slide(session, slide_id), _annotation(session, slide_id, annotation_id)


# --- Writing (the audit hook's one place) -----------------------------------------------------


# An import may add many thousands: the event names them only up to this many.
AUDITED_IDS = 100


def _changed(
    session: Session,
    action: str,
    slide: Slide,
    annotation_ids: Sequence[str],
    actor: Principal | None,
) -> None:
    """Called inside every write's transaction: its audit event commits with it."""
    detail: dict[str, Any] = {"count": len(annotation_ids)}
    if len(annotation_ids) <= AUDITED_IDS:
        detail["annotations"] = list(annotation_ids)
    audit.record(
        session,
        AuditAction(f"annotation_{action}"),
        actor=actor,
        target_type="slide",
        target_id=slide.id,
        detail=detail,
    )


def create_annotations(
    catalogue: Catalogue,
    slide_id: str,
    items: Sequence[AnnotationData],
    actor: Principal | None = None,
) -> tuple[Slide, list[Annotation]]:
    """Adds annotations to a slide, all or none."""
    if len(items) > MAX_IMPORT_FEATURES:
        raise InvalidAnnotation(f"at most {MAX_IMPORT_FEATURES} annotations at once")
    with catalogue.session() as session, session.begin():
        slide = _slide(session, slide_id)
        now = utcnow()
        rows = []
        for index, item in enumerate(items):
            geometry = _check(slide, item, index if len(items) > 1 else None)
            rows.append(
                Annotation(
                    id=new_annotation_id(),
                    slide_id=slide_id,
                    kind=item.kind,
                    geometry=geometry,
                    label=item.label,
                    colour=item.colour,
                    comment=item.comment,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add_all(rows)
        _changed(session, "create", slide, [r.id for r in rows], actor)
    return slide, rows


def create_annotation(
    catalogue: Catalogue, slide_id: str, item: AnnotationData, actor: Principal | None = None
) -> tuple[Slide, Annotation]:
    slide, rows = create_annotations(catalogue, slide_id, [item], actor)
    return slide, rows[0]


def replace_annotation(
    catalogue: Catalogue,
    slide_id: str,
    annotation_id: str,
    item: AnnotationData,
    expected_version: int | None = None,
    actor: Principal | None = None,
) -> tuple[Slide, Annotation]:
    """Replaces an annotation's geometry and properties; refuses a stale expected_version."""
    with catalogue.session() as session, session.begin():
        slide = _slide(session, slide_id)
        row = _annotation(session, slide_id, annotation_id)
        geometry = _check(slide, item, None)
        current = row.version
        if expected_version is not None and expected_version != current:
            raise StaleAnnotation(_stale_message(annotation_id, expected_version, current))
        # Conditional on the version read: a concurrent writer between read and write loses.
        done = session.execute(
            update(Annotation)
            .where(Annotation.id == annotation_id, Annotation.version == current)
            .values(
                kind=item.kind,
                geometry=geometry,
                label=item.label,
                colour=item.colour,
                comment=item.comment,
                version=current + 1,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleAnnotation(f"annotation {annotation_id!r} was changed meanwhile")
        _changed(session, "update", slide, [annotation_id], actor)
    with catalogue.session() as session:
        return slide, _annotation(session, slide_id, annotation_id)


def delete_annotation(
    catalogue: Catalogue,
    slide_id: str,
    annotation_id: str,
    expected_version: int | None = None,
    actor: Principal | None = None,
) -> None:
    with catalogue.session() as session, session.begin():
        slide = _slide(session, slide_id)
        row = _annotation(session, slide_id, annotation_id)
        if expected_version is not None and expected_version != row.version:
            raise StaleAnnotation(_stale_message(annotation_id, expected_version, row.version))
        session.delete(row)
        _changed(session, "delete", slide, [annotation_id], actor)


def _stale_message(annotation_id: str, expected: int, current: int) -> str:
    return (
        f"annotation {annotation_id!r} is at version {current}, not {expected}: "
        "reload it and apply the change again"
    )


# --- Checks that need the slide ---------------------------------------------------------------


def _check(slide: Slide, item: AnnotationData, index: int | None) -> dict[str, Any]:
    """The item's geometry as stored (exchange.core.geojson), or InvalidAnnotation."""
    where = "" if index is None else f"feature {index}: "
    allowed = KIND_GEOMETRIES.get(item.kind)
    if allowed is None:
        raise InvalidAnnotation(f"{where}unknown kind {item.kind!r} (known: {', '.join(KINDS)})")
    gtype = item.geometry.get("type")
    if gtype not in allowed:
        raise InvalidAnnotation(f"{where}a {item.kind} needs a {' or '.join(allowed)} geometry")
    rules = GeometryRules(
        slide.width,
        slide.height,
        types=frozenset(allowed),
        max_positions=MAX_VERTICES,
        # A click on the very edge, a rounding: 1 % of the side off the image, 16 px at least.
        margin_fraction=0.01,
        margin_px=16.0,
    )
    try:
        return check_geometry(item.geometry, rules)
    except InvalidGeometry as exc:
        raise InvalidAnnotation(f"{where}{exc.message}") from None


# --- GeoJSON out ------------------------------------------------------------------------------


def feature(row: Annotation, slide: Slide) -> dict[str, Any]:
    """The annotation as a GeoJSON Feature (IAIN's own form)."""
    props: dict[str, Any] = {
        "kind": row.kind,
        "label": row.label,
        "colour": row.colour,
        "comment": row.comment,
        "version": row.version,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }
    measurements = measure(row.geometry, slide)
    if measurements:
        props["measurements"] = measurements
    return {"type": "Feature", "id": row.id, "geometry": row.geometry, "properties": props}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def measure(geometry: dict[str, Any], slide: Slide) -> dict[str, float]:
    """Area (mm²) of a region or length (µm) of a line, where the slide's pixel size is known."""
    if slide.mpp_x is None and slide.mpp_y is None:
        return {}
    mpp_x = slide.mpp_x if slide.mpp_x is not None else slide.mpp_y
    mpp_y = slide.mpp_y if slide.mpp_y is not None else slide.mpp_x
    assert mpp_x is not None and mpp_y is not None
    if geometry["type"] == "LineString":
        return {"length_um": line_length_um(geometry["coordinates"], mpp_x, mpp_y)}
    area = geometry_area_mm2(geometry, mpp_x, mpp_y)
    return {} if area is None else {"area_mm2": area}


def feature_collection(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


# --- QuPath -----------------------------------------------------------------------------------
# QuPath (0.4+) reads and writes features whose properties are
#   {"objectType": "annotation", "name": ..., "classification": {"name": ..., "color": [r, g, b]}}
# (0.2/0.3: "object_type", and "colorRGB" as a packed signed int). Our kind and comment travel
# in "metadata", which QuPath keeps as the object's key-value metadata.


def hex_to_rgb(colour: str) -> list[int]:
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]


def rgb_to_hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{max(0, min(255, int(c))):02x}" for c in rgb[:3])


def qupath_feature(row: Annotation) -> dict[str, Any]:
    props: dict[str, Any] = {"objectType": "annotation", "isLocked": False}
    rgb = hex_to_rgb(row.colour)
    if row.label:
        props["name"] = row.label
        props["classification"] = {"name": row.label, "color": rgb}
    props["color"] = rgb
    props["metadata"] = {"kind": row.kind, "comment": row.comment}
    return {"type": "Feature", "id": row.id, "geometry": row.geometry, "properties": props}


def qupath_colour(props: dict[str, Any]) -> str | None:
    """The colour a QuPath feature carries, if any: its class's, else the object's own."""
    classification = props.get("classification")
    candidates: list[Any] = []
    if isinstance(classification, dict):
        candidates += [classification.get("color"), classification.get("colorRGB")]
    candidates += [props.get("color"), props.get("colorRGB")]
    for value in candidates:
        if isinstance(value, list) and len(value) >= 3 and all(_is_int(c) for c in value[:3]):
            return rgb_to_hex(value)
        if _is_int(value):
            packed = int(value) & 0xFFFFFF
            return rgb_to_hex([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255])
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def qupath_label(props: dict[str, Any]) -> str:
    classification = props.get("classification")
    if isinstance(classification, dict) and isinstance(classification.get("name"), str):
        return str(classification["name"])
    names = classification.get("names") if isinstance(classification, dict) else None
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return ": ".join(names)  # QuPath's derived classes, e.g. "Tumor: Positive"
    name = props.get("name")
    return name if isinstance(name, str) else ""


def qupath_metadata(props: dict[str, Any]) -> tuple[str | None, str]:
    """Our kind and comment, when the feature came from IAIN (or carries them)."""
    metadata = props.get("metadata")
    if not isinstance(metadata, dict):
        return None, ""
    kind = metadata.get("kind")
    comment = metadata.get("comment")
    return (
        kind if isinstance(kind, str) and kind in KINDS else None,
        comment if isinstance(comment, str) else "",
    )
