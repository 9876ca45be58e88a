"""S3 backend through the MinIO client (MinIO in production, SeaweedFS in tests)."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error
from minio.helpers import check_bucket_name
from urllib3.exceptions import HTTPError as Urllib3Error

from storage.base import (
    DEFAULT_PART_SIZE,
    S3_MIN_PART_SIZE,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    UploadGone,
    check_key,
)

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_NO_UPLOAD = {"NoSuchUpload"}


class S3Store:
    """A bucket on an S3-compatible server. Connections are pooled (one urllib3 pool shared
    by all threads) and transient failures are retried with exponential backoff."""

    min_part_size = S3_MIN_PART_SIZE

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
        # Bytes received by reads (GETs): lets tests check what a pass over an object costs.
        self.bytes_read = 0

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
            data: bytes = response.read()
        finally:
            response.close()
            response.release_conn()
        with self._lock:
            self.bytes_read += len(data)
        return data

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

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        if chunk_size < 1:
            raise StorageError(f"chunk size must be positive, not {chunk_size}", key)
        check_key(key)
        self._count("GET")
        try:
            response = self._client.get_object(self.bucket, key)
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"read of {key!r} failed: {exc}", key) from exc
        try:
            for chunk in response.stream(chunk_size):
                with self._lock:
                    self.bytes_read += len(chunk)
                yield chunk
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"read of {key!r} failed: {exc}", key) from exc
        finally:
            response.close()
            response.release_conn()

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

    # --- Multipart uploads, with the S3 calls themselves: the server keeps the parts, and
    # the object appears only when CompleteMultipartUpload succeeds.

    def _multipart_error(self, exc: S3Error, key: str, upload_id: str) -> StorageError:
        if exc.code in _NO_UPLOAD:
            return UploadGone(f"no multipart upload {upload_id!r} to {key!r}", key)
        return self._error(exc, key)

    def create_multipart(self, key: str) -> str:
        check_key(key)
        self._ensure_bucket()
        self._count("POST")
        try:
            return self._client._create_multipart_upload(self.bucket, key, {})
        except S3Error as exc:
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"starting an upload to {key!r} failed: {exc}", key) from exc

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        check_key(key)
        if not 1 <= number <= 10_000:
            raise StorageError(f"part number {number} is outside 1..10000", key)
        self._count("PUT")
        try:
            return self._client._upload_part(self.bucket, key, data, None, upload_id, number)
        except S3Error as exc:
            raise self._multipart_error(exc, key, upload_id) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"upload of part {number} of {key!r} failed: {exc}", key) from exc

    def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        check_key(key)
        if not parts:
            raise StorageError("a multipart upload needs at least one part", key)
        self._count("POST")
        try:
            self._client._complete_multipart_upload(
                self.bucket, key, upload_id, [Part(n, etag) for n, etag in sorted(parts)]
            )
        except S3Error as exc:
            raise self._multipart_error(exc, key, upload_id) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"completing the upload of {key!r} failed: {exc}", key) from exc
        return self.stat(key)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        check_key(key)
        self._count("DELETE")
        try:
            self._client._abort_multipart_upload(self.bucket, key, upload_id)
        except S3Error as exc:
            if exc.code in _NO_UPLOAD or exc.code in _NOT_FOUND:
                return
            raise self._error(exc, key) from exc
        except (Urllib3Error, OSError) as exc:
            raise StorageError(f"aborting the upload of {key!r} failed: {exc}", key) from exc
