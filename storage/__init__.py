"""Object storage: one protocol, a local-directory backend and an S3 backend."""

from storage.base import (
    InvalidKey,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    UploadGone,
)
from storage.local import LocalStore
from storage.s3 import S3Store
from storage.url import open_store

__all__ = [
    "InvalidKey",
    "InvalidRange",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "UploadGone",
    "open_store",
]
