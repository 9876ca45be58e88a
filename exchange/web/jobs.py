"""AI assistance over HTTP: the model registry, inference jobs, and the worker protocol.

Users (session or API token):
GET    /api/models                     the registered versions (roles that run models)
POST   /api/models                     multipart: manifest (TOML/JSON) + artefact (AI engineers)
GET    /api/models/{id}
POST   /api/inference/jobs             {"model_id", "slides": [...] | "case_id", "region"?,
                                        "tissue_only"?, "force"?} -> the jobs, one per slide
GET    /api/inference/jobs             ?slide=&model=&state=&mine=&limit=
GET    /api/inference/jobs/{id}
POST   /api/inference/jobs/{id}/cancel | /retry
POST   /api/models/train               {"slide", "name", "labels"?, "resolution"?, "patch_size"?,
                                        "epochs"?, "run_after"?}: a training job from the
                                        slide's annotations (their labels are the classes)

Workers (an API token with the worker scope; exchange.jobs.queue says the rules):
POST   /api/worker/claim               {"worker", "wait_s"} -> 200 the job, or 204 none
POST   /api/worker/jobs/{id}/heartbeat {"lease", "done", "total"} -> {"cancel", "capability"}
GET    /api/worker/jobs/{id}/model     the artefact's bytes            (X-Lease header)
PUT    /api/worker/jobs/{id}/results/{name}?kind=heatmap|features      (X-Lease header)
PUT    /api/worker/jobs/{id}/artefact  a training job's program               (X-Lease header)
POST   /api/worker/jobs/{id}/complete  {"lease", "results", "summary", "provenance", "manifest"?}
POST   /api/worker/jobs/{id}/fail      {"lease", "reason"}
POST   /api/worker/jobs/{id}/release   {"lease"}: handed back (the worker is stopping)

The worker reads its slide through the tile routes with the claim's capability, which sees
that one slide address only (exchange.jobs.capability)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from exchange.access.policy import SlideAccess
from exchange.core.errors import ExchangeError
from exchange.core.models import Case, InferenceJob, ModelVersion, Slide
from exchange.core.principal import Principal, Scope
from exchange.core.statuses import JobKind, JobState
from exchange.jobs.capability import Capability
from exchange.jobs.manifest import (
    IntendedUse,
    InvalidManifest,
    Manifest,
    check_manifest,
    parse_manifest,
)
from exchange.jobs.queue import (
    RUN_ROLES,
    Claimed,
    JobError,
    JobNotFound,
    JobParams,
    Region,
    StaleLease,
    TrainingParams,
    result_prefix,
)
from exchange.jobs.registry import MODEL_ROLES, ModelNotFound
from exchange.jobs.results import (
    MAX_DETECTIONS_BYTES,
    collect,
    store_detections,
    store_features,
    store_heatmap,
)
from exchange.web.auth import CurrentUser, WorkerCaller
from exchange.web.hub import Hub, HubDep
from tiles.errors import SlideNotFound, TilesError

router = APIRouter(prefix="/api", tags=["inference"])
worker_router = APIRouter(prefix="/api/worker", tags=["worker"])

MAX_WAIT_S = 25.0
POLL_S = 0.25
MAX_MANIFEST_UPLOAD = 64 * 1024
MAX_TRAINED_BYTES = 256 * 1024 * 1024


# -- models -------------------------------------------------------------------------------


class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    task: str
    sha256: str
    artefact_format: str
    size_bytes: int
    intended_use: str
    licence: str
    manifest: dict[str, Any]
    created_at: datetime


def model_out(row: ModelVersion) -> ModelOut:
    return ModelOut(
        id=row.id,
        name=row.name,
        version=row.version,
        task=row.task,
        sha256=row.sha256,
        artefact_format=row.artefact_format,
        size_bytes=row.size_bytes,
        intended_use=str(row.manifest.get("intended_use", "")),
        licence=str(row.manifest.get("licence", "")),
        manifest=row.manifest,
        created_at=row.created_at,
    )


def _may_see_models(principal: Principal) -> None:
    if not principal.has(*(RUN_ROLES | MODEL_ROLES)):
        raise ModelNotFound("your role may not run models")


@router.get("/models")
def list_models(principal: CurrentUser, hub: HubDep) -> list[ModelOut]:
    _may_see_models(principal)
    return [model_out(row) for row in hub.models.all()]


@router.get("/models/{model_id}")
def model_detail(model_id: str, principal: CurrentUser, hub: HubDep) -> ModelOut:
    _may_see_models(principal)
    return model_out(hub.models.get(model_id))


@router.post("/models", status_code=201)
async def register_model(
    principal: CurrentUser,
    hub: HubDep,
    manifest: Annotated[UploadFile, File(description="the manifest, TOML or JSON")],
    artefact: Annotated[UploadFile, File(description="a TorchScript or torch.export program")],
) -> ModelOut:
    text = await manifest.read(MAX_MANIFEST_UPLOAD + 1)
    if len(text) > MAX_MANIFEST_UPLOAD:
        raise InvalidManifest(f"a manifest is at most {MAX_MANIFEST_UPLOAD // 1024} KiB")
    parsed = parse_manifest(text, manifest.filename or "")
    row = await run_in_threadpool(hub.models.add, principal, parsed, artefact.file)
    return model_out(row)


# -- jobs ---------------------------------------------------------------------------------


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class JobsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=64)
    slides: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=500
    )
    case_id: str | None = Field(default=None, max_length=64)
    region: RegionIn | None = None
    tissue_only: bool = True
    force: bool = False


class ModelRef(BaseModel):
    id: str
    name: str
    version: str


class JobOut(BaseModel):
    id: str
    kind: JobKind
    model: ModelRef | None  # the model run (inference)
    result_model: ModelRef | None  # the model made (training)
    slide: str  # as the requester addressed it
    state: JobState
    attempt: int
    percent: float
    patches_done: int
    patches_total: int
    eta_s: float | None
    error: str | None
    params: dict[str, Any]
    overlay_ids: list[str]
    summary: dict[str, Any] | None
    provenance: dict[str, Any] | None
    mine: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsOut(BaseModel):
    jobs: list[JobOut]
    created: int


def _eta(job: InferenceJob) -> float | None:
    if job.state != JobState.RUNNING or not job.patches_done or job.started_at is None:
        return None
    elapsed = time.time() - job.started_at.timestamp()
    left = max(0, job.patches_total - job.patches_done)
    return round(elapsed / job.patches_done * left, 1)


def job_out(job: InferenceJob, models: dict[str, ModelVersion], principal: Principal) -> JobOut:
    model = models.get(job.model_id or "")
    made = models.get(job.result_model_id or "")
    total = job.patches_total
    percent = (
        100.0
        if job.state == JobState.SUCCEEDED
        else (round(100.0 * job.patches_done / total, 1) if total else 0.0)
    )
    return JobOut(
        id=job.id,
        kind=JobKind(job.kind),
        model=ModelRef(id=model.id, name=model.name, version=model.version) if model else None,
        result_model=ModelRef(id=made.id, name=made.name, version=made.version) if made else None,
        slide=job.slide_address,
        state=JobState(job.state),
        attempt=job.attempt,
        percent=percent,
        patches_done=job.patches_done,
        patches_total=total,
        eta_s=_eta(job),
        error=job.error,
        params=job.params,
        overlay_ids=list(job.overlay_ids or []),
        summary=job.summary,
        provenance=job.provenance,
        mine=job.requester_id == principal.user_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _models_of(hub: Hub, jobs: list[InferenceJob]) -> dict[str, ModelVersion]:
    ids = {i for job in jobs for i in (job.model_id, job.result_model_id) if i}
    if not ids:
        return {}
    with hub.db.session() as session:
        rows = session.scalars(select(ModelVersion).where(ModelVersion.id.in_(ids))).all()
    return {row.id: row for row in rows}


def _outs(hub: Hub, jobs: list[InferenceJob], principal: Principal) -> list[JobOut]:
    models = _models_of(hub, jobs)
    return [job_out(job, models, principal) for job in jobs]


def _case_slides(hub: Hub, principal: Principal, case_id: str) -> list[str]:
    """The addresses of a case's slides that the caller sees (404 if none)."""
    with hub.db.session() as session:
        case = session.get(Case, case_id) if len(case_id) <= 64 else None
        if case is None:
            case = session.scalar(select(Case).where(Case.public_id == case_id))
        ids = (
            session.scalars(select(Slide.id).where(Slide.case_id == case.id)).all()
            if case is not None
            else []
        )
    addresses = []
    for slide_id in ids:
        access: SlideAccess | None = hub.policy.access(principal, slide_id)
        if access is None and case is not None and case.public_id == case_id:
            slide = hub.catalogue.get(slide_id)
            access = hub.policy.access(principal, slide.public_id or "") if slide else None
        if access is not None:
            addresses.append(access.address)
    if not addresses:
        raise SlideNotFound(f"no case {case_id!r}")
    return addresses


