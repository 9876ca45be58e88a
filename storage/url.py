"""Builds a store from a storage URL: a directory path, or s3://HOST:PORT/BUCKET."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from storage.base import ObjectStore, StorageError
from storage.local import LocalStore
from storage.s3 import S3Store


def open_store(
    url: str,
    *,
    access_key: str = "",
    secret_key: str = "",
    secure: bool = True,
    region: str | None = None,
    signing_key: bytes = b"",
) -> ObjectStore:
    if url.startswith("s3://"):
        parts = urlsplit(url)
        bucket = parts.path.strip("/")
        if not parts.netloc or not bucket or "/" in bucket:
            raise StorageError(f"storage URL {url!r} must look like s3://HOST:PORT/BUCKET")
        if not access_key or not secret_key:
            raise StorageError("an S3 storage URL needs IAIN_S3_ACCESS_KEY and IAIN_S3_SECRET_KEY")
        return S3Store(
            parts.netloc,
            bucket,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )
    if "://" in url and not url.startswith("file://"):
        raise StorageError(f"unsupported storage URL {url!r} (use a directory or s3://)")
    return LocalStore(Path(url.removeprefix("file://")), signing_key=signing_key)
