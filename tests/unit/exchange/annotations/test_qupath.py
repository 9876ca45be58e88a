"""Annotations to and from QuPath's GeoJSON: what QuPath 0.4+ writes (classification with a
name and an [r, g, b] colour), what 0.2/0.3 wrote (colorRGB, a packed signed ARGB int), and
IAIN's own kind and comment kept in the metadata, so that an export imported back is the same."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.annotations.service import (
    hex_to_rgb,
    qupath_colour,
    qupath_feature,
    qupath_label,
    qupath_metadata,
    rgb_to_hex,
)
from exchange.core.models import Annotation

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}


def annotation(label: str = "Tumour", colour: str = "#ff8000", **fields: Any) -> Annotation:
    values: dict[str, Any] = {"kind": "rectangle", "geometry": SQUARE, "comment": "", **fields}
    return Annotation(id="a1", slide_id="s1", label=label, colour=colour, version=1, **values)


@pytest.mark.parametrize(
    ("colour", "rgb"),
    [("#ff8000", [255, 128, 0]), ("#000000", [0, 0, 0]), ("#ffffff", [255, 255, 255])],
)
def test_hex_and_rgb_are_the_same_colour(colour: str, rgb: list[int]) -> None:
    assert hex_to_rgb(colour) == rgb
    assert rgb_to_hex(rgb) == colour
    assert hex_to_rgb("#FF8000") == [255, 128, 0]


def test_rgb_out_of_range_is_clamped_and_alpha_ignored() -> None:
    assert rgb_to_hex([300, -5, 16]) == "#ff0010"
    assert rgb_to_hex([1, 2, 3, 128]) == "#010203"


def test_an_export_carries_the_label_as_qupath_class_and_name() -> None:
    row = annotation(comment="margin involved")
    out = qupath_feature(row)
    assert (out["type"], out["id"], out["geometry"]) == ("Feature", "a1", SQUARE)
    props = out["properties"]
    assert props["objectType"] == "annotation"
    assert props["name"] == "Tumour"
    assert props["classification"] == {"name": "Tumour", "color": [255, 128, 0]}
    assert props["color"] == [255, 128, 0]
    assert props["metadata"] == {"kind": "rectangle", "comment": "margin involved"}


def test_an_unlabelled_annotation_gets_no_class() -> None:
    props = qupath_feature(annotation(label=""))["properties"]
    assert "classification" not in props and "name" not in props
    assert props["color"] == [255, 128, 0]


@pytest.mark.parametrize("label", ["Tumour", "", "Stroma: invasive"])
def test_an_export_imported_back_is_the_same_annotation(label: str) -> None:
    row = annotation(label=label, colour="#12abef", kind="ellipse", comment="à revoir")
    props = qupath_feature(row)["properties"]
    assert qupath_colour(props) == "#12abef"
    assert qupath_label(props) == label
    assert qupath_metadata(props) == ("ellipse", "à revoir")


def test_the_class_colour_comes_before_the_object_colour() -> None:
    props = {"classification": {"name": "Tumour", "color": [255, 0, 0]}, "color": [0, 0, 255]}
    assert qupath_colour(props) == "#ff0000"
    # A class without a usable colour: the object's own.
    assert qupath_colour({"classification": {"name": "Tumour"}, "color": [0, 0, 255]}) == "#0000ff"
    assert qupath_colour({"classification": "Tumour", "color": [0, 0, 255]}) == "#0000ff"


@pytest.mark.parametrize(
    ("props", "colour"),
    [
        # QuPath 0.2/0.3: ARGB packed in a signed 32-bit int; opaque red is 0xFFFF0000.
        ({"colorRGB": 0xFFFF0000 - 2**32}, "#ff0000"),
        ({"classification": {"colorRGB": 0xFF0000FF - 2**32}}, "#0000ff"),  # -16776961
        ({"color": 0x00FF8000}, "#ff8000"),
        ({"color": [16, 32, 48, 255]}, "#102030"),
    ],
)
def test_colours_as_qupath_writes_them(props: dict[str, Any], colour: str) -> None:
    assert qupath_colour(props) == colour


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"color": True},  # a JSON true is not the colour 1
        {"color": [255, 0]},
        {"color": [255, "0", 0]},
        {"color": "#ff0000"},
        {"color": None, "classification": None},
    ],
)
def test_no_usable_colour(props: dict[str, Any]) -> None:
    assert qupath_colour(props) is None


@pytest.mark.parametrize(
    ("props", "label"),
    [
        ({"classification": {"name": "Tumour"}, "name": "region 3"}, "Tumour"),
        ({"classification": {"names": ["Tumor", "Positive"]}}, "Tumor: Positive"),
        ({"classification": {"names": ["Tumor", 1]}, "name": "region 3"}, "region 3"),
        ({"classification": {"name": 7}, "name": "region 3"}, "region 3"),
        ({"name": "region 3"}, "region 3"),
        ({"name": 3}, ""),
        ({}, ""),
    ],
)
def test_the_label_is_the_class_else_the_name(props: dict[str, Any], label: str) -> None:
    assert qupath_label(props) == label


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"metadata": {"kind": "freehand", "comment": "ok"}}, ("freehand", "ok")),
        ({"metadata": {"kind": "circle", "comment": "ok"}}, (None, "ok")),  # not our kind
        ({"metadata": {"kind": 1, "comment": ["x"]}}, (None, "")),
        ({"metadata": "kind=point"}, (None, "")),
        ({}, (None, "")),  # drawn in QuPath
    ],
)
def test_kind_and_comment_only_from_our_metadata(
    props: dict[str, Any], expected: tuple[str | None, str]
) -> None:
    assert qupath_metadata(props) == expected