@router.post("/inference/jobs", status_code=201)
def create_jobs(body: JobsIn, principal: CurrentUser, hub: HubDep) -> JobsOut:
    addresses = list(body.slides)
    if body.case_id is not None:
        addresses += _case_slides(hub, principal, body.case_id)
    if not addresses:
        raise JobError("name the slides (slides) or a case (case_id)")
    region = body.region
    params = JobParams(
        region=Region(region.x, region.y, region.width, region.height) if region else None,
        tissue_only=body.tissue_only,
    )
    made = hub.jobs.create(principal, body.model_id, addresses, params, force=body.force)
    jobs = [job for job, _ in made]
    return JobsOut(jobs=_outs(hub, jobs, principal), created=sum(1 for _, new in made if new))


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slide: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    labels: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=2, max_length=20
    )
    resolution: float = Field(default=1.0, ge=0.1, le=16)
    patch_size: int = Field(default=64, ge=32, le=256)
    epochs: int = Field(default=6, ge=1, le=50)
    # Once trained, run it over the slide (its heatmap then shows in the viewer).
    run_after: bool = False


@router.post("/models/train", status_code=201)
def train_model(body: TrainIn, principal: CurrentUser, hub: HubDep) -> JobOut:
    """A job that trains a patch classifier from the slide's annotations: a worker runs
    it and the model is registered under `name` (research use only)."""
    params = TrainingParams(
        labels=tuple(body.labels) if body.labels is not None else None,
        resolution=body.resolution,
        patch_size=body.patch_size,
        epochs=body.epochs,
        run_after=body.run_after,
    )
    job = hub.jobs.create_training(principal, body.slide, body.name, params)
    return _outs(hub, [job], principal)[0]


