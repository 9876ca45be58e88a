"""The model registry: versions of models, each an artefact in storage by its SHA-256 and
a manifest (exchange.jobs.manifest). A version is immutable: registering the same name
and version again with the same artefact and manifest changes nothing; with another one
it is refused (409).

The hub never deserialises an artefact. It checks only what the file's zip directory says
(TorchScript and torch.export programs are both zip archives with known entries), and the
SHA-256 the manifest claims; workers load it, after checking the SHA-256 again."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from exchange.audit.actions import AuditAction
from exchange.audit.chain import record
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.core.models import ModelVersion
from exchange.core.principal import Principal, Role
from exchange.jobs.manifest import Manifest
from storage import ObjectStore

MAX_ARTEFACT_BYTES = 2 * 1024**3
MODEL_ROLES = frozenset({Role.AI_ENGINEER, Role.HUB_ADMIN})
_CHUNK = 1024 * 1024


class ArtefactFormat(StrEnum):
    TORCHSCRIPT = "torchscript"  # torch.jit.save
    EXPORT = "export"  # torch.export.save (.pt2)


class InvalidArtefact(ExchangeError):
    http_status = 400


class ModelConflict(ExchangeError):
    """This name and version exist with another artefact or manifest: versions are immutable."""

    http_status = 409


class ModelNotFound(ExchangeError):
    http_status = 404


class MayNotRegister(ExchangeError):
    http_status = 403


def artefact_key_of(sha256: str) -> str:
    return f"models/sha256/{sha256}"


def sniff_format(path: Path) -> ArtefactFormat:
    """The artefact's format from its zip directory alone (nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidArtefact(
            "the artefact is not a TorchScript or torch.export program (not a zip archive)"
        ) from None
    tails = {name.split("/", 1)[1] if "/" in name else name for name in names}
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return ArtefactFormat.EXPORT
    if "data.pkl" in tails and any(t.startswith("code/") for t in tails):
        return ArtefactFormat.TORCHSCRIPT
    raise InvalidArtefact(
        "the artefact is a zip archive but neither a TorchScript program (torch.jit.save) "
        "nor a torch.export program (torch.export.save); a bare state dict cannot be run"
    )


@dataclass(frozen=True)
class Staged:
    """An artefact copied to a local file while hashed: its digest, size and format."""

    path: Path
    sha256: str
    size: int
    artefact_format: ArtefactFormat


def stage(stream: BinaryIO, work_dir: Path) -> Staged:
    """Copies the stream to a temporary file in `work_dir`, hashing it (bounded size)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(dir=work_dir, suffix=".model", delete=False)  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > MAX_ARTEFACT_BYTES:
                    raise InvalidArtefact(
                        f"an artefact is at most {MAX_ARTEFACT_BYTES // 1024**3} GiB"
                    )
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise InvalidArtefact("the artefact is empty")
        return Staged(path, digest.hexdigest(), size, sniff_format(path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class Registry:
    def __init__(self, db: Database, store: ObjectStore, work_dir: Path) -> None:
        self.db = db
        self.store = store
        self.work_dir = work_dir

    def add(self, principal: Principal, manifest: Manifest, artefact: BinaryIO) -> ModelVersion:
        """Registers a version (idempotent for the same artefact and manifest)."""
        if not principal.has(*MODEL_ROLES):
            raise MayNotRegister("only an AI engineer or a hub administrator registers models")
        staged = stage(artefact, self.work_dir)
        try:
            return self._add(principal, manifest, staged)
        finally:
            staged.path.unlink(missing_ok=True)

    def add_bytes(self, principal: Principal, manifest: Manifest, data: bytes) -> ModelVersion:
        return self.add(principal, manifest, io.BytesIO(data))

    def _add(self, principal: Principal, manifest: Manifest, staged: Staged) -> ModelVersion:
        if manifest.sha256 is not None and manifest.sha256 != staged.sha256:
            raise InvalidArtefact(
                f"the manifest says sha256 {manifest.sha256}, the artefact is {staged.sha256}"
            )
        recorded = manifest.model_copy(update={"sha256": staged.sha256})
        document = recorded.model_dump(mode="json")
        existing = self.find(manifest.name, manifest.version)
        if existing is not None:
            return self._same(existing, document)
        row = self._row(principal, recorded, staged, self._keep(staged))
        try:
            with self.db.session() as session, session.begin():
                session.add(row)
                session.flush()
                record(
                    session,
                    AuditAction.MODEL_ADD,
                    actor=principal,
                    target_type="model",
                    target_id=row.id,
                    detail={"name": row.name, "version": row.version, "sha256": row.sha256},
                )
        except IntegrityError:
            # Registered at the same moment by another request: the same rule as above.
            raced = self.find(manifest.name, manifest.version)
            if raced is None:
                raise
            return self._same(raced, document)
        return row

    @staticmethod
    def _same(existing: ModelVersion, document: dict[str, object]) -> ModelVersion:
        if existing.sha256 != document["sha256"] or existing.manifest != document:
            raise ModelConflict(
                f"{existing.name} {existing.version} is registered with another artefact or "
                "manifest; versions are immutable: register a new version"
            )
        return existing

    def trained(self, requester: Principal, manifest: Manifest, artefact_key: str) -> ModelVersion:
        """The row of a model a training job made (not yet recorded: the job's completion
        records it with the job, exchange.jobs.queue): its artefact, uploaded by the
        worker under the attempt's key, is checked and copied to its place by SHA-256.
        Whoever may run models may train one from their own annotations."""
        with tempfile.TemporaryDirectory(dir=self._work()) as tmp:
            local = Path(tmp) / "artefact"
            self.store.download(artefact_key, str(local))
            with local.open("rb") as handle:
                staged = stage(handle, Path(tmp))
            try:
                key = self._keep(staged)
            finally:
                staged.path.unlink(missing_ok=True)
        if self.find(manifest.name, manifest.version) is not None:
            raise ModelConflict(f"{manifest.name} {manifest.version} is already registered")
        recorded = manifest.model_copy(update={"sha256": staged.sha256})
        return self._row(requester, recorded, staged, key)

    def _keep(self, staged: Staged) -> str:
        """Stores a staged artefact at its place by SHA-256 (once): its key."""
        key = artefact_key_of(staged.sha256)
        if not self.store.exists(key):
            with staged.path.open("rb") as handle:
                self.store.put(key, handle, staged.size)
        return key

    @staticmethod
    def _row(principal: Principal, manifest: Manifest, staged: Staged, key: str) -> ModelVersion:
        """The row of a version (not yet recorded), its manifest with the artefact's digest."""
        return ModelVersion(
            id=new_id(),
            name=manifest.name,
            version=manifest.version,
            task=manifest.task,
            sha256=staged.sha256,
            artefact_format=staged.artefact_format,
            artefact_key=key,
            size_bytes=staged.size,
            manifest=manifest.model_dump(mode="json"),
            created_by=principal.user_id,
            centre=principal.centre,
        )

    def _work(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def find(self, name: str, version: str) -> ModelVersion | None:
        with self.db.session() as session:
            return session.scalar(
                select(ModelVersion).where(
                    ModelVersion.name == name, ModelVersion.version == version
                )
            )

    def get(self, model_id: str) -> ModelVersion:
        with self.db.session() as session:
            row = session.get(ModelVersion, model_id) if len(model_id) <= 64 else None
        if row is None:
            raise ModelNotFound(f"no model {model_id!r}")
        return row

    def all(self) -> Sequence[ModelVersion]:
        with self.db.session() as session:
            query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.created_at.desc())
            return session.scalars(query).all()
