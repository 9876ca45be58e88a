"""Overlays: layers computed over a slide, for the viewer to lay over it.

Two kinds: a heatmap (a 2-D array of probabilities at any resolution covering the whole
slide, stored as a tiled pyramid and served as DeepZoom tiles at the slide's size), and a
feature set (GeoJSON features in level-0 pixels: detections, segmentations). This module
is the hub's side: `add_heatmap` and `add_features` are called by the hub's own routes
(exchange.web.overlays) and the demo, never by an inference worker, which runs apart and
sends its results over HTTP like any client (DESIGN.md). Overlays are immutable: a new
result is a new overlay, so everything served about one can be cached for good."""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from exchange.core.errors import ExchangeError
from exchange.core.geojson import GeometryRules, InvalidGeometry, check_geometry
from exchange.core.ids import new_id
from exchange.core.models import Overlay, Slide
from exchange.slides.catalogue import Catalogue
from storage import ObjectNotFound, ObjectStore
from tiles.errors import InvalidRequest, SlideNotFound
from tiles.geometry import Size
from tiles.location import slide_prefix
from tiles.overlay import COLOUR_MAPS, HeatmapLocation, colour_lut, pyramid_tiff, quantise

KINDS = ("heatmap", "features")
MAX_NAME = 200
MAX_FEATURES = 200_000
MAX_FEATURE_VERTICES = 10_000
MAX_CLASS = 100
UNCLASSIFIED = "unclassified"
# Class colours when neither the caller nor the features give one: distinct on H&E pink.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#469990", "#9a6324")  # fmt: skip
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


class OverlayNotFound(ExchangeError):
    """No overlay with this id on this slide."""

    http_status = 404


class InvalidOverlay(ExchangeError):
    """An overlay that cannot be stored as given (the message says why)."""

    http_status = 400


def overlay_prefix(slide_id: str, overlay_id: str) -> str:
    return f"{slide_prefix(slide_id)}overlays/{overlay_id}/"


# -- writing (what the routes and the demo call) ----------------------------------------------


def _slide(catalogue: Catalogue, slide_id: str) -> Slide:
    slide = catalogue.get(slide_id) if len(slide_id) <= 64 else None
    if slide is None:
        raise SlideNotFound(f"no slide {slide_id!r}")
    return slide


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidOverlay(f"an overlay needs a name of 1 to {MAX_NAME} characters")
    return name


def _record(catalogue: Catalogue, overlay: Overlay) -> Overlay:
    with catalogue.session() as session, session.begin():
        session.add(overlay)
    return overlay


def add_heatmap(
    store: ObjectStore,
    catalogue: Catalogue,
    slide_id: str,
    probabilities: np.ndarray,
    *,
    name: str,
    colour_map: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    label: str = "",
) -> Overlay:
    """Stores a heatmap over the whole slide: `probabilities[row, col]` covers the slide's
    level-0 area scaled to the array's shape (any resolution up to the slide's own).
    Values at or below `vmin` (and NaN) are transparent; the legend shows vmin..vmax."""
    slide = _slide(catalogue, slide_id)
    overlay_id = new_id()
    key = overlay_prefix(slide.id, overlay_id) + "heatmap.tiff"
    overlay, data = heatmap_overlay(
        slide, probabilities, overlay_id=overlay_id, key=key, name=name,
        colour_map=colour_map, vmin=vmin, vmax=vmax, label=label,
    )  # fmt: skip
    store.put_bytes(key, data)
    try:
        return _record(catalogue, overlay)
    except BaseException:
        store.delete(key)
        raise


def heatmap_overlay(
    slide: Slide,
    probabilities: np.ndarray,
    *,
    overlay_id: str,
    key: str,
    name: str,
    colour_map: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    label: str = "",
) -> tuple[Overlay, bytes]:
    """A heatmap's row (not yet recorded) and the pyramid to store at `key`: for callers
    that store and record it themselves (an inference job's result, exchange.jobs)."""
    name = _check_name(name)
    if colour_map not in COLOUR_MAPS:
        raise InvalidOverlay(f"unknown colour map {colour_map!r} (known: {', '.join(COLOUR_MAPS)})")
    try:
        values = quantise(np.asarray(probabilities), float(vmin), float(vmax))
    except (InvalidRequest, TypeError, ValueError) as exc:
        raise InvalidOverlay(getattr(exc, "message", None) or str(exc)) from exc
    height, width = values.shape
    if width > slide.width or height > slide.height:
        raise InvalidOverlay(
            f"a {width}x{height} heatmap is finer than the {slide.width}x{slide.height} slide"
        )
    data = pyramid_tiff(values)
    lut = colour_lut(colour_map)
    # The ramp as 11 evenly spaced colours, vmin to vmax, for the viewer's legend.
    ramp = lut[np.round(np.linspace(0, 255, 11)).astype(int)]
    stops = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b, _a in ramp.tolist()]
    legend = {
        "type": "ramp",
        "colour_map": colour_map,
        "colours": stops,
        "min": float(vmin),
        "max": float(vmax),
        "label": label[:MAX_NAME],
    }
    overlay = Overlay(
        id=overlay_id,
        slide_id=slide.id,
        kind="heatmap",
        name=name,
        legend=legend,
        storage_key=key,
        size_bytes=len(data),
        width=width,
        height=height,
        colour_map=colour_map,
    )
    return overlay, data