@router.get("/inference/jobs")
def list_jobs(
    principal: CurrentUser,
    hub: HubDep,
    slide: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    state: JobState | None = None,
    mine: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobOut]:
    jobs = hub.jobs.list(
        principal, slide=slide, model_id=model, state=state, mine=mine, limit=limit
    )
    return _outs(hub, list(jobs), principal)


@router.get("/inference/jobs/{job_id}")
def job_detail(job_id: str, principal: CurrentUser, hub: HubDep) -> JobOut:
    return _outs(hub, [hub.jobs.get(principal, job_id)], principal)[0]


@router.post("/inference/jobs/{job_id}/cancel")
def cancel_job(job_id: str, principal: CurrentUser, hub: HubDep) -> JobOut:
    return _outs(hub, [hub.jobs.cancel(principal, job_id)], principal)[0]


@router.post("/inference/jobs/{job_id}/retry")
def retry_job(job_id: str, principal: CurrentUser, hub: HubDep) -> JobOut:
    return _outs(hub, [hub.jobs.retry(principal, job_id)], principal)[0]


# -- the worker protocol -------------------------------------------------------------------


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(min_length=1, max_length=200)
    wait_s: float = Field(default=20.0, ge=0, le=MAX_WAIT_S)


class SlideInfo(BaseModel):
    address: str
    width: int
    height: int
    mpp: float | None
    content_hash: str
    dzi: str
    tiles: str  # a template: {level}, {col}, {row}
    thumbnail: str


