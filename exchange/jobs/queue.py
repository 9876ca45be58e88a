"""Inference jobs and their leases: the hub's side of the worker protocol (DESIGN.md, "Jobs,
pulled over HTTPS").

A job is one model version over one slide, run with its requester's rights. Workers pull:
`claim` hands the oldest queued job to one worker with a fresh lease token (the attempt
number goes up); `heartbeat` extends the lease and records progress, and tells a worker
whose job was cancelled to stop; `complete` commits the result once, as a compare-and-set
on (job, lease token): the same token again gets the same answer (a lost reply), a stale
attempt's is refused (409). A lease that expires is the worker's loss: the job is queued
again, up to MAX_LOST_LEASES times, then failed with the reason.

Claims are safe with any number of workers and hub processes: each is a conditional
UPDATE (state still queued) that exactly one transaction wins; on PostgreSQL the candidate
is picked with FOR UPDATE SKIP LOCKED, so concurrent claims do not queue on one row.

Results live under attempt-scoped keys (result_prefix); the winning attempt's are recorded
by the completing update, and every other attempt's objects are deleted when the job ends."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from exchange.access.policy import SLIDE_ROLES, Policy, SlideAccess
from exchange.annotations.service import list_annotations
from exchange.audit.actions import AuditAction
from exchange.audit.chain import record
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.core.models import InferenceJob, ModelVersion, Overlay, User
from exchange.core.principal import Principal, Role
from exchange.core.statuses import JOB_ENDS, JobKind, JobState
from exchange.identity.accounts import principal_of
from exchange.jobs.manifest import Manifest, Unit
from exchange.jobs.registry import ModelNotFound, Registry
from exchange.slides.catalogue import Catalogue
from storage import ObjectStore
from tiles.errors import SlideNotFound
from tiles.location import slide_prefix

# Who may run models on the slides they see (and list the models).
RUN_ROLES = frozenset({Role.PATHOLOGIST, Role.RESIDENT, Role.AI_ENGINEER, Role.TEACHER})
# Who may cancel or retry any job of their centre (the requester always may).
MANAGE_ROLES = frozenset({Role.AI_ENGINEER, Role.CENTRE_ADMIN, Role.HUB_ADMIN})
LEASE_S = 60.0
MAX_LOST_LEASES = 3
MAX_SLIDES_PER_REQUEST = 500
MAX_REASON = 2000
_CLAIM_TRIES = 8


class JobError(ExchangeError):
    http_status = 400


class JobNotFound(ExchangeError):
    http_status = 404


class StaleLease(ExchangeError):
    """The lease token is not the job's running attempt's: that worker must stop."""

    http_status = 409


class MayNotRun(ExchangeError):
    http_status = 403


def lease_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def result_prefix(slide_id: str, job_id: str, attempt: int | None = None) -> str:
    """Where a job's result objects lie; one folder per attempt."""
    base = f"{slide_prefix(slide_id)}jobs/{job_id}/"
    return base if attempt is None else f"{base}{attempt}/"


@dataclass(frozen=True)
class Region:
    """A level-0 rectangle of the slide to run on (None: the whole slide)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class JobParams:
    region: Region | None = None
    tissue_only: bool = True

    def document(self) -> dict[str, Any]:
        region = self.region
        return {
            "region": None if region is None else [region.x, region.y, region.width, region.height],
            "tissue_only": self.tissue_only,
        }

    def key(self) -> str:
        text = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TrainingParams:
    labels: tuple[str, ...] | None = None  # None: every label annotated on the slide
    resolution: float = 1.0
    patch_size: int = 64
    epochs: int = 6
    # Once trained, run the model over the same slide (one step for a pathologist).
    run_after: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels) if self.labels is not None else None,
            "resolution": self.resolution,
            "patch_size": self.patch_size,
            "epochs": self.epochs,
            "run_after": self.run_after,
        }


def _probe_manifest(name: str, version: str) -> dict[str, Any]:
    """A manifest with the trained model's name and version: checks them before training."""
    return {
        "name": name,
        "version": version,
        "task": "patch_classification",
        "resolution": 1.0,
        "patch_size": 64,
        "classes": [{"name": "a", "colour": "#000000"}, {"name": "b", "colour": "#ffffff"}],
        "licence": "-",
        "intended_use": "research use only",
        "authors": ["-"],
    }


