"""The worker's side of the job protocol: what a claim carries, and the source of jobs a
worker pulls from (the hub over HTTPS, inference.hub_client; or an in-memory source in
unit tests). The hub's side is exchange.jobs; the two meet only in these JSON shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class LeaseLost(Exception):
    """The hub no longer counts this attempt as the job's (cancelled, re-leased, ended):
    stop at once, write nothing more."""


class JobFailure(Exception):
    """The job cannot succeed (a corrupt artefact, a lying manifest, NaN outputs...):
    reported to the hub with this reason; retrying would fail the same way."""


class Stopping(Exception):
    """The worker is shutting down (SIGTERM): the job is handed back, not failed."""


@dataclass(frozen=True)
class ModelClass:
    name: str
    colour: str


@dataclass(frozen=True)
class ModelSpec:
    """The registered model as a worker needs it (the manifest's fields, checked by the hub)."""

    id: str
    name: str
    version: str
    sha256: str
    artefact_format: str  # torchscript | export
    size_bytes: int
    url: str
    task: str
    resolution: float
    unit: str  # um | px
    patch_size: int
    stride: int
    margin: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[ModelClass, ...]
    shown_class: str
    output: str  # softmax | sigmoid | probabilities
    batch_size: int
    intended_use: str
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.patch_size + 2 * self.margin

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        m = data["manifest"]
        classes = tuple(ModelClass(c["name"], c["colour"]) for c in m["classes"])
        return cls(
            id=data["id"],
            name=data["name"],
            version=data["version"],
            sha256=data["sha256"],
            artefact_format=data["artefact_format"],
            size_bytes=int(data["size_bytes"]),
            url=data["url"],
            task=m["task"],
            resolution=float(m["resolution"]),
            unit=m.get("unit", "um"),
            patch_size=int(m["patch_size"]),
            stride=int(m.get("stride") or m["patch_size"]),
            margin=int(m.get("margin", 0)),
            mean=tuple(float(v) for v in m["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in m["std"]),  # type: ignore[arg-type]
            classes=classes,
            shown_class=m.get("heatmap_class") or classes[-1].name,
            output=m.get("output", "softmax"),
            batch_size=int(m.get("batch_size", 32)),
            intended_use=m.get("intended_use", ""),
            manifest=m,
        )


@dataclass(frozen=True)
class SlideSpec:
    address: str
    width: int
    height: int
    mpp: float | None
    content_hash: str
    dzi: str
    tiles: str  # template with {level}, {col}, {row}
    thumbnail: str


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class TrainingSpec:
    """What a training job asks for: the model's name and version, how patches are read,
    and the annotated regions (label, exterior ring in level-0 pixels) to learn from."""

    name: str
    version: str
    resolution: float
    patch_size: int
    epochs: int
    regions: tuple[tuple[str, list[tuple[float, float]]], ...]


@dataclass(frozen=True)
class Claim:
    job_id: str
    kind: str  # inference | training
    attempt: int
    lease: str
    lease_s: float
    capability: str
    model: ModelSpec | None  # inference
    training: TrainingSpec | None  # training
    slide: SlideSpec
    region: Region | None
    tissue_only: bool
    results: str

    @property
    def spec(self) -> ModelSpec:
        if self.model is None:
            raise JobFailure("this job runs no model")
        return self.model

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Claim:
        params = data.get("params") or {}
        region = params.get("region")
        s = data["slide"]
        kind = data.get("kind", "inference")
        training = None
        if kind == "training":
            training = TrainingSpec(
                name=params["name"],
                version=params["version"],
                resolution=float(params.get("resolution", 1.0)),
                patch_size=int(params.get("patch_size", 64)),
                epochs=int(params.get("epochs", 6)),
                regions=tuple(
                    (r["label"], [(float(x), float(y)) for x, y in r["polygon"]])
                    for r in data.get("regions", [])
                ),
            )
        return cls(
            job_id=data["job_id"],
            kind=kind,
            attempt=int(data["attempt"]),
            lease=data["lease"],
            lease_s=float(data["lease_s"]),
            capability=data["capability"],
            model=ModelSpec.from_json(data["model"]) if data.get("model") else None,
            training=training,
            slide=SlideSpec(
                address=s["address"],
                width=int(s["width"]),
                height=int(s["height"]),
                mpp=float(s["mpp"]) if s.get("mpp") else None,
                content_hash=s["content_hash"],
                dzi=s["dzi"],
                tiles=s["tiles"],
                thumbnail=s["thumbnail"],
            ),
            region=Region(*(int(v) for v in region)) if region else None,
            tissue_only=bool(params.get("tissue_only", True)),
            results=data["results"],
        )


@dataclass(frozen=True)
class Beat:
    cancel: bool
    capability: str | None


class JobSource(Protocol):
    """Where a worker gets jobs and sends what it made. Every call naming a job raises
    LeaseLost when the hub refuses the lease (409)."""

    def claim(self, worker: str, wait_s: float) -> Claim | None: ...

    def heartbeat(self, claim: Claim, done: int, total: int) -> Beat: ...

    def model_bytes(self, claim: Claim) -> bytes: ...

    def dzi(self, claim: Claim, capability: str) -> str: ...

    def thumbnail(self, claim: Claim, capability: str, size: int) -> bytes: ...

    def tile(self, claim: Claim, capability: str, level: int, col: int, row: int) -> bytes: ...

    def upload(
        self, claim: Claim, name: str, kind: str, body: bytes, params: dict[str, str]
    ) -> None: ...

    def upload_artefact(self, claim: Claim, program: bytes) -> None: ...

    def complete(
        self,
        claim: Claim,
        results: list[str],
        summary: dict[str, Any],
        provenance: dict[str, Any],
        manifest: dict[str, Any] | None = None,
    ) -> None: ...

    def fail(self, claim: Claim, reason: str) -> None: ...

    def release(self, claim: Claim) -> None: ...