class ModelInfo(BaseModel):
    id: str
    name: str
    version: str
    sha256: str
    artefact_format: str
    size_bytes: int
    manifest: dict[str, Any]
    url: str


class RegionOut(BaseModel):
    label: str
    polygon: list[list[float]]


class ClaimOut(BaseModel):
    job_id: str
    kind: JobKind
    attempt: int
    lease: str
    lease_s: float
    capability: str
    params: dict[str, Any]
    model: ModelInfo | None  # inference: the model to run
    regions: list[RegionOut]  # training: the annotated regions to learn from
    slide: SlideInfo
    results: str  # PUT {results}/{name}?kind=...


class LeaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease: str = Field(min_length=1, max_length=200)


class HeartbeatIn(LeaseIn):
    done: int = Field(default=0, ge=0)
    total: int = Field(default=0, ge=0)


class HeartbeatOut(BaseModel):
    cancel: bool
    capability: str | None


class CompleteIn(LeaseIn):
    results: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=16)
    summary: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    # A training job's model: its manifest (the artefact was PUT to .../artefact).
    manifest: dict[str, Any] | None = None


class FailIn(LeaseIn):
    reason: str = Field(min_length=1, max_length=4000)


class WorkerJobOut(BaseModel):
    job_id: str
    state: JobState
    overlay_ids: list[str]


def _capability(hub: Hub, claimed_job: InferenceJob, requester: Principal) -> str:
    return hub.capabilities.issue(
        Capability(
            job_id=claimed_job.id,
            attempt=claimed_job.attempt,
            user_id=requester.user_id,
            centre=requester.centre,
            roles=requester.roles,
            slide_address=claimed_job.slide_address,
            # A little past the lease: a heartbeat renews both.
            expires_at=time.time() + hub.jobs.lease_s * 2,
        )
    )


def claim_out(hub: Hub, claimed: Claimed) -> ClaimOut:
    job, model, slide = claimed.job, claimed.model, claimed.access.slide
    address = job.slide_address
    return ClaimOut(
        job_id=job.id,
        kind=JobKind(job.kind),
        attempt=job.attempt,
        lease=claimed.lease,
        lease_s=hub.jobs.lease_s,
        capability=_capability(hub, job, claimed.requester),
        params=job.params,
        model=None
        if model is None
        else ModelInfo(
            id=model.id,
            name=model.name,
            version=model.version,
            sha256=model.sha256,
            artefact_format=model.artefact_format,
            size_bytes=model.size_bytes,
            manifest=model.manifest,
            url=f"/api/worker/jobs/{job.id}/model",
        ),
        regions=[RegionOut(label=label, polygon=ring) for label, ring in claimed.regions],
        slide=SlideInfo(
            address=address,
            width=slide.width,
            height=slide.height,
            mpp=slide.mpp_x,
            content_hash=slide.content_hash,
            dzi=f"/slides/{address}.dzi",
            tiles=f"/slides/{address}_files/{{level}}/{{col}}_{{row}}.jpeg",
            thumbnail=f"/api/slides/{address}/thumbnail",
        ),
        results=f"/api/worker/jobs/{job.id}/results",
    )