def add_features(
    store: ObjectStore,
    catalogue: Catalogue,
    slide_id: str,
    features: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    name: str,
    class_colours: Mapping[str, str] | None = None,
) -> Overlay:
    """Stores a feature set: a GeoJSON FeatureCollection (or its list of features) with
    geometries in level-0 pixels. Useful properties: `class` (the legend groups by it),
    `score`, `colour` (#rrggbb; else the class's colour)."""
    slide = _slide(catalogue, slide_id)
    overlay_id = new_id()
    key = overlay_prefix(slide.id, overlay_id) + "features.geojson"
    overlay, data = features_overlay(
        slide, features, overlay_id=overlay_id, key=key, name=name, class_colours=class_colours
    )
    store.put_bytes(key, data)
    try:
        return _record(catalogue, overlay)
    except BaseException:
        store.delete(key)
        raise


def features_overlay(
    slide: Slide,
    features: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    overlay_id: str,
    key: str,
    name: str,
    class_colours: Mapping[str, str] | None = None,
) -> tuple[Overlay, bytes]:
    """A feature set's row (not yet recorded) and the GeoJSON to store at `key`."""
    name = _check_name(name)
    clean, classes = validate_features(features, Size(slide.width, slide.height))
    legend = {"type": "classes", "classes": _class_legend(classes, class_colours or {})}
    data = json.dumps(
        {"type": "FeatureCollection", "features": clean}, separators=(",", ":")
    ).encode()
    overlay = Overlay(
        id=overlay_id,
        slide_id=slide.id,
        kind="features",
        name=name,
        legend=legend,
        storage_key=key,
        size_bytes=len(data),
        feature_count=len(clean),
    )
    return overlay, data


def _class_legend(
    classes: dict[str, tuple[int, str | None]], given: Mapping[str, str]
) -> list[dict[str, Any]]:
    for cls, colour in given.items():
        if not isinstance(colour, str) or not _COLOUR.fullmatch(colour):
            raise InvalidOverlay(f"the colour of class {cls!r} must be #rrggbb")
    out = []
    for index, (cls, (count, seen)) in enumerate(sorted(classes.items())):
        colour = given.get(cls) or seen or PALETTE[index % len(PALETTE)]
        out.append({"name": cls, "colour": colour.lower(), "count": count})
    return out


# -- validation ---------------------------------------------------------------------------


def validate_features(
    data: Any, slide_size: Size
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, str | None]]]:
    """The features as stored (2-D positions, rounded to 0.01 px) and, per class, how many
    features it has and the first colour given for it. Raises InvalidOverlay."""
    if isinstance(data, Mapping):
        if data.get("type") != "FeatureCollection" or not isinstance(data.get("features"), list):
            raise InvalidOverlay("expected a GeoJSON FeatureCollection with a features list")
        items: Sequence[Any] = data["features"]
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        items = data
    else:
        items = list(data) if isinstance(data, Iterable) else []
    if len(items) > MAX_FEATURES:
        raise InvalidOverlay(f"at most {MAX_FEATURES} features per overlay, not {len(items)}")
    clean: list[dict[str, Any]] = []
    classes: dict[str, tuple[int, str | None]] = {}
    for index, item in enumerate(items):
        try:
            feature = _feature(item, slide_size)
        except InvalidOverlay as exc:
            raise InvalidOverlay(f"feature {index}: {exc.message}") from None
        props = feature["properties"]
        cls = props.get("class", UNCLASSIFIED)
        count, colour = classes.get(cls, (0, None))
        classes[cls] = (count + 1, colour or props.get("colour"))
        clean.append(feature)
    return clean, classes


def _feature(item: Any, size: Size) -> dict[str, Any]:
    if not isinstance(item, Mapping) or item.get("type") != "Feature":
        raise InvalidOverlay("not a GeoJSON Feature")
    # Every GeoJSON type, strictly inside the slide, positions rounded to 0.01 px.
    rules = GeometryRules(size.width, size.height, max_positions=MAX_FEATURE_VERTICES, decimals=2)
    try:
        geometry = check_geometry(item.get("geometry"), rules)
    except InvalidGeometry as exc:
        raise InvalidOverlay(exc.message) from None
    props_in = item.get("properties") or {}
    if not isinstance(props_in, Mapping):
        raise InvalidOverlay("properties must be an object")
    props = dict(props_in)
    if "class" in props:
        cls = props["class"]
        if not isinstance(cls, str) or not 0 < len(cls) <= MAX_CLASS:
            raise InvalidOverlay(f"class must be a string of 1 to {MAX_CLASS} characters")
    if "score" in props:
        score = props["score"]
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise InvalidOverlay("score must be a finite number")
    if "colour" in props and not (
        isinstance(props["colour"], str) and _COLOUR.fullmatch(props["colour"])
    ):
        raise InvalidOverlay("colour must be #rrggbb")
    feature: dict[str, Any] = {
        "type": "Feature",
        "geometry": geometry,
        "properties": props,
    }
    if isinstance(item.get("id"), str | int) and not isinstance(item.get("id"), bool):
        feature["id"] = item["id"]
    return feature


