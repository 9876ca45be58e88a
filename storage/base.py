"""The object-storage contract shared by every backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

# Objects larger than this are uploaded in parts by backends that support it.
DEFAULT_PART_SIZE = 16 * 1024 * 1024


class StorageError(Exception):
    """Base class of every error raised by a storage backend."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ObjectNotFound(StorageError):
    """The key names no object."""


class InvalidKey(StorageError):
    """The key is malformed (empty, absolute, or escapes the store)."""


class InvalidRange(StorageError):
    """A range read asked for bytes outside the object."""


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


def check_key(key: str) -> str:
    """Rejects keys that could escape a store or alias another key."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"invalid object key {key!r}", key)
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid object key {key!r}", key)
    return key
