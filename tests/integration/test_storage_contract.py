"""The ObjectStore contract, checked on every backend: a local directory and S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from storage import (
    InvalidKey,
    InvalidRange,
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    UploadGone,
)

MiB = 1024 * 1024
ODD_KEY = "slides/test3-DAPI-2-(387) été.ndpi"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    fixture = "local_store" if request.param == "local" else "s3_store"
    store: ObjectStore = request.getfixturevalue(fixture)
    return store


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


class UploadInterrupted(Exception):
    pass


class BrokenStream(io.BytesIO):
    """Gives its bytes, then fails instead of reporting the end: a dropped upload."""

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if not data:
            raise UploadInterrupted("client went away")
        return data


# --- put / get ------------------------------------------------------------------------------


def test_put_bytes_then_get(store: ObjectStore) -> None:
    data = payload(1000)
    info = store.put_bytes("slides/a.svs", data)
    assert (info.key, info.size) == ("slides/a.svs", 1000)
    assert store.get("slides/a.svs") == data


@pytest.mark.parametrize("known_size", [True, False], ids=["size", "size=-1"])
@pytest.mark.parametrize("length", [0, 1, 100_000])
def test_put_stream_then_get(store: ObjectStore, known_size: bool, length: int) -> None:
    data = payload(length)
    info = store.put("a/b.bin", io.BytesIO(data), length if known_size else -1)
    assert info.size == length
    assert store.get("a/b.bin") == data
    assert store.stat("a/b.bin").size == length


def test_stream_shorter_than_its_size_is_refused(store: ObjectStore) -> None:
    with pytest.raises(StorageError):
        store.put("short.bin", io.BytesIO(b"abc"), 10)
    assert not store.exists("short.bin")
    assert keys(store) == []


@pytest.mark.parametrize("known_size", [True, False], ids=["size", "size=-1"])
def test_large_object_streamed_from_a_file(
    store: ObjectStore, tmp_path: Path, known_size: bool
) -> None:
    # Larger than the 16 MiB part size: S3 uploads it in parts.
    size = 40 * MiB + 123
    src = tmp_path / "big.bin"
    src.write_bytes(payload(size, seed=1))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with src.open("rb") as stream:
        info = store.put("big/slide.tiff", stream, size if known_size else -1)
    assert info.size == size
    assert hashlib.sha256(store.get("big/slide.tiff")).hexdigest() == digest
    dest = tmp_path / "copy.bin"
    store.download("big/slide.tiff", str(dest))
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("length", "size"),
    # The stream fails after `length` bytes; the second after S3 has begun a multipart upload.
    [(1000, 2000), (17 * MiB, -1)],
    ids=["small", "multipart"],
)
def test_failed_put_keeps_the_previous_version(store: ObjectStore, length: int, size: int) -> None:
    store.put_bytes("slides/a.svs", b"previous")
    with pytest.raises(UploadInterrupted):
        store.put("slides/a.svs", BrokenStream(payload(length)), size)
    assert store.get("slides/a.svs") == b"previous"
    with pytest.raises(UploadInterrupted):
        store.put("slides/new.svs", BrokenStream(payload(length)), size)
    assert not store.exists("slides/new.svs")
    assert keys(store) == ["slides/a.svs"]


class WatchedStream(io.BytesIO):
    """Runs `check` whenever the store asks for more bytes: mid-upload."""

    def __init__(self, data: bytes, check: Callable[[], None]) -> None:
        super().__init__(data)
        self.check = check
        self.checks = 0

    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell() > 0:
            self.check()
            self.checks += 1
        return super().read(size)


def test_readers_see_the_previous_version_during_a_put(store: ObjectStore) -> None:
    store.put_bytes("slides/a.svs", b"previous")

    def check() -> None:
        assert store.get("slides/a.svs") == b"previous"
        assert keys(store) == ["slides/a.svs"]

    data = payload(17 * MiB)
    stream = WatchedStream(data, check)
    store.put("slides/a.svs", stream, -1)
    assert stream.checks >= 2
    assert store.get("slides/a.svs") == data


def test_overwrite_replaces_content_and_size(store: ObjectStore) -> None:
    store.put_bytes("k", b"first version, longer")
    info = store.put_bytes("k", b"second")
    assert store.get("k") == b"second"
    assert info.size == store.stat("k").size == 6
    assert keys(store) == ["k"]


def test_missing_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("present", b"x")  # the S3 bucket exists
    for read in (
        lambda: store.get("absent"),
        lambda: store.get_range("absent", 0, 1),
        lambda: store.get_range("absent", 0, 0),
        lambda: store.stat("absent"),
        lambda: store.download("absent", str(tmp_path / "out")),
    ):
        with pytest.raises(ObjectNotFound) as caught:
            read()
        assert caught.value.key == "absent"
    assert not store.exists("absent")
    assert not (tmp_path / "out").exists()


def test_empty_store(store: ObjectStore) -> None:
    # Before the first put the S3 bucket does not exist yet: reads still behave.
    assert keys(store) == []
    assert not store.exists("k")
    with pytest.raises(ObjectNotFound):
        store.get("k")
    store.delete("k")


# --- range reads ----------------------------------------------------------------------------

RANGE_DATA = payload(1000, seed=2)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 10), (0, 1000), (400, 200), (990, 10), (999, 1), (0, 0), (500, 0), (1000, 0)],
)
def test_range_read(store: ObjectStore, offset: int, length: int) -> None:
    store.put_bytes("r", RANGE_DATA)
    assert store.get_range("r", offset, length) == RANGE_DATA[offset : offset + length]


@pytest.mark.parametrize(
    ("offset", "length"), [(995, 10), (1000, 1), (5000, 10), (1001, 0), (-1, 10), (0, -1)]
)
def test_range_outside_the_object(store: ObjectStore, offset: int, length: int) -> None:
    store.put_bytes("r", RANGE_DATA)
    with pytest.raises(InvalidRange):
        store.get_range("r", offset, length)


def test_concurrent_range_reads(store: ObjectStore) -> None:
    data = payload(2 * MiB, seed=3)
    store.put_bytes("slides/pyramid.tiff", data)

    def read_tiles(seed: int) -> int:
        rng = random.Random(seed)
        for _ in range(25):
            offset = rng.randrange(len(data))
            length = rng.randint(1, min(64 * 1024, len(data) - offset))
            assert (
                store.get_range("slides/pyramid.tiff", offset, length)
                == data[offset : offset + length]
            )
        return seed

    with ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(read_tiles, range(16))) == list(range(16))


# --- stat, exists, list ---------------------------------------------------------------------


def test_stat(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    put = store.put_bytes("slides/a.svs", b"0123456789")
    info = store.stat("slides/a.svs")
    assert (info.key, info.size) == ("slides/a.svs", 10)
    assert info.etag and info.etag == put.etag
    assert before < info.modified < datetime.now(UTC) + timedelta(minutes=5)


def test_etag_changes_when_the_object_changes(store: ObjectStore) -> None:
    first = store.put_bytes("k", b"version one").etag
    assert store.stat("k").etag == first  # stable while unchanged
    second = store.put_bytes("k", b"version two").etag
    assert second != first
    assert store.stat("k").etag == second


def test_exists(store: ObjectStore) -> None:
    store.put_bytes("slides/a/pyramid.tiff", b"x")
    assert store.exists("slides/a/pyramid.tiff")
    assert not store.exists("slides/a")  # a folder is not an object
    assert not store.exists("slides/a/pyramid")


LISTED = [
    "slides/b.svs",
    "slides/a/pyramid.tiff",
    "results/x.json",
    "slides/a.svs",
    "slides/a-2.svs",
    "slides/c/d/e.bin",
    "slides0",
]


def test_list_is_in_key_order(store: ObjectStore) -> None:
    for i, key in enumerate(LISTED):
        store.put_bytes(key, payload(i + 1))
    infos = list(store.list())
    # '-' < '.' < '/' < '0': folders do not come first.
    assert [i.key for i in infos] == sorted(LISTED)
    assert [i.size for i in infos] == [LISTED.index(i.key) + 1 for i in infos]
    assert all(i.etag == store.stat(i.key).etag for i in infos)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("slides/", ["slides/a-2.svs", "slides/a.svs", "slides/a/pyramid.tiff", "slides/b.svs",
                     "slides/c/d/e.bin"]),
        ("slides/a", ["slides/a-2.svs", "slides/a.svs", "slides/a/pyramid.tiff"]),
        ("slides/a/", ["slides/a/pyramid.tiff"]),
        ("slides/c/d/", ["slides/c/d/e.bin"]),
        ("slides", [*sorted(k for k in LISTED if k.startswith("slides"))]),
        ("results/x.json", ["results/x.json"]),
        ("nothing/", []),
        ("slides/z", []),
    ],
)  # fmt: skip
def test_list_by_prefix(store: ObjectStore, prefix: str, expected: list[str]) -> None:
    for key in LISTED:
        store.put_bytes(key, b"x")
    assert keys(store, prefix) == expected


# --- delete ---------------------------------------------------------------------------------


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("slides/a/pyramid.tiff", b"x")
    store.put_bytes("slides/a/label.jpg", b"y")
    store.delete("slides/a/pyramid.tiff")
    with pytest.raises(ObjectNotFound):
        store.get("slides/a/pyramid.tiff")
    assert not store.exists("slides/a/pyramid.tiff")
    assert keys(store) == ["slides/a/label.jpg"]
    store.delete("slides/a/pyramid.tiff")  # again: not an error


def test_delete_what_is_not_an_object(store: ObjectStore) -> None:
    store.put_bytes("slides/a/pyramid.tiff", b"x")
    store.delete("never-stored")
    store.delete("slides/a")  # a folder
    store.delete("slides/a/pyramid.tiff/more")  # below an object
    assert keys(store) == ["slides/a/pyramid.tiff"]


def test_a_deleted_folder_can_become_an_object(store: ObjectStore) -> None:
    store.put_bytes("x/y", b"1")
    store.delete("x/y")
    store.put_bytes("x", b"2")
    assert store.get("x") == b"2"
    assert keys(store) == ["x"]


# --- keys -----------------------------------------------------------------------------------

BAD_KEYS = ["", "/abs", "a/../b", "..", "../up", "a/./b", "a//b", "trailing/", "a\\b", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(store: ObjectStore, key: str, tmp_path: Path) -> None:
    operations: list[Callable[[], Any]] = [
        lambda: store.put(key, io.BytesIO(b"x"), 1),
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get(key),
        lambda: store.get_range(key, 0, 1),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.download(key, str(tmp_path / "out")),
        lambda: store.presign_get(key),
    ]
    for operation in operations:
        with pytest.raises(InvalidKey) as caught:
            operation()
        assert caught.value.key == key
    assert keys(store) == []


@pytest.mark.parametrize(
    "key", [ODD_KEY, "a b/c d.txt", "plus+percent%20amp&eq=q?hash#.bin", "日本/スライド.svs"]
)
def test_keys_with_spaces_punctuation_and_non_ascii(
    store: ObjectStore, key: str, tmp_path: Path
) -> None:
    data = payload(300)
    assert store.put_bytes(key, data).key == key
    assert store.get(key) == data
    assert store.get_range(key, 100, 50) == data[100:150]
    assert store.stat(key).size == 300
    assert store.exists(key)
    assert keys(store) == [key]
    assert keys(store, key[:5]) == [key]
    store.download(key, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data
    assert fetch(store, store.presign_get(key)) == (200, data)
    store.delete(key)
    assert keys(store) == []


# --- presigned URLs -------------------------------------------------------------------------


def fetch(store: ObjectStore, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GETs a presigned URL: from the S3 server, or the way the hub's /api/storage/ route
    serves a local store (check the signature, then read)."""
    if url.startswith("http"):
        response = httpx.get(url, headers=headers, timeout=10)
        return response.status_code, response.content
    assert isinstance(store, LocalStore)
    parts = urlsplit(url)
    assert parts.path.startswith("/api/storage/")
    key = unquote(parts.path.removeprefix("/api/storage/"))
    query = dict(parse_qsl(parts.query))
    if not store.verify_presigned(key, int(query["expires"]), query["signature"]):
        return 403, b""
    return 200, store.get(key)