# -- reading ------------------------------------------------------------------------------


def list_overlays(catalogue: Catalogue, slide_id: str) -> Sequence[Overlay]:
    _slide(catalogue, slide_id)
    with catalogue.session() as session:
        query = select(Overlay).where(Overlay.slide_id == slide_id)
        return session.scalars(query.order_by(Overlay.created_at, Overlay.id)).all()


def get_overlay(catalogue: Catalogue, slide_id: str, overlay_id: str) -> Overlay:
    _slide(catalogue, slide_id)
    with catalogue.session() as session:
        overlay = session.get(Overlay, overlay_id) if len(overlay_id) <= 64 else None
    if overlay is None or overlay.slide_id != slide_id:
        raise OverlayNotFound(f"no overlay {overlay_id!r} on slide {slide_id!r}")
    return overlay


def delete_overlay(
    store: ObjectStore, catalogue: Catalogue, slide_id: str, overlay_id: str
) -> None:
    overlay = get_overlay(catalogue, slide_id, overlay_id)
    with catalogue.session() as session, session.begin():
        row = session.get(Overlay, overlay.id)
        if row is not None:
            session.delete(row)
    for obj in list(store.list(overlay_prefix(slide_id, overlay_id))):
        store.delete(obj.key)
    store.delete(overlay.storage_key)  # a model's result lies with its job's objects


def heatmap_location(catalogue: Catalogue, overlay: Overlay) -> HeatmapLocation:
    if overlay.kind != "heatmap" or overlay.colour_map is None:
        raise OverlayNotFound(f"overlay {overlay.id!r} is not a heatmap")
    slide = _slide(catalogue, overlay.slide_id)
    return HeatmapLocation(
        overlay_id=overlay.id,
        key=overlay.storage_key,
        size=overlay.size_bytes,
        slide_l0=Size(slide.width, slide.height),
        colour_map=overlay.colour_map,
    )


@dataclass(frozen=True)
class FeatureSet:
    """A stored feature set, parsed once: its bytes (plain and gzipped), each feature's
    encoding and bounding box, for bbox queries without re-parsing."""

    body: bytes
    body_gzip: bytes
    pieces: list[bytes]
    # (n, 4): x0, y0, x1, y1 of each feature, level-0 pixels.
    bboxes: np.ndarray

    @classmethod
    def parse(cls, body: bytes) -> FeatureSet:
        features = json.loads(body)["features"]
        pieces = [json.dumps(f, separators=(",", ":")).encode() for f in features]
        bboxes = np.zeros((len(features), 4), np.float64)
        for i, feature in enumerate(features):
            xs: list[float] = []
            ys: list[float] = []
            _extent(feature["geometry"]["coordinates"], xs, ys)
            bboxes[i] = (min(xs), min(ys), max(xs), max(ys))
        return cls(body, gzip.compress(body, 6), pieces, bboxes)

    def within(self, x0: float, y0: float, x1: float, y1: float) -> bytes:
        """A FeatureCollection of the features whose bounding box meets the rectangle."""
        b = self.bboxes
        hit = (b[:, 2] >= x0) & (b[:, 0] <= x1) & (b[:, 3] >= y0) & (b[:, 1] <= y1)
        chosen = b",".join(self.pieces[i] for i in np.flatnonzero(hit))
        return b'{"type":"FeatureCollection","features":[' + chosen + b"]}"


def _extent(coords: Any, xs: list[float], ys: list[float]) -> None:
    if coords and isinstance(coords[0], int | float):
        xs.append(coords[0])
        ys.append(coords[1])
        return
    for c in coords:
        _extent(c, xs, ys)


class FeatureSets:
    """Parsed feature sets, the most recently used kept in memory."""

    def __init__(self, store: ObjectStore, max_sets: int = 8) -> None:
        self.store = store
        self.max_sets = max_sets
        self._sets: OrderedDict[str, FeatureSet] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, overlay: Overlay) -> FeatureSet:
        if overlay.kind != "features":
            raise OverlayNotFound(f"overlay {overlay.id!r} is not a feature set")
        with self._lock:
            found = self._sets.get(overlay.id)
            if found is not None:
                self._sets.move_to_end(overlay.id)
                return found
        try:
            parsed = FeatureSet.parse(self.store.get(overlay.storage_key))
        except ObjectNotFound as exc:
            raise OverlayNotFound(f"overlay {overlay.id!r} has no stored features") from exc
        with self._lock:
            self._sets[overlay.id] = parsed
            while len(self._sets) > self.max_sets:
                self._sets.popitem(last=False)
        return parsed

    def forget(self, overlay_id: str) -> None:
        with self._lock:
            self._sets.pop(overlay_id, None)
