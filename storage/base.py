"""The object-storage contract shared by every backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, ClassVar, Protocol, runtime_checkable

# Objects larger than this are uploaded in parts by backends that support it.
DEFAULT_PART_SIZE = 16 * 1024 * 1024
# S3's smallest part (every part but the last) of a multipart upload; SeaweedFS enforces it too.
S3_MIN_PART_SIZE = 5 * 1024 * 1024


class StorageError(Exception):
    """Base class of every error raised by a storage backend (an HTTP answer of 503 unless a
    subclass says otherwise: storage down is worth a retry)."""

    http_status: ClassVar[int] = 503

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ObjectNotFound(StorageError):
    """The key names no object."""

    http_status = 404


class InvalidKey(StorageError):
    """The key is malformed (empty, absolute, or escapes the store)."""

    http_status = 400


class InvalidRange(StorageError):
    """A range read asked for bytes outside the object."""


class UploadGone(StorageError):
    """A multipart upload that is unknown, completed or aborted."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime


@runtime_checkable
class ObjectStore(Protocol):
    """Where slides, pyramids and results live. Keys are '/'-separated relative paths."""

    def put(self, key: str, stream: BinaryIO, size: int = -1) -> ObjectInfo:
        """Stores a stream (read to its end when size is -1); the object appears whole or not
        at all."""
        ...

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Reads `length` bytes at `offset`; a range past the end is an InvalidRange."""
        ...

    def download(self, key: str, path: str) -> None:
        """Streams an object to a local file (written atomically)."""
        ...

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The whole object, in order, in chunks of at most `chunk_size` bytes, one in memory
        at a time: one pass over a large object without a local copy."""
        ...

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""
        ...

    def delete(self, key: str) -> None:
        """Removes an object; deleting a missing key is not an error."""
        ...

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        """A URL that lets its holder GET the object until it expires."""
        ...

    # Multipart uploads: parts arrive one by one (in any order, each replaceable) and become
    # one object only on completion; until then nothing is visible under the key.
    min_part_size: int  # every part but the last must be at least this big

    def create_multipart(self, key: str) -> str:
        """Starts a multipart upload to `key`; returns its upload id."""
        ...

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Stores part `number` (1-based); returns its etag, needed to complete."""
        ...

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        """Joins the parts (number, etag), in number order, into the object at `key`."""
        ...

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drops an upload and its parts; an unknown upload is not an error."""
        ...


def check_key(key: str) -> str:
    """Rejects keys that could escape a store or alias another key."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"invalid object key {key!r}", key)
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid object key {key!r}", key)
    return key