def tamper(url: str, name: str, change: Callable[[str], str]) -> str:
    parts = urlsplit(url)
    query = [(k, change(v) if k.lower().endswith(name) else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def flip_last_hex_digit(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def test_presigned_url(store: ObjectStore) -> None:
    data = payload(5000)
    store.put_bytes("slides/a.svs", data)
    store.put_bytes("slides/b.svs", b"other")
    started = time.time()
    short_lived = store.presign_get("slides/a.svs", expires_s=1)
    url = store.presign_get("slides/a.svs")
    assert fetch(store, url) == (200, data)
    assert fetch(store, tamper(url, "signature", flip_last_hex_digit))[0] == 403
    assert fetch(store, url.replace("slides/a.svs", "slides/b.svs"))[0] == 403
    assert fetch(store, tamper(url, "expires", lambda v: str(int(v) + 10)))[0] == 403
    time.sleep(max(0.0, started + 2.2 - time.time()))
    assert fetch(store, short_lived)[0] == 403


def test_presigned_url_serves_ranges(s3_store: ObjectStore) -> None:
    # A viewer reading a slide through a presigned URL asks for byte ranges.
    data = payload(5000)
    s3_store.put_bytes("slides/a.svs", data)
    url = s3_store.presign_get("slides/a.svs")
    status, body = fetch(s3_store, url, headers={"Range": "bytes=1000-1999"})
    assert (status, body) == (206, data[1000:2000])


# --- download -------------------------------------------------------------------------------


def test_download_replaces_the_file(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("slides/a.svs", b"new content")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    dest = downloads / "a.svs"
    dest.write_bytes(b"an older, longer local copy")
    store.download("slides/a.svs", str(dest))
    assert dest.read_bytes() == b"new content"
    assert os.listdir(downloads) == ["a.svs"]  # no temporary file left behind


# --- streamed reads -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 3 * MiB + 17])
def test_iter_chunks_gives_the_whole_object_in_bounded_chunks(
    store: ObjectStore, length: int
) -> None:
    data = payload(length, seed=5)
    store.put_bytes("slides/big.svs", data)
    chunks = list(store.iter_chunks("slides/big.svs", chunk_size=MiB))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= MiB for chunk in chunks)


def test_iter_chunks_of_a_missing_object(store: ObjectStore) -> None:
    store.put_bytes("present", b"x")  # the S3 bucket exists
    with pytest.raises(ObjectNotFound) as caught:
        list(store.iter_chunks("absent"))
    assert caught.value.key == "absent"
    with pytest.raises(InvalidKey):
        list(store.iter_chunks("../escape"))


# --- multipart uploads ----------------------------------------------------------------------


def test_multipart_parts_in_any_order_become_one_object_on_completion(store: ObjectStore) -> None:
    first, second, last = (
        payload(store.min_part_size, 1),
        payload(store.min_part_size, 2),
        payload(1000, 3),
    )
    upload = store.create_multipart("slides/big.svs")
    etags = {3: store.upload_part("slides/big.svs", upload, 3, last)}
    etags[1] = store.upload_part("slides/big.svs", upload, 1, payload(store.min_part_size, 9))
    etags[2] = store.upload_part("slides/big.svs", upload, 2, second)
    # A part sent again (a retry after a dropped connection) replaces the earlier one.
    etags[1] = store.upload_part("slides/big.svs", upload, 1, first)
    assert not store.exists("slides/big.svs")
    assert keys(store) == []
    info = store.complete_multipart("slides/big.svs", upload, list(etags.items()))
    assert info.size == 2 * store.min_part_size + 1000
    assert store.get("slides/big.svs") == first + second + last
    assert keys(store) == ["slides/big.svs"]


def test_aborted_multipart_leaves_nothing(store: ObjectStore) -> None:
    upload = store.create_multipart("slides/gone.svs")
    store.upload_part("slides/gone.svs", upload, 1, b"some bytes")
    store.abort_multipart("slides/gone.svs", upload)
    store.abort_multipart("slides/gone.svs", upload)  # twice is fine
    assert keys(store) == []
    with pytest.raises(UploadGone):
        store.upload_part("slides/gone.svs", upload, 2, b"more bytes")


def test_completing_with_a_wrong_etag_is_refused(store: ObjectStore) -> None:
    upload = store.create_multipart("slides/x.svs")
    etag = store.upload_part("slides/x.svs", upload, 1, b"content")
    with pytest.raises(StorageError):
        store.complete_multipart("slides/x.svs", upload, [(1, "0" * len(etag))])
    assert not store.exists("slides/x.svs")
