"""A model's manifest: what the registry records beside its artefact, and what a worker
reads to run it — the resolution patches are read at, their size, the classes it answers,
what its result is for. Written by the AI engineer as TOML or JSON; checked here field by
field, so a wrong manifest is refused with the field's name, never found out by a job.

The hub only reads the manifest: it never opens the artefact (model code never runs here).
The worker checks what only running the model tells (the output's class count)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exchange.core.errors import ExchangeError

MAX_MANIFEST_BYTES = 64 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,49}")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class InvalidManifest(ExchangeError):
    """A manifest that cannot be registered: the message names the field."""

    http_status = 400


class Task(StrEnum):
    PATCH_CLASSIFICATION = "patch_classification"  # one class vector per patch
    SEGMENTATION = "segmentation"  # one class vector per output pixel of the patch
    DETECTION = "detection"  # boxes or points with a class and a score


class IntendedUse(StrEnum):
    RESEARCH = "research use only"
    DIAGNOSTIC_AID = "diagnostic aid"


class Unit(StrEnum):
    MICRONS = "um"  # the resolution is in µm per pixel: the usual case
    PIXELS = "px"  # the model works on level-0 pixels, whatever the scan resolution


Author = Annotated[str, Field(min_length=1, max_length=200)]


class ModelClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=100)]
    colour: str

    @field_validator("colour")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.fullmatch(value):
            raise ValueError("a colour is #rrggbb")
        return value.lower()


class Manifest(BaseModel):
    """The manifest as registered (validated: see the field checks below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    task: Task
    # The patch is read at this resolution from the best pyramid level (µm per pixel, or
    # level-0 pixels per pixel with unit = "px").
    resolution: Annotated[float, Field(gt=0, le=1000)]
    unit: Unit = Unit.MICRONS
    patch_size: Annotated[int, Field(ge=16, le=2048)]
    stride: Annotated[int | None, Field(ge=8, le=4096)] = None  # default: patch_size
    # Pixels of context read around each patch and given to the model (output covers the
    # patch only): the model's input is patch_size + 2 * margin.
    margin: Annotated[int, Field(ge=0, le=512)] = 0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    classes: Annotated[list[ModelClass], Field(min_length=1, max_length=64)]
    heatmap_class: str | None = None  # default: the last class
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    # "softmax" for logits, "sigmoid" for independent scores, "probabilities" as given.
    output: str = "softmax"
    licence: Annotated[str, Field(min_length=1, max_length=200)]
    intended_use: IntendedUse
    authors: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]],
        Field(min_length=1, max_length=50),
    ]
    description: Annotated[str, Field(max_length=2000)] = ""
    sha256: str | None = None  # of the artefact; computed at registration when absent
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 32

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("1 to 100 lower-case letters, digits, '.', '_' or '-'")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise ValueError("1 to 50 letters, digits, '.', '+', '_' or '-'")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.fullmatch(value.lower()):
            raise ValueError("64 hexadecimal digits")
        return value.lower() if value else value

    @field_validator("output")
    @classmethod
    def _output(cls, value: str) -> str:
        if value not in ("softmax", "sigmoid", "probabilities"):
            raise ValueError("one of softmax, sigmoid, probabilities")
        return value

    @field_validator("std")
    @classmethod
    def _std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not math.isfinite(v) or v <= 0 for v in value):
            raise ValueError("three finite positive numbers")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("classes: two classes have the same name")
        if self.heatmap_class is not None and self.heatmap_class not in names:
            raise ValueError(f"heatmap_class {self.heatmap_class!r} is not one of the classes")
        unknown = sorted(set(self.thresholds) - set(names))
        if unknown:
            raise ValueError(f"thresholds: unknown classes {', '.join(unknown)}")
        if self.task is Task.PATCH_CLASSIFICATION and self.output == "softmax" and len(names) < 2:
            raise ValueError("classes: a softmax classifier needs at least two classes")
        return self

    @property
    def patch_stride(self) -> int:
        return self.stride or self.patch_size

    @property
    def shown_class(self) -> str:
        return self.heatmap_class or self.classes[-1].name

    @property
    def input_size(self) -> int:
        return self.patch_size + 2 * self.margin


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "manifest"


def check_manifest(data: Any) -> Manifest:
    """A manifest from its parsed document; InvalidManifest names each wrong field."""
    if not isinstance(data, dict):
        raise InvalidManifest("a manifest is a table of fields (a TOML document or JSON object)")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors()[:10]]
        raise InvalidManifest("invalid manifest — " + "; ".join(problems)) from None


def parse_manifest(text: bytes, name: str = "") -> Manifest:
    """A manifest from a TOML or JSON file's bytes (JSON if it starts with '{' or the name
    ends with .json)."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"a manifest is at most {MAX_MANIFEST_BYTES // 1024} KiB")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidManifest("a manifest is UTF-8 text") from None
    as_json = name.lower().endswith(".json") or decoded.lstrip().startswith("{")
    try:
        data = json.loads(decoded) if as_json else tomllib.loads(decoded)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if as_json else "TOML"
        raise InvalidManifest(f"the manifest is not valid {kind}: {exc}") from None
    return check_manifest(data)
