"""S3 backend through the MinIO client (MinIO in production, SeaweedFS in tests)."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.helpers import check_bucket_name
from urllib3.exceptions import HTTPError as Urllib3Error

from storage.base import (
    DEFAULT_PART_SIZE,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
)

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}


class S3Store:
    """A bucket on an S3-compatible server. Connections are pooled (one urllib3 pool shared
    by all threads) and transient failures are retried with exponential backoff."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str,
        secret_key: str,
        secure: bool = True,
        region: str | None = None,
        max_connections: int = 64,
        retries: int = 4,
    ) -> None:
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            raise StorageError(f"invalid S3 bucket name {bucket!r}: {exc}") from None
        self.bucket = bucket
        self.endpoint = endpoint
        http = urllib3.PoolManager(
            maxsize=max_connections,
            block=False,
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,  # S3 requests are signed and idempotent per key
                raise_on_status=False,
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self._bucket_ready = False
        self._lock = threading.Lock()
        # Requests sent, by kind: lets tests and benchmarks count GETs per tile.
        self.requests: Counter[str] = Counter()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._lock:
            if self._bucket_ready:
                return
            try:
                if not self._client.bucket_exists(self.bucket):
                    self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise self._error(exc, "") from exc
            except (Urllib3Error, OSError) as exc:
                raise StorageError(f"S3 server {self.endpoint} unreachable: {exc}") from exc
            self._bucket_ready = True

    def _error(self, exc: S3Error, key: str) -> StorageError:
        if exc.code in _NOT_FOUND:
            return ObjectNotFound(f"no object {key!r}", key)
        if exc.code == "InvalidRange":
            return InvalidRange(f"range outside object {key!r}", key)
        return StorageError(f"S3 error on {key!r}: {exc.code}: {exc.message}", key)

    def put(self, key: str, stream: BinaryIO, size: int = -1) -> ObjectInfo:
        check_key(key)
        self._ensure_bucket()
        self._count("PUT")
        try:
            # The client switches to a multipart upload above part_size on its own.
            self._client.put_object(
                self.bucket, key, stream, length=size, part_size=DEFAULT_PART_SIZE
            )
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"upload of {key!r} failed: {exc}", key) from exc
        return self.stat(key)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self.put(key, io.BytesIO(data), len(data))

    def _read(self, key: str, offset: int = 0, length: int = 0) -> bytes:
        check_key(key)
        self._count("GET")
        try:
            response = self._client.get_object(self.bucket, key, offset=offset, length=length)
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"read of {key!r} failed: {exc}", key) from exc
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def get(self, key: str) -> bytes:
        return self._read(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise InvalidRange(f"bad range {offset}+{length}", key)
        if length == 0:
            if offset > self.stat(key).size:
                raise InvalidRange(f"range {offset}+0 is past the end of {key!r}", key)
            return b""
        data = self._read(key, offset, length)
        if len(data) != length:
            raise InvalidRange(f"range {offset}+{length} is past the end of {key!r}", key)
        return data

    def download(self, key: str, path: str) -> None:
        check_key(key)
        self._count("GET")
        try:
            # fget_object writes a .part file and renames it: atomic.
            self._client.fget_object(self.bucket, key, path)
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"download of {key!r} failed: {exc}", key) from exc

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        self._count("HEAD")
        try:
            st = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"stat of {key!r} failed: {exc}", key) from exc
        return ObjectInfo(
            key, st.size or 0, (st.etag or "").strip('"'), st.last_modified or datetime.now(UTC)
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._count("LIST")
        found: list[ObjectInfo] = []
        try:
            for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                found.append(
                    ObjectInfo(
                        obj.object_name,
                        obj.size or 0,
                        (obj.etag or "").strip('"'),
                        obj.last_modified or datetime.now(UTC),
                    )
                )
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return
            raise self._error(exc, prefix) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"listing {prefix!r} failed: {exc}", prefix) from exc
        # S3 promises key order, but SeaweedFS lists a folder's objects before the keys that
        # sort between the folder's name and its "/" ("a/b" before "a-b"): sort them here.
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        check_key(key)
        self._count("DELETE")
        try:
            self._client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"delete of {key!r} failed: {exc}", key) from exc

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        check_key(key)
        try:
            # Needs the bucket's region: one request to the server, then cached.
            return self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_s)
            )
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"presigning {key!r} failed: {exc}", key) from exc
