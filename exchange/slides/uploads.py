"""Resumable uploads: a slide's files arrive part by part, straight into object storage, and
become a slide only once every file is whole, matches its declared SHA-256 and passes the
same sandboxed validation as `iain ingest`.

Parts go to the storage's own multipart uploads (S3 multipart on S3, part files on a local
store) under the slide's final keys: completion joins them where they are, so the hub holds
one part in memory at a time and never makes a second copy of the slide in storage.

Checksums: each part is hashed as it passes through the hub (and checked against the
client's X-Part-Sha256 when given), so a part damaged in transit is refused at once and only
that part is sent again. SHA-256 digests of parts cannot be combined into the file's
digest, so the whole-file SHA-256 is checked at completion by one streamed pass over the
stored object: what is checked is what will be served.

Validation: a TIFF-family slide is inspected in place, by byte ranges of the stored object,
so completing a 2 GB upload needs no free local disk and no download; formats that OpenSlide
reads from local files are copied down once, hashed on the way (see _verify_and_record)."""

from __future__ import annotations

import functools
import hashlib
import math
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.core.models import Slide, Upload, UploadFile, UploadPart
from exchange.core.statuses import UploadStatus
from exchange.slides.catalogue import Catalogue
from storage import ObjectStore, StorageError, UploadGone
from storage.base import check_key
from tiles.errors import TilesError
from tiles.formats import TIFF_MAGICS
from tiles.ingest import Inspection
from tiles.location import SlideLocation, index_key, original_key, slide_prefix
from tiles.sandbox import inspect_in_sandbox, inspect_stored_in_sandbox

MAX_FILES = 5000
MAX_PATH = 500
MAX_PARTS = 10_000  # S3's limit per object
_CHUNK = 1024 * 1024  # streamed reads of stored files
# Local copies (formats OpenSlide reads from files) live in work_dir folders named so.
_COPY_PREFIX = "upload-"
_STALE_COPY_S = 24 * 3600
# Where the paths of a slide inspected in storage seem to lie (they are never opened).
_IN_PLACE_ROOT = Path("/stored")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[a-z0-9]{1,32}")


class UploadNotFound(ExchangeError):
    """No upload (or no file or part) with this id."""

    http_status = 404


class InvalidUpload(ExchangeError):
    """A malformed upload request: bad path, size, part number or part length."""

    http_status = 400


class UploadConflict(ExchangeError):
    """The upload is not in a state that allows this (already completed, failed, busy...)."""

    http_status = 409


class ChecksumMismatch(ExchangeError):
    """Bytes that do not match the SHA-256 the client declared."""

    http_status = 422


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FileState:
    index: int
    path: str
    size: int
    parts: int
    stored: tuple[int, ...]  # part numbers already stored


@dataclass(frozen=True)
class UploadState:
    id: str
    name: str
    centre: str
    status: str
    error: str | None
    part_size: int
    slide_id: str | None  # set once complete
    files: tuple[FileState, ...]


def part_count(size: int, part_size: int) -> int:
    return math.ceil(size / part_size)


def part_length(size: int, part_size: int, number: int) -> int:
    """Every part is `part_size` bytes except the last, which holds the rest."""
    return min(part_size, size - (number - 1) * part_size)


def check_path(path: str) -> str:
    """A file's path inside the upload: relative, '/'-separated, never leaving its folder."""
    if len(path) > MAX_PATH:
        raise InvalidUpload(f"file path longer than {MAX_PATH} characters: {path[:40]!r}...")
    try:
        check_key(path)
    except StorageError:
        raise InvalidUpload(
            f"invalid file path {path!r}: paths are relative, '/'-separated, without '..'"
        ) from None
    if any(part.startswith(".") for part in path.split("/")):
        raise InvalidUpload(f"invalid file path {path!r}: hidden names are not accepted")
    return path