@worker_router.post("/claim", response_model=None)
async def claim(body: ClaimIn, worker: WorkerCaller, hub: HubDep) -> ClaimOut | Response:
    """The oldest queued job this worker may run (its centre's, or any with the
    all-centres scope), or 204 after waiting up to wait_s for one (long poll)."""
    deadline = time.monotonic() + body.wait_s
    centre = None if Scope.ALL_CENTRES in worker.scopes else worker.centre
    while True:
        claimed = await run_in_threadpool(hub.jobs.claim, body.worker, centre)
        if claimed is not None:
            return claim_out(hub, claimed)
        if time.monotonic() + POLL_S > deadline:
            return Response(status_code=204)
        await asyncio.sleep(POLL_S)


@worker_router.post("/jobs/{job_id}/heartbeat")
def heartbeat(job_id: str, body: HeartbeatIn, _worker: WorkerCaller, hub: HubDep) -> HeartbeatOut:
    beat = hub.jobs.heartbeat(job_id, body.lease, body.done, body.total)
    if beat.cancel or beat.job is None or beat.requester is None:
        return HeartbeatOut(cancel=True, capability=None)
    return HeartbeatOut(cancel=False, capability=_capability(hub, beat.job, beat.requester))


@worker_router.get("/jobs/{job_id}/model")
def model_artefact(
    job_id: str, _worker: WorkerCaller, hub: HubDep, x_lease: Annotated[str, Header()]
) -> StreamingResponse:
    job = hub.jobs.check_lease(job_id, x_lease)
    model = hub.models.get(job.model_id or "")

    def chunks() -> Iterator[bytes]:
        yield from hub.store.iter_chunks(model.artefact_key)

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Length": str(model.size_bytes), "X-SHA256": model.sha256},
    )


@worker_router.put("/jobs/{job_id}/results/{name}", status_code=201)
async def upload_result(
    job_id: str,
    name: str,
    request: Request,
    _worker: WorkerCaller,
    hub: HubDep,
    x_lease: Annotated[str, Header()],
    kind: Annotated[str, Query(pattern="^(heatmap|features|detections)$")] = "heatmap",
    title: Annotated[str, Query(min_length=1, max_length=200)] = "Result",
    colour_map: Annotated[str, Query(max_length=32)] = "viridis",
    label: Annotated[str, Query(max_length=200)] = "",
) -> dict[str, str]:
    job = await run_in_threadpool(hub.jobs.check_lease, job_id, x_lease)
    limit = MAX_DETECTIONS_BYTES if kind == "detections" else 64 * 1024 * 1024
    body = await _bounded_body(request, limit)
    slide = hub.catalogue.get(job.slide_id)
    if slide is None:
        raise JobNotFound(f"no job {job_id!r}")

    def write() -> list[str]:
        if kind == "heatmap":
            return store_heatmap(
                hub.store, job, slide, name, body, title=title, colour_map=colour_map, label=label
            )
        if kind == "detections":
            manifest = Manifest.model_validate(hub.models.get(job.model_id or "").manifest)
            classes = [(c.name, c.colour) for c in manifest.classes]
            return store_detections(hub.store, job, slide, name, body, title=title, classes=classes)
        return store_features(hub.store, job, slide, name, body, title=title, class_colours={})

    keys = await run_in_threadpool(write)
    # The lease may have been lost while writing: then these objects are nobody's.
    try:
        await run_in_threadpool(hub.jobs.check_lease, job_id, x_lease)
    except StaleLease:
        for key in keys:
            await run_in_threadpool(hub.store.delete, key)
        raise
    return {"name": name, "kind": kind}


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise JobError(f"a result upload is at most {limit // 1024**2} MiB")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise JobError(f"a result upload is at most {limit // 1024**2} MiB")
        parts.append(chunk)
    return b"".join(parts)


