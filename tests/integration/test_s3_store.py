"""What only the S3 backend promises: its bucket, its request count, its errors."""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from storage import ObjectNotFound, S3Store, StorageError, open_store
from tests.s3server import SeaweedS3

MiB = 1024 * 1024


def make_store(server: SeaweedS3, bucket: str, **options: Any) -> S3Store:
    return S3Store(
        server.endpoint,
        bucket,
        access_key=options.pop("access_key", server.access_key),
        secret_key=options.pop("secret_key", server.secret_key),
        secure=False,
        **options,
    )


@pytest.fixture
def bucket(s3_server: SeaweedS3) -> Iterator[str]:
    name = "test-" + uuid.uuid4().hex[:12]
    yield name
    s3_server.remove_bucket(name)


def test_the_bucket_is_created_by_the_first_put(s3_server: SeaweedS3, bucket: str) -> None:
    store = make_store(s3_server, bucket)
    # Reading an empty store creates nothing.
    assert list(store.list()) == []
    assert not store.exists("k")
    with pytest.raises(ObjectNotFound):
        store.get("k")
    assert not s3_server.client().bucket_exists(bucket)
    store.put_bytes("k", b"x")
    assert s3_server.client().bucket_exists(bucket)
    # A second store (another process, say) finds the bucket there and shares it.
    other = make_store(s3_server, bucket)
    other.put_bytes("j", b"y")
    assert [info.key for info in store.list()] == ["j", "k"]


@pytest.fixture
def http_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP request sent through urllib3, as 'METHOD path'."""
    sent: list[str] = []
    urlopen = urllib3.PoolManager.urlopen

    def counting(self: urllib3.PoolManager, method: str, url: str, **kw: Any) -> Any:
        sent.append(f"{method} {url}")
        return urlopen(self, method, url, **kw)

    monkeypatch.setattr(urllib3.PoolManager, "urlopen", counting)
    return sent


def test_a_range_read_is_one_get(s3_store: S3Store, http_requests: list[str]) -> None:
    data = bytes(range(256)) * 64
    s3_store.put_bytes("slides/a.tiff", data)
    before = s3_store.requests.copy()
    http_requests.clear()
    assert s3_store.get_range("slides/a.tiff", 1000, 256) == data[1000:1256]
    assert s3_store.requests - before == {"GET": 1}
    assert len(http_requests) == 1 and http_requests[0].startswith("GET ")


def test_request_counter_by_kind(s3_store: S3Store) -> None:
    s3_store.put_bytes("a", b"x" * 10)  # a PUT, then a HEAD for the object's info
    assert s3_store.requests == {"PUT": 1, "HEAD": 1}
    s3_store.get("a")
    s3_store.get_range("a", 0, 0)  # an empty range needs only the size
    list(s3_store.list())
    s3_store.delete("a")
    assert s3_store.requests == {"PUT": 1, "HEAD": 2, "GET": 1, "LIST": 1, "DELETE": 1}


def test_a_large_upload_goes_in_parts(s3_store: S3Store) -> None:
    data = bytes(17 * MiB)
    info = s3_store.put("slides/big.tiff", io.BytesIO(data), len(data))
    # S3 gives a multipart object the etag "<md5 of the parts' md5s>-<number of parts>".
    assert info.etag.endswith("-2")
    assert s3_store.get_range("slides/big.tiff", 17 * MiB - 4, 4) == bytes(4)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


def test_an_unreachable_server_is_a_storage_error(tmp_path: Path) -> None:
    port = closed_port()
    store = S3Store(
        f"127.0.0.1:{port}", "slides", access_key="a", secret_key="b", secure=False, retries=1
    )
    operations: list[Callable[[], Any]] = [
        lambda: store.put_bytes("k", b"x"),
        lambda: store.get("k"),
        lambda: store.get_range("k", 0, 10),
        lambda: store.stat("k"),
        lambda: store.exists("k"),
        lambda: list(store.list()),
        lambda: store.delete("k"),
        lambda: store.download("k", str(tmp_path / "k")),
        lambda: store.presign_get("k"),
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            operation()
        assert time.monotonic() - started < 2.0
        assert not isinstance(caught.value, ObjectNotFound)
        assert str(port) in str(caught.value)  # says which server


def test_wrong_credentials_are_a_storage_error(s3_server: SeaweedS3, bucket: str) -> None:
    make_store(s3_server, bucket).put_bytes("k", b"x")
    store = make_store(s3_server, bucket, secret_key="not-the-secret", retries=0)
    for operation in (
        lambda: store.get("k"),
        lambda: store.put_bytes("j", b"y"),
        lambda: list(store.list()),
    ):
        with pytest.raises(StorageError) as caught:
            operation()
        assert not isinstance(caught.value, ObjectNotFound)
        assert "Signature" in str(caught.value) or "AccessDenied" in str(caught.value)


def test_open_store_with_an_s3_url(s3_server: SeaweedS3, bucket: str) -> None:
    store = open_store(
        f"s3://{s3_server.endpoint}/{bucket}",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    store.put_bytes("slides/a.svs", b"through the URL")
    assert make_store(s3_server, bucket).get("slides/a.svs") == b"through the URL"
