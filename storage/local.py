"""Local-directory backend: the embedded default."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from storage.base import (
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    UploadGone,
    check_key,
)

_TMP_PREFIX = ".tmp-"
_COPY_CHUNK = 1024 * 1024
# Parts of multipart uploads: one folder per upload; the .tmp- names keep them out of list().
_MULTIPART_DIR = ".tmp-multipart"


class LocalStore:
    """Objects are files under `root`; writes go to a temporary file renamed into place,
    so a crash mid-write never leaves a half object visible."""

    # Parts are files joined on completion: any size works.
    min_part_size = 1

    def __init__(self, root: str | Path, *, url_base: str = "", signing_key: bytes = b"") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Presigned URLs point at the hub's /api/storage route, signed with signing_key.
        self.url_base = url_base.rstrip("/")
        self._signing_key = signing_key

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        # The etag changes when the file is replaced; cheap, and strong enough for a local store.
        etag = hashlib.sha1(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        return ObjectInfo(key, st.st_size, etag, datetime.fromtimestamp(st.st_mtime, UTC))

    def put(self, key: str, stream: BinaryIO, size: int = -1) -> ObjectInfo:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self._clash(key) from None
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                remaining = size
                while remaining != 0:
                    chunk = stream.read(
                        _COPY_CHUNK if remaining < 0 else min(_COPY_CHUNK, remaining)
                    )
                    if not chunk:
                        break
                    out.write(chunk)
                    if remaining > 0:
                        remaining -= len(chunk)
                if remaining > 0:
                    raise StorageError(f"stream ended {remaining} bytes early", key)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.replace(tmp, path)
            except IsADirectoryError:
                raise self._clash(key) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(key, path)

    def _clash(self, key: str) -> StorageError:
        # S3 can hold objects "a" and "a/b" side by side; a directory tree cannot.
        return StorageError(
            f"cannot store {key!r}: it clashes with an object or folder of the same name", key
        )

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        import io

        return self.put(key, io.BytesIO(data), len(data))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}", key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidRange(f"bad range {offset}+{length}", key)
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}", key) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a folder opens fine but is no object
                raise ObjectNotFound(f"no object {key!r}", key)
            if offset + length > st.st_size:
                raise InvalidRange(f"range {offset}+{length} is past the end", key)
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def iter_chunks(self, key: str, chunk_size: int = _COPY_CHUNK) -> Iterator[bytes]:
        if chunk_size < 1:
            raise StorageError(f"chunk size must be positive, not {chunk_size}", key)
        path = self._path(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}", key) from None
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def download(self, key: str, path: str) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(f"no object {key!r}", key)
        dest = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}", key)
        return self._info(key, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        keys: list[tuple[str, Path]] = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append((key, path))
        for key, path in sorted(keys):
            try:
                yield self._info(key, path)
            except FileNotFoundError:
                continue  # deleted while listing

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            return  # a folder, or a path below an object: no object has this key
        # Drop now-empty parent folders so listings stay clean.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        check_key(key)
        expires = int(time.time()) + expires_s
        query = urlencode({"expires": expires, "signature": self.signature(key, expires)})
        return f"{self.url_base}/api/storage/{quote(key)}?{query}"

    def signature(self, key: str, expires: int) -> str:
        if not self._signing_key:
            raise StorageError("this local store has no signing key; it cannot presign URLs", key)
        msg = f"{key}\n{expires}".encode()
        return hmac.new(self._signing_key, msg, hashlib.sha256).hexdigest()

    def verify_presigned(self, key: str, expires: int, signature: str) -> bool:
        if expires < time.time() or not self._signing_key:
            return False
        return hmac.compare_digest(self.signature(key, expires), signature)

    # --- Multipart uploads: parts are files in a folder of their own, joined on completion.

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        check_key(key)
        folder = self.root / _MULTIPART_DIR / upload_id
        if not upload_id.isalnum() or not (folder / f"{_TMP_PREFIX}key").is_file():
            raise UploadGone(f"no multipart upload {upload_id!r} to {key!r}", key)
        if (folder / f"{_TMP_PREFIX}key").read_text() != key:
            raise UploadGone(f"multipart upload {upload_id!r} is not for {key!r}", key)
        return folder

    def create_multipart(self, key: str) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        folder = self.root / _MULTIPART_DIR / upload_id
        folder.mkdir(parents=True)
        (folder / f"{_TMP_PREFIX}key").write_text(key)
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        folder = self._upload_dir(key, upload_id)
        if not 1 <= number <= 10_000:
            raise StorageError(f"part number {number} is outside 1..10000", key)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, folder / f"{_TMP_PREFIX}part-{number:05d}")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        folder = self._upload_dir(key, upload_id)
        if not parts:
            raise StorageError("a multipart upload needs at least one part", key)
        paths: list[Path] = []
        for number, etag in sorted(parts):
            path = folder / f"{_TMP_PREFIX}part-{number:05d}"
            if not path.is_file():
                raise StorageError(f"part {number} of {key!r} was never uploaded", key)
            if _md5_of(path) != etag:
                raise StorageError(f"part {number} of {key!r} does not match its etag", key)
            paths.append(path)
        info = self.put(key, _Joined(paths))  # type: ignore[arg-type]
        shutil.rmtree(folder, ignore_errors=True)
        return info

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            folder = self._upload_dir(key, upload_id)
        except UploadGone:
            return
        shutil.rmtree(folder, ignore_errors=True)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Joined:
    """Reads a list of files as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._current: BinaryIO | None = None

    def read(self, n: int = -1) -> bytes:
        while True:
            if self._current is None:
                if not self._paths:
                    return b""
                self._current = self._paths.pop(0).open("rb")
            data = self._current.read(n)
            if data:
                return data
            self._current.close()
            self._current = None