def check_specs(files: Sequence[FileSpec], max_bytes: int) -> None:
    if not files:
        raise InvalidUpload("an upload needs at least one file")
    if len(files) > MAX_FILES:
        raise InvalidUpload(f"too many files ({len(files)}; at most {MAX_FILES})")
    seen: set[str] = set()
    for spec in files:
        check_path(spec.path)
        if spec.path in seen:
            raise InvalidUpload(f"file {spec.path!r} is listed twice")
        seen.add(spec.path)
        if spec.size < 0:
            raise InvalidUpload(f"file {spec.path!r}: negative size")
        if not _SHA256.fullmatch(spec.sha256):
            raise InvalidUpload(f"file {spec.path!r}: sha256 must be 64 lowercase hex digits")
    # A file cannot also be a folder of another file ("a" and "a/b").
    for spec in files:
        parts = spec.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise InvalidUpload(f"{'/'.join(parts[:i])!r} is both a file and a folder")
    total = sum(spec.size for spec in files)
    if total > max_bytes:
        raise InvalidUpload(f"upload of {total} bytes exceeds the limit of {max_bytes} bytes")


class Uploads:
    """Upload sessions, kept in the catalogue so a hub restart loses none."""

    def __init__(
        self,
        store: ObjectStore,
        catalogue: Catalogue,
        *,
        part_size: int,
        max_bytes: int,
        work_dir: Path,
    ) -> None:
        if part_size < store.min_part_size:
            raise ValueError(
                f"upload part size {part_size} is below this storage's minimum of "
                f"{store.min_part_size} bytes"
            )
        self.store = store
        self.catalogue = catalogue
        self.part_size = part_size
        self.max_bytes = max_bytes
        self.work_dir = work_dir
        self._lock = threading.Lock()
        self._completing: set[str] = set()
        self._remove_stale_copies()

    def _remove_stale_copies(self) -> None:
        """Local copies left by a hub killed during a completion. Only old ones: another
        hub process may share the work dir and be completing an upload right now."""
        if not self.work_dir.is_dir():
            return
        cutoff = time.time() - _STALE_COPY_S
        for path in self.work_dir.glob(_COPY_PREFIX + "*"):
            try:
                if path.is_dir() and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue  # removed meanwhile

    # --- create / inspect / abort -----------------------------------------------------------

    def create(self, centre: str, name: str, files: Sequence[FileSpec]) -> UploadState:
        self.catalogue.db.check_centre(centre)
        check_specs(files, self.max_bytes)
        name = name.strip() or files[0].path.split("/")[0]
        # Larger parts for huge files: S3 allows at most 10000 parts per object.
        biggest = max(spec.size for spec in files)
        part_size = max(self.part_size, math.ceil(biggest / MAX_PARTS))
        upload_id, slide_id = new_id(), new_id()
        rows: list[UploadFile] = []
        try:
            for index, spec in enumerate(files):
                key = original_key(slide_id, spec.path)
                # An empty file has no parts: it is written on completion.
                multipart = self.store.create_multipart(key) if spec.size else ""
                rows.append(
                    UploadFile(
                        upload_id=upload_id,
                        index=index,
                        path=spec.path,
                        size=spec.size,
                        sha256=spec.sha256,
                        key=key,
                        multipart_id=multipart,
                        assembled=False,
                    )
                )
        except BaseException:
            self._abort_files(rows)
            raise
        with self.catalogue.session() as session, session.begin():
            session.add(
                Upload(
                    id=upload_id,
                    slide_id=slide_id,
                    centre=centre,
                    name=name[:500],
                    part_size=part_size,
                    status=UploadStatus.OPEN,
                )
            )
            session.flush()  # the upload row first: the files refer to it
            session.add_all(rows)
        return self.state(upload_id)

    def _get(self, upload_id: str) -> tuple[Upload, list[UploadFile], list[UploadPart]]:
        if not _ID.fullmatch(upload_id):
            raise UploadNotFound(f"no upload {upload_id[:40]!r}")
        with self.catalogue.session() as session:
            upload = session.get(Upload, upload_id)
            if upload is None:
                raise UploadNotFound(f"no upload {upload_id!r}")
            files = list(
                session.scalars(
                    select(UploadFile)
                    .where(UploadFile.upload_id == upload_id)
                    .order_by(UploadFile.index)
                )
            )
            parts = list(
                session.scalars(select(UploadPart).where(UploadPart.upload_id == upload_id))
            )
        return upload, files, parts

    def state(self, upload_id: str) -> UploadState:
        upload, files, parts = self._get(upload_id)
        stored: dict[int, list[int]] = {}
        for part in parts:
            stored.setdefault(part.file_index, []).append(part.number)
        return UploadState(
            id=upload.id,
            name=upload.name,
            centre=upload.centre,
            status=upload.status,
            error=upload.error,
            part_size=upload.part_size,
            slide_id=upload.slide_id if upload.status == UploadStatus.COMPLETE else None,
            files=tuple(
                FileState(
                    index=f.index,
                    path=f.path,
                    size=f.size,
                    parts=part_count(f.size, upload.part_size),
                    stored=tuple(sorted(stored.get(f.index, []))),
                )
                for f in files
            ),
        )

    def abort(self, upload_id: str) -> None:
        """Drops an unfinished upload and every byte it stored."""
        upload, files, _parts = self._get(upload_id)
        if upload.status == UploadStatus.COMPLETE:
            raise UploadConflict(
                f"upload {upload_id!r} is complete: slide {upload.slide_id} exists"
            )
        if not self._claim(upload_id):
            raise UploadConflict(f"upload {upload_id!r} is being completed")
        try:
            self._abort_files(files)
            self._drop_objects(upload.slide_id)
            with self.catalogue.session() as session, session.begin():
                for table in (UploadPart, UploadFile):
                    session.execute(delete(table).where(table.upload_id == upload_id))
                session.execute(delete(Upload).where(Upload.id == upload_id))
        finally:
            self._release(upload_id)

    def prune(self, older_than: timedelta) -> list[str]:
        """Aborts unfinished uploads (open or failed) started more than `older_than` ago:
        their parts take space in storage that no listing shows. Returns their ids."""
        cutoff = datetime.now(UTC) - older_than
        with self.catalogue.session() as session:
            stale = list(
                session.scalars(
                    select(Upload.id).where(
                        Upload.status != UploadStatus.COMPLETE, Upload.created_at < cutoff
                    )
                )
            )
        pruned = []
        for upload_id in stale:
            try:
                self.abort(upload_id)
            except (UploadNotFound, UploadConflict):
                continue  # completed or aborted meanwhile
            pruned.append(upload_id)
        return pruned

    def _abort_files(self, files: Sequence[UploadFile]) -> None:
        for f in files:
            if f.multipart_id and not f.assembled:
                self.store.abort_multipart(f.key, f.multipart_id)

    def _drop_objects(self, slide_id: str) -> None:
        for obj in list(self.store.list(slide_prefix(slide_id))):
            self.store.delete(obj.key)

    # --- parts ------------------------------------------------------------------------------

    def _part(self, upload_id: str, index: int, number: int) -> tuple[UploadFile, int]:
        """The file that part `number` of file `index` belongs to, and the part's length."""
        if not _ID.fullmatch(upload_id):
            raise UploadNotFound(f"no upload {upload_id[:40]!r}")
        with self.catalogue.session() as session:
            upload = session.get(Upload, upload_id)
            if upload is None:
                raise UploadNotFound(f"no upload {upload_id!r}")
            f = session.get(UploadFile, (upload_id, index))
        if upload.status != UploadStatus.OPEN or upload_id in self._completing:
            state = "being completed" if upload.status == UploadStatus.OPEN else upload.status
            raise UploadConflict(f"upload {upload_id!r} is {state}: it takes no more parts")
        if f is None:
            raise UploadNotFound(f"upload {upload_id!r} has no file {index}")
        count = part_count(f.size, upload.part_size)
        if not 1 <= number <= count:
            raise InvalidUpload(f"file {f.path!r} has parts 1..{count}; there is no part {number}")
        return f, part_length(f.size, upload.part_size, number)

    def part_length(self, upload_id: str, index: int, number: int) -> int:
        """How many bytes part `number` of file `index` must hold; checks both exist."""
        return self._part(upload_id, index, number)[1]

    def put_part(
        self, upload_id: str, index: int, number: int, data: bytes, sha256: str | None = None
    ) -> str:
        """Stores one part (again, if it was already there); returns its SHA-256."""
        f, expected = self._part(upload_id, index, number)
        if len(data) != expected:
            raise InvalidUpload(
                f"part {number} of {f.path!r} must be {expected} bytes, got {len(data)}"
            )
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256.lower() != digest:
            raise ChecksumMismatch(
                f"part {number} of {f.path!r} does not match its X-Part-Sha256: "
                "damaged in transit, send it again"
            )
        etag = self.store.upload_part(f.key, f.multipart_id, number, data)
        with self.catalogue.session() as session, session.begin():
            session.merge(
                UploadPart(
                    upload_id=upload_id,
                    file_index=index,
                    number=number,
                    size=len(data),
                    etag=etag,
                    sha256=digest,
                )
            )
        return digest

    # --- completion -------------------------------------------------------------------------

    def _claim(self, upload_id: str) -> bool:
        with self._lock:
            if upload_id in self._completing:
                return False
            self._completing.add(upload_id)
            return True

    def _release(self, upload_id: str) -> None:
        with self._lock:
            self._completing.discard(upload_id)

    def _set_status(self, upload_id: str, status: str, error: str | None = None) -> None:
        with self.catalogue.session() as session, session.begin():
            upload = session.get(Upload, upload_id)
            if upload is not None:
                upload.status, upload.error = status, error

    def complete(self, upload_id: str) -> Slide:
        """Joins, verifies and validates every file, then records the slide. Completing a
        complete upload again returns its slide."""
        if not self._claim(upload_id):
            raise UploadConflict(f"upload {upload_id!r} is already being completed")
        try:
            return self._complete(upload_id)
        finally:
            self._release(upload_id)

    def _complete(self, upload_id: str) -> Slide:
        upload, files, parts = self._get(upload_id)
        existing = self.catalogue.get(upload.slide_id)
        if existing is not None:  # recorded before a crash, or completed already
            if upload.status != UploadStatus.COMPLETE:
                self._set_status(upload_id, UploadStatus.COMPLETE)
            return existing
        if upload.status != UploadStatus.OPEN:
            raise UploadConflict(f"upload {upload_id!r} failed: {upload.error}")
        by_file: dict[int, dict[int, UploadPart]] = {}
        for part in parts:
            by_file.setdefault(part.file_index, {})[part.number] = part
        missing = []
        for f in files:
            have = by_file.get(f.index, {})
            lacking = [
                n for n in range(1, part_count(f.size, upload.part_size) + 1) if n not in have
            ]
            if lacking:
                missing.append(f"{f.path} lacks {len(lacking)} part(s), first {lacking[0]}")
        if missing:
            raise UploadConflict("upload incomplete: " + "; ".join(missing[:5]))
        for f in files:
            if f.assembled:
                continue
            if f.size == 0:
                self.store.put_bytes(f.key, b"")
            else:
                etags = [(n, p.etag) for n, p in sorted(by_file[f.index].items())]
                try:
                    self.store.complete_multipart(f.key, f.multipart_id, etags)
                except UploadGone:
                    # Joined just before a crash that lost our note of it: the object is
                    # there (its SHA-256 is checked below); otherwise the parts are lost.
                    if not self.store.exists(f.key):
                        reason = f"the stored parts of {f.path!r} are gone: upload it again"
                        self._set_status(upload_id, UploadStatus.FAILED, reason)
                        raise UploadConflict(reason) from None
            with self.catalogue.session() as session, session.begin():
                row = session.get(UploadFile, (upload_id, f.index))
                if row is not None:
                    row.assembled = True
        try:
            return self._verify_and_record(upload, files)
        except (TilesError, ExchangeError) as exc:
            # The bytes are bad or no slide: nothing of them stays, and the reason is kept.
            self._drop_objects(upload.slide_id)
            self._set_status(upload_id, UploadStatus.FAILED, getattr(exc, "message", str(exc)))
            raise

    def _verify_and_record(self, upload: Upload, files: Sequence[UploadFile]) -> Slide:
        """Checks every file's SHA-256 against storage and validates the slide, then records
        it: nothing is visible as a slide before both have passed.

        A single TIFF-family file (SVS, NDPI, generic tiled TIFF) is validated in place: the
        sandboxed parser reads the stored object by byte ranges while the hub streams it
        once through SHA-256, so nothing of its size touches the local disk. Slides that
        OpenSlide must open from local files (an MRXS folder, a DICOM series, any other
        format) are copied into a temporary folder of the work dir, hashed on the way; the
        copy is deleted whatever happens, and copies left by a killed hub are removed when
        the next one starts (see _remove_stale_copies)."""
        main = files[0]
        if len(files) == 1 and main.size >= 4 and self._maybe_tiff(main):
            inspection = self._inspect_in_place(main)
            if inspection is not None:
                return self._record(upload, files, inspection, _IN_PLACE_ROOT)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=_COPY_PREFIX, dir=self.work_dir) as tmp:
            root = Path(tmp).resolve() / "files"
            for f in files:
                local = root / f.path
                local.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with local.open("wb") as out:
                    for chunk in self.store.iter_chunks(f.key, _CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                # Even after the in-place pass checked the stored object: the copy is a
                # second read, and these are the bytes parsed and recorded.
                _check_digest(f, digest.hexdigest())
            target = root / files[0].path if len(files) == 1 else root
            return self._record(upload, files, inspect_in_sandbox(target), root)

    def _maybe_tiff(self, f: UploadFile) -> bool:
        return self.store.get_range(f.key, 0, 4) in TIFF_MAGICS

    def _inspect_in_place(self, f: UploadFile) -> Inspection | None:
        """The in-place inspection of a stored object whose SHA-256 is verified, or None
        when the file needs a local copy. The hash pass runs beside the sandboxed parse."""
        with ThreadPoolExecutor(1, thread_name_prefix="upload-sha256") as pool:
            hashing = pool.submit(self._check_stored_sha256, f)
            try:
                inspection = inspect_stored_in_sandbox(
                    functools.partial(self.store.get_range, f.key),
                    f.size,
                    _IN_PLACE_ROOT / f.path,
                    _IN_PLACE_ROOT,
                )
            except (TilesError, StorageError):
                # Bytes that are not the declared file say so first: a parse error of
                # damaged bytes would hide the cause.
                hashing.result()
                raise
            hashing.result()
        return inspection

    def _check_stored_sha256(self, f: UploadFile) -> None:
        """One streamed pass over the stored object, a chunk in memory at a time."""
        digest = hashlib.sha256()
        for chunk in self.store.iter_chunks(f.key, _CHUNK):
            digest.update(chunk)
        _check_digest(f, digest.hexdigest())

    def _record(
        self, upload: Upload, files: Sequence[UploadFile], inspection: Inspection, root: Path
    ) -> Slide:
        loc = self._location(upload.slide_id, files, inspection, root)
        # Like `iain ingest`: queued for its normalised pyramid, served from the original
        # until it is built.
        try:
            slide = self.catalogue.add_slide(
                upload.name, upload.centre, loc, inspection, convert=True
            )
        except IntegrityError:
            # Another hub process completed the same upload first: same slide id.
            recorded = self.catalogue.get(upload.slide_id)
            if recorded is None:
                raise
            slide = recorded
        self._set_status(upload.id, UploadStatus.COMPLETE)
        return slide

    def _location(
        self, slide_id: str, files: Sequence[UploadFile], inspection: Inspection, root: Path
    ) -> SlideLocation:
        """The slide's location, from objects already in place; uploaded files that are not
        part of the slide (a stray note beside a DICOM series) are deleted."""
        slide_files = inspection.files
        by_path = {f.path: f for f in files}
        used = [p.relative_to(root).as_posix() for p in slide_files.files]
        main_rel = slide_files.main.relative_to(root).as_posix()
        for f in files:
            if f.path not in used:
                self.store.delete(f.key)
        idx_key = None
        if inspection.index is not None:
            idx_key = index_key(slide_id)
            self.store.put_bytes(idx_key, inspection.index)
        main = by_path[main_rel]
        return SlideLocation(
            slide_id=slide_id,
            kind=slide_files.kind,
            main_key=main.key,
            main_size=main.size,
            keys=tuple(by_path[rel].key for rel in used),
            index_key=idx_key,
            content_hash=main.sha256,  # verified above
            l_sizes=inspection.properties.l_sizes,
        )


def _check_digest(f: UploadFile, digest: str) -> None:
    if digest != f.sha256:
        raise ChecksumMismatch(
            f"file {f.path!r}: its SHA-256 is {digest}, not the declared {f.sha256}: "
            "the upload is refused"
        )


def sha256_file(path: Path) -> str:
    """SHA-256 of a local file, in hex (what an upload declares per file)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