def annotated_regions(catalogue: Catalogue, slide_id: str) -> list[tuple[str, list[list[float]]]]:
    """The slide's labelled area annotations as (label, exterior ring): what a training
    job learns from (points and lines have no area)."""
    _slide, rows = list_annotations(catalogue, slide_id)
    out: list[tuple[str, list[list[float]]]] = []
    for row in rows:
        label = (row.label or "").strip()
        geometry = row.geometry or {}
        if not label:
            continue
        if geometry.get("type") == "Polygon":
            rings = [geometry["coordinates"][0]]
        elif geometry.get("type") == "MultiPolygon":
            rings = [polygon[0] for polygon in geometry["coordinates"]]
        else:
            continue
        out += [(label, [[float(x), float(y)] for x, y, *_ in ring]) for ring in rings]
    return out


@dataclass(frozen=True)
class Claimed:
    """What a claim hands one worker: the job as it now is, its lease token (the only copy:
    the hub keeps its hash), the model, and the slide as the requester sees it."""

    job: InferenceJob
    lease: str
    model: ModelVersion | None  # None for a training job
    access: SlideAccess
    requester: Principal
    # A training job's annotated regions: (label, exterior ring in level-0 pixels).
    regions: tuple[tuple[str, list[list[float]]], ...] = ()


@dataclass(frozen=True)
class Heartbeat:
    cancel: bool
    lease_expires_at: datetime | None
    job: InferenceJob | None = None
    requester: Principal | None = None  # as of now: the capability is renewed for them


@dataclass(frozen=True)
class ResultObject:
    """One result the worker uploaded for its attempt, as the hub wrote it."""

    overlay: Overlay  # not yet added to a session
    keys: tuple[str, ...]  # every object it wrote


def _now() -> datetime:
    return datetime.now(UTC)


def _insert_job(
    session: Session,
    principal: Principal,
    access: SlideAccess,
    *,
    kind: JobKind,
    model_id: str | None,
    params: dict[str, Any],
    params_key: str,
    detail: dict[str, Any],
    job_id: str | None = None,
) -> InferenceJob:
    """A new queued job on the slide as the requester sees it, audited in the transaction."""
    job = InferenceJob(
        id=job_id or new_id(),
        kind=kind,
        model_id=model_id,
        slide_id=access.slide.id,
        slide_address=access.address,
        requester_id=principal.user_id,
        requester_centre=principal.centre,
        params=params,
        params_key=params_key,
        state=JobState.QUEUED,
        attempt=0,
        lost_leases=0,
        patches_done=0,
        patches_total=0,
        overlay_ids=[],
    )
    session.add(job)
    session.flush()
    record(
        session,
        AuditAction.JOB_CREATE,
        actor=principal,
        target_type="job",
        target_id=job.id,
        detail=detail,
    )
    return job