@worker_router.post("/jobs/{job_id}/complete")
def complete(job_id: str, body: CompleteIn, _worker: WorkerCaller, hub: HubDep) -> WorkerJobOut:
    job = hub.jobs.check_lease_or_done(job_id, body.lease)
    if job.state == JobState.SUCCEEDED:
        return WorkerJobOut(job_id=job.id, state=JobState.SUCCEEDED, overlay_ids=job.overlay_ids)
    if job.kind == JobKind.TRAINING:
        return _complete_training(hub, job, body)
    model = hub.models.get(job.model_id or "")
    manifest = Manifest.model_validate(model.manifest)
    info = {
        "model": {
            "id": model.id,
            "name": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "intended_use": manifest.intended_use,
            "licence": manifest.licence,
        },
        "job_id": job.id,
        "attempt": job.attempt,
        "summary": body.summary,
        "provenance": body.provenance,
    }
    results = collect(hub.store, job, body.results, info)
    done = hub.jobs.complete(job_id, body.lease, results, body.summary, body.provenance)
    return WorkerJobOut(job_id=done.id, state=JobState(done.state), overlay_ids=done.overlay_ids)


@worker_router.post("/jobs/{job_id}/fail")
def fail(job_id: str, body: FailIn, _worker: WorkerCaller, hub: HubDep) -> WorkerJobOut:
    job = hub.jobs.fail(job_id, body.lease, body.reason)
    return WorkerJobOut(job_id=job.id, state=JobState(job.state), overlay_ids=[])


@worker_router.post("/jobs/{job_id}/release", status_code=204)
def release(job_id: str, body: LeaseIn, _worker: WorkerCaller, hub: HubDep) -> Response:
    hub.jobs.release(job_id, body.lease)
    return Response(status_code=204)


def _artefact_key(job: InferenceJob) -> str:
    return result_prefix(job.slide_id, job.id, job.attempt) + "model.artefact"


@worker_router.put("/jobs/{job_id}/artefact", status_code=201)
async def upload_artefact(
    job_id: str,
    request: Request,
    _worker: WorkerCaller,
    hub: HubDep,
    x_lease: Annotated[str, Header()],
) -> dict[str, str]:
    """A training job's model program (checked when the job completes)."""
    job = await run_in_threadpool(hub.jobs.check_lease, job_id, x_lease)
    if job.kind != JobKind.TRAINING:
        raise JobError(f"job {job_id} trains no model")
    body = await _bounded_body(request, MAX_TRAINED_BYTES)
    key = _artefact_key(job)
    await run_in_threadpool(hub.store.put_bytes, key, body)
    try:
        await run_in_threadpool(hub.jobs.check_lease, job_id, x_lease)
    except StaleLease:
        await run_in_threadpool(hub.store.delete, key)
        raise
    return {"stored": str(len(body))}


def _complete_training(hub: Hub, job: InferenceJob, body: CompleteIn) -> WorkerJobOut:
    if body.manifest is None:
        raise JobError("a training job completes with its model's manifest")
    manifest = check_manifest(body.manifest)
    if (manifest.name, manifest.version) != (job.params["name"], job.params["version"]):
        raise JobError(
            f"this job trains {job.params['name']} {job.params['version']}, "
            f"not {manifest.name} {manifest.version}"
        )
    if manifest.intended_use is not IntendedUse.RESEARCH:
        raise JobError("a model trained in IAIN is for research use only")
    key = _artefact_key(job)
    if not hub.store.exists(key):
        raise JobError("upload the model's program (PUT …/artefact) before completing")
    requester = hub.jobs.requester_of(job)
    row = hub.models.trained(requester, manifest, key)
    summary = {**body.summary, "model_id": row.id}
    done = hub.jobs.complete(job.id, body.lease, [], summary, body.provenance, model=row)
    if job.params.get("run_after"):
        # As the requester asked it: their rights, now (a lost right is a 404 here).
        with contextlib.suppress(ExchangeError, TilesError):
            hub.jobs.create(requester, row.id, [job.slide_address], JobParams())
    return WorkerJobOut(job_id=done.id, state=JobState(done.state), overlay_ids=[])