class Jobs:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        registry: Registry,
        policy: Policy,
        *,
        lease_s: float = LEASE_S,
        max_lost_leases: int = MAX_LOST_LEASES,
    ) -> None:
        self.db = db
        self.store = store
        self.registry = registry
        self.policy = policy
        self.lease_s = lease_s
        self.max_lost_leases = max_lost_leases

    # -- users -------------------------------------------------------------------------

    def may_run(self, principal: Principal) -> None:
        if not principal.has(*RUN_ROLES):
            raise MayNotRun("your role may not run models")

    def create(
        self,
        principal: Principal,
        model_id: str,
        addresses: Sequence[str],
        params: JobParams,
        *,
        force: bool = False,
    ) -> list[tuple[InferenceJob, bool]]:
        """One job per slide (`addresses` as the caller names them); a slide on which the
        same model version with the same parameters already succeeded, or is queued or
        running, gets that job back (`False`: not new), unless `force`."""
        self.may_run(principal)
        if not addresses:
            raise JobError("name at least one slide")
        if len(addresses) > MAX_SLIDES_PER_REQUEST:
            raise JobError(f"at most {MAX_SLIDES_PER_REQUEST} slides per request")
        try:
            model = self.registry.get(model_id)
        except ModelNotFound:
            raise ModelNotFound(f"no model {model_id!r}") from None
        manifest = Manifest.model_validate(model.manifest)
        seen: dict[str, SlideAccess] = {}
        for address in addresses:
            access = self.policy.access(principal, address)
            if access is None:
                raise SlideNotFound(f"no slide {address!r}")
            self._check_runnable(access, manifest, params)
            seen.setdefault(access.slide.id, access)
        key = params.key()
        out: list[tuple[InferenceJob, bool]] = []
        with self.db.session() as session, session.begin():
            for access in seen.values():
                existing = None if force else self._same_job(session, model.id, access, key)
                if existing is not None:
                    out.append((existing, False))
                    continue
                job = _insert_job(
                    session,
                    principal,
                    access,
                    kind=JobKind.INFERENCE,
                    model_id=model.id,
                    params=params.document(),
                    params_key=key,
                    detail={"model": model.id, "slide": access.address},
                )
                out.append((job, True))
        return out

    def create_training(
        self,
        principal: Principal,
        address: str,
        name: str,
        params: TrainingParams,
    ) -> InferenceJob:
        """A job that trains a patch classifier from the slide's annotations (their labels
        are the classes) and registers it as `name`, version "YYYY.MM.DD-<job>"."""
        self.may_run(principal)
        access = self.policy.access(principal, address)
        if access is None or not access.full:
            raise SlideNotFound(f"no slide {address!r}")
        if access.slide.mpp_x is None:
            raise JobError(
                "the slide has no resolution (µm per pixel): patches cannot be read at "
                f"{params.resolution} µm/px"
            )
        labels = {
            label for label, _ring in annotated_regions(self.policy.catalogue, access.slide.id)
        }
        if params.labels is not None:
            labels &= set(params.labels)
        if len(labels) < 2:
            raise JobError(
                "training needs area annotations (rectangles, polygons...) of at least two "
                f"labels on the slide; found {len(labels)}: {', '.join(sorted(labels)) or 'none'}"
            )
        job_id = new_id()
        version = f"{_now():%Y.%m.%d}-{job_id[:6]}"
        try:
            Manifest.model_validate(_probe_manifest(name, version))
        except ValueError:
            raise JobError(
                f"{name!r} is not a model name: 1 to 100 lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            ) from None
        document = {"name": name, "version": version, **params.document()}
        with self.db.session() as session, session.begin():
            job = _insert_job(
                session,
                principal,
                access,
                kind=JobKind.TRAINING,
                model_id=None,
                params=document,
                params_key=job_id,
                detail={"training": name, "slide": access.address},
                job_id=job_id,
            )
        return job

    @staticmethod
    def _check_runnable(access: SlideAccess, manifest: Manifest, params: JobParams) -> None:
        slide = access.slide
        if manifest.unit is Unit.MICRONS and not slide.mpp_x:
            raise JobError(
                f"slide {access.address!r} has no resolution (µm per pixel) in its file, and "
                f"{manifest.name} {manifest.version} reads patches at "
                f"{manifest.resolution} µm/px: set the slide's resolution, or use a model "
                "whose manifest works in pixels"
            )
        region = params.region
        if region is not None:
            if region.width < 1 or region.height < 1 or region.x < 0 or region.y < 0:
                raise JobError("a region has a non-negative origin and a positive size")
            if region.x + region.width > slide.width or region.y + region.height > slide.height:
                raise JobError(f"the region lies outside the {slide.width} x {slide.height} slide")

    @staticmethod
    def _same_job(
        session: Session, model_id: str, access: SlideAccess, key: str
    ) -> InferenceJob | None:
        live = (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
        query = (
            select(InferenceJob)
            .where(
                InferenceJob.model_id == model_id,
                InferenceJob.slide_id == access.slide.id,
                InferenceJob.params_key == key,
                InferenceJob.slide_address == access.address,
                InferenceJob.state.in_(live),
            )
            .order_by(InferenceJob.created_at.desc())
            .limit(1)
        )
        return session.scalar(query)

    def visible(self, principal: Principal) -> ColumnElement[bool]:
        """The jobs a caller sees: their own, and their centre's if their role sees slides."""
        if principal.has(*SLIDE_ROLES):
            return or_(
                InferenceJob.requester_id == principal.user_id,
                InferenceJob.requester_centre == principal.centre,
            )
        return InferenceJob.requester_id == principal.user_id

    def get(self, principal: Principal, job_id: str) -> InferenceJob:
        with self.db.session() as session:
            job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
            if job is None or not session.scalar(
                select(InferenceJob.id).where(InferenceJob.id == job.id, self.visible(principal))
            ):
                raise JobNotFound(f"no job {job_id!r}")
            return job

    def list(
        self,
        principal: Principal,
        *,
        slide: str | None = None,
        model_id: str | None = None,
        state: JobState | None = None,
        mine: bool = False,
        limit: int = 100,
    ) -> Sequence[InferenceJob]:
        conditions: list[ColumnElement[bool]] = [self.visible(principal)]
        if slide is not None:
            access = self.policy.access(principal, slide)
            if access is None:
                raise SlideNotFound(f"no slide {slide!r}")
            conditions.append(InferenceJob.slide_id == access.slide.id)
            conditions.append(InferenceJob.slide_address == access.address)
        if model_id is not None:
            conditions.append(InferenceJob.model_id == model_id)
        if state is not None:
            conditions.append(InferenceJob.state == state)
        if mine:
            conditions.append(InferenceJob.requester_id == principal.user_id)
        with self.db.session() as session, session.begin():
            self._sweep(session)
            query = (
                select(InferenceJob)
                .where(and_(*conditions))
                .order_by(InferenceJob.created_at.desc(), InferenceJob.id)
                .limit(max(1, min(limit, 500)))
            )
            return session.scalars(query).all()

    def _may_manage(self, principal: Principal, job: InferenceJob) -> None:
        if job.requester_id == principal.user_id:
            return
        if job.requester_centre == principal.centre and principal.has(*MANAGE_ROLES):
            return
        raise MayNotRun("only the job's requester or an AI engineer of its centre may do this")

    def cancel(self, principal: Principal, job_id: str) -> InferenceJob:
        """Cancels a queued or running job (a running worker learns it at its next
        heartbeat and stops); an ended job is returned as it is."""
        job = self.get(principal, job_id)
        self._may_manage(principal, job)
        with self.db.session() as session, session.begin():
            changed = session.execute(
                update(InferenceJob)
                .where(
                    InferenceJob.id == job.id,
                    InferenceJob.state.in_((JobState.QUEUED, JobState.RUNNING)),
                )
                .values(state=JobState.CANCELLED, finished_at=_now(), updated_at=_now())
            )
            if getattr(changed, "rowcount", 0):
                record(
                    session,
                    AuditAction.JOB_CANCEL,
                    actor=principal,
                    target_type="job",
                    target_id=job.id,
                )
        self._clean(job.slide_id, job.id, keep=())
        return self.get(principal, job_id)

    def retry(self, principal: Principal, job_id: str) -> InferenceJob:
        """Queues a failed or cancelled job again (same model, slide and parameters)."""
        job = self.get(principal, job_id)
        self._may_manage(principal, job)
        self.may_run(principal)
        with self.db.session() as session, session.begin():
            changed = session.execute(
                update(InferenceJob)
                .where(
                    InferenceJob.id == job.id,
                    InferenceJob.state.in_((JobState.FAILED, JobState.CANCELLED)),
                )
                .values(
                    state=JobState.QUEUED,
                    error=None,
                    lost_leases=0,
                    lease_hash=None,
                    lease_expires_at=None,
                    patches_done=0,
                    finished_at=None,
                    updated_at=_now(),
                )
            )
            if not getattr(changed, "rowcount", 0):
                raise JobError(
                    f"job {job.id} is {job.state}: only a failed or cancelled job is retried"
                )
            record(
                session,
                AuditAction.JOB_CREATE,
                actor=principal,
                target_type="job",
                target_id=job.id,
                detail={"retry": True},
            )
        return self.get(principal, job_id)

    # -- workers -----------------------------------------------------------------------

    def _sweep(self, session: Session) -> None:
        """Jobs whose lease expired: queued again, or failed after too many lost leases."""
        now = _now()
        expired = (
            InferenceJob.state == JobState.RUNNING,
            InferenceJob.lease_expires_at < now,
        )
        session.execute(
            update(InferenceJob)
            .where(*expired, InferenceJob.lost_leases + 1 >= self.max_lost_leases)
            .values(
                state=JobState.FAILED,
                lost_leases=InferenceJob.lost_leases + 1,
                error=f"its worker stopped answering {self.max_lost_leases} times",
                finished_at=now,
                updated_at=now,
            )
        )
        session.execute(
            update(InferenceJob)
            .where(*expired)
            .values(
                state=JobState.QUEUED,
                lost_leases=InferenceJob.lost_leases + 1,
                lease_hash=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )

    def claim(self, worker: str, centre: str | None = None) -> Claimed | None:
        """The oldest queued job, leased to `worker`; None when there is none. With
        `centre`, only the jobs of that centre's requesters: a node in a hospital's network
        reads that hospital's slides only (a worker token with the all-centres scope
        serves every centre: the hub's own pool)."""
        only = (InferenceJob.requester_centre == centre,) if centre is not None else ()
        for _ in range(_CLAIM_TRIES):
            with self.db.session() as session, session.begin():
                self._sweep(session)
                candidate = session.scalar(
                    select(InferenceJob.id)
                    .where(InferenceJob.state == JobState.QUEUED, *only)
                    .order_by(InferenceJob.created_at, InferenceJob.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if candidate is None:
                    return None
                token = secrets.token_urlsafe(32)
                now = _now()
                won = session.execute(
                    update(InferenceJob)
                    .where(InferenceJob.id == candidate, InferenceJob.state == JobState.QUEUED)
                    .values(
                        state=JobState.RUNNING,
                        attempt=InferenceJob.attempt + 1,
                        lease_hash=lease_hash(token),
                        lease_expires_at=now + timedelta(seconds=self.lease_s),
                        worker=worker[:200],
                        started_at=now,
                        updated_at=now,
                    )
                )
                if not getattr(won, "rowcount", 0):
                    continue  # another worker took it between the select and the update
                job = session.get(InferenceJob, candidate, populate_existing=True)
                assert job is not None
                problem, claimed = self._lease_parts(session, job, token)
            if problem is None and claimed is not None:
                return claimed
            self._fail_now(job.id, token, problem or "the job cannot run")
            self._clean_job(job.id)
        return None

    def _lease_parts(
        self, session: Session, job: InferenceJob, token: str
    ) -> tuple[str | None, Claimed | None]:
        """The rest of a claim, or why the job cannot run (the requester's rights are
        checked again: a disabled account or a revoked grant ends the job)."""
        model = session.get(ModelVersion, job.model_id) if job.model_id else None
        user = session.get(User, job.requester_id)
        if model is None and job.kind != JobKind.TRAINING:
            return "its model is no longer registered", None
        if user is None or not user.active:
            return "its requester's account is disabled", None
        requester = principal_of(user)
        access = self.policy.access(requester, job.slide_address)
        if access is None or access.slide.id != job.slide_id:
            return "its requester may no longer see the slide", None
        regions: tuple[tuple[str, list[list[float]]], ...] = ()
        if job.kind == JobKind.TRAINING:
            wanted = job.params.get("labels")
            regions = tuple(
                r for r in annotated_regions(self.policy.catalogue, job.slide_id)
                if wanted is None or r[0] in wanted
            )  # fmt: skip
        return None, Claimed(job, token, model, access, requester, regions)

    def _running(self, session: Session, job_id: str, token: str) -> InferenceJob:
        """The job if `token` is its running attempt's lease; StaleLease otherwise."""
        self._sweep(session)
        job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        if job.lease_hash != lease_hash(token) or job.state != JobState.RUNNING:
            raise StaleLease(
                f"this lease is not job {job.id}'s running attempt (the job is {job.state}, "
                f"attempt {job.attempt}): stop working on it"
            )
        return job

    def heartbeat(self, job_id: str, token: str, done: int, total: int) -> Heartbeat:
        """Extends the lease and records progress; tells a cancelled job's worker to stop.
        The requester's rights are checked again: lost, the job fails (StaleLease)."""
        beat, problem = self._beat(job_id, token, done, total)
        if problem is not None:
            self._fail_now(job_id, token, problem)
            self._clean_job(job_id)
            raise StaleLease(f"job {job_id} may no longer run ({problem}): stop working on it")
        return beat

    def _beat(self, job_id: str, token: str, done: int, total: int) -> tuple[Heartbeat, str | None]:
        with self.db.session() as session, session.begin():
            job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
            # A cancelled job still knows its last lease: that worker is told to stop.
            if (
                job is not None
                and job.state == JobState.CANCELLED
                and job.lease_hash == lease_hash(token)
            ):
                return Heartbeat(cancel=True, lease_expires_at=None), None
            job = self._running(session, job_id, token)
            expires = _now() + timedelta(seconds=self.lease_s)
            total = max(0, min(int(total), 10**9))
            session.execute(
                update(InferenceJob)
                .where(InferenceJob.id == job.id, InferenceJob.lease_hash == job.lease_hash)
                .values(
                    lease_expires_at=expires,
                    patches_done=max(0, min(int(done), total)),
                    patches_total=total,
                    updated_at=_now(),
                )
            )
            problem, claimed = self._lease_parts(session, job, token)
            requester = claimed.requester if claimed is not None else None
            return Heartbeat(False, expires, job, requester), problem

    def check_lease(self, job_id: str, token: str) -> InferenceJob:
        with self.db.session() as session, session.begin():
            return self._running(session, job_id, token)

    def check_lease_or_done(self, job_id: str, token: str) -> InferenceJob:
        """The job if `token` is its running attempt's lease, or the lease that completed it."""
        with self.db.session() as session, session.begin():
            job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
            if (
                job is not None
                and job.state == JobState.SUCCEEDED
                and job.lease_hash == lease_hash(token)
            ):
                return job
            return self._running(session, job_id, token)

    def _clean_job(self, job_id: str) -> None:
        with self.db.session() as session:
            job = session.get(InferenceJob, job_id)
        if job is not None:
            self._clean(job.slide_id, job.id, keep=())

    def release(self, job_id: str, token: str) -> None:
        """A worker hands its job back (it is shutting down): queued again at once."""
        with self.db.session() as session, session.begin():
            job = self._running(session, job_id, token)
            session.execute(
                update(InferenceJob)
                .where(InferenceJob.id == job.id, InferenceJob.lease_hash == job.lease_hash)
                .values(
                    state=JobState.QUEUED,
                    lease_hash=None,
                    lease_expires_at=None,
                    updated_at=_now(),
                )
            )
        self._clean(job.slide_id, job.id, keep=())

    def fail(self, job_id: str, token: str, reason: str) -> InferenceJob:
        with self.db.session() as session, session.begin():
            job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
            if (
                job is not None
                and job.state == JobState.FAILED
                and job.lease_hash == lease_hash(token)
            ):
                return job  # the same report again
            job = self._running(session, job_id, token)
            self._end_failed(session, job, reason)
        self._clean(job.slide_id, job.id, keep=())
        return job

    def _fail_now(self, job_id: str, token: str, reason: str) -> None:
        with self.db.session() as session, session.begin():
            job = session.get(InferenceJob, job_id)
            if job is not None and job.lease_hash == lease_hash(token):
                self._end_failed(session, job, reason)

    def _end_failed(self, session: Session, job: InferenceJob, reason: str) -> None:
        reason = (reason.strip() or "the worker gave no reason")[:MAX_REASON]
        session.execute(
            update(InferenceJob)
            .where(InferenceJob.id == job.id, InferenceJob.lease_hash == job.lease_hash)
            .values(state=JobState.FAILED, error=reason, finished_at=_now(), updated_at=_now())
        )
        record(
            session,
            AuditAction.JOB_FAIL,
            actor_id=job.requester_id,
            actor_centre=job.requester_centre,
            target_type="job",
            target_id=job.id,
            detail={"attempt": job.attempt},
        )

    def complete(
        self,
        job_id: str,
        token: str,
        results: Sequence[ResultObject],
        summary: dict[str, Any],
        provenance: dict[str, Any],
        model: ModelVersion | None = None,
    ) -> InferenceJob:
        """Commits the attempt's result once: its overlays (or the model it trained),
        summary and provenance, in the update that ends the job. The same token again
        returns the job as committed."""
        with self.db.session() as session, session.begin():
            job = session.get(InferenceJob, job_id) if len(job_id) <= 64 else None
            if (
                job is not None
                and job.state == JobState.SUCCEEDED
                and job.lease_hash == lease_hash(token)
            ):
                return job
            job = self._running(session, job_id, token)
            ids = [r.overlay.id for r in results]
            if model is not None:
                session.add(model)  # first: the job's row refers to it
                session.flush()
            won = session.execute(
                update(InferenceJob)
                .where(
                    InferenceJob.id == job.id,
                    InferenceJob.lease_hash == job.lease_hash,
                    InferenceJob.state == JobState.RUNNING,
                )
                .values(
                    state=JobState.SUCCEEDED,
                    overlay_ids=ids,
                    summary=summary,
                    provenance=provenance,
                    result_model_id=model.id if model is not None else None,
                    patches_done=InferenceJob.patches_total,
                    finished_at=_now(),
                    updated_at=_now(),
                )
            )
            if not getattr(won, "rowcount", 0):
                raise StaleLease(f"job {job.id} changed while completing: stop working on it")
            for result in results:
                session.add(result.overlay)
            if model is not None:
                record(
                    session,
                    AuditAction.MODEL_ADD,
                    actor_id=job.requester_id,
                    actor_centre=job.requester_centre,
                    target_type="model",
                    target_id=model.id,
                    detail={"name": model.name, "version": model.version, "job": job.id},
                )
            record(
                session,
                AuditAction.JOB_RESULT,
                actor_id=job.requester_id,
                actor_centre=job.requester_centre,
                target_type="job",
                target_id=job.id,
                detail={"attempt": job.attempt, "overlays": ids},
            )
        keep = {key for r in results for key in r.keys if key == r.overlay.storage_key}
        self._clean(job.slide_id, job.id, keep=keep)
        with self.db.session() as session:
            done = session.get(InferenceJob, job.id)
            assert done is not None
            return done

    def _clean(self, slide_id: str, job_id: str, keep: set[str] | tuple[str, ...]) -> None:
        """Deletes the job's result objects but `keep` (the committed result)."""
        for info in list(self.store.list(result_prefix(slide_id, job_id))):
            if info.key not in keep:
                self.store.delete(info.key)

    def requester_of(self, job: InferenceJob) -> Principal:
        with self.db.session() as session:
            user = session.get(User, job.requester_id)
        if user is None:
            raise StaleLease(f"job {job.id}'s requester is gone: stop working on it")
        return principal_of(user)

    def is_ended(self, job: InferenceJob) -> bool:
        return job.state in JOB_ENDS
