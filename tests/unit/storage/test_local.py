"""What only the local-directory backend promises: atomic files, and a root nothing escapes."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from storage import InvalidKey, LocalStore, ObjectNotFound, StorageError


def files_under(root: Path) -> list[str]:
    """Every file below `root`, hidden ones included, as sorted relative paths."""
    return sorted(
        (Path(dirpath) / name).relative_to(root).as_posix()
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    )


class Interrupted(Exception):
    pass


class FailingStream(io.BytesIO):
    """Gives its bytes, then fails instead of reporting the end: a client that drops."""

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if not data:
            raise Interrupted("connection reset")
        return data


def test_interrupted_put_leaves_no_trace(local_store: LocalStore) -> None:
    local_store.put_bytes("slides/a.svs", b"previous")
    big = b"x" * (3 * 1024 * 1024)  # several copy chunks are written before the failure
    for key in ("slides/a.svs", "slides/new.svs", "fresh/folder/b.svs"):
        with pytest.raises(Interrupted):
            local_store.put(key, FailingStream(big), -1)
    assert local_store.get("slides/a.svs") == b"previous"
    assert files_under(local_store.root) == ["slides/a.svs"]


def test_a_stream_ending_early_leaves_no_trace(local_store: LocalStore) -> None:
    with pytest.raises(StorageError, match="3 bytes early"):
        local_store.put("slides/a.svs", io.BytesIO(b"1234567"), 10)
    assert files_under(local_store.root) == []


def test_put_reads_no_more_than_size(local_store: LocalStore) -> None:
    stream = io.BytesIO(b"header|rest of the request body")
    assert local_store.put("h", stream, 6).size == 6
    assert local_store.get("h") == b"header"
    assert stream.read() == b"|rest of the request body"


def test_temporary_files_of_a_crashed_writer_are_not_listed(local_store: LocalStore) -> None:
    local_store.put_bytes("slides/a.svs", b"x")
    # What a process killed mid-put leaves next to the object.
    (local_store.root / "slides" / ".tmp-k2j4h5").write_bytes(b"half an object")
    assert [info.key for info in local_store.list()] == ["slides/a.svs"]
    assert [info.key for info in local_store.list("slides/.tmp")] == []


def test_download_is_atomic(
    local_store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put_bytes("slides/a.svs", b"new version " * 1000)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    dest = downloads / "a.svs"
    dest.write_bytes(b"the copy we had")

    def copy_half_then_fail(src: str, dst: str) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        local_store.download("slides/a.svs", str(dest))
    assert dest.read_bytes() == b"the copy we had"
    assert os.listdir(downloads) == ["a.svs"]

    monkeypatch.undo()
    local_store.download("slides/a.svs", str(dest))
    assert dest.read_bytes() == b"new version " * 1000
    assert os.listdir(downloads) == ["a.svs"]


ESCAPING_KEYS = ["../outside", "a/../../outside", "/tmp/outside", "..\\outside", "./outside"]


@pytest.mark.parametrize("key", ESCAPING_KEYS)
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "a" / "store")
    (tmp_path / "a" / "outside").write_bytes(b"secret")
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"overwritten")
    with pytest.raises(InvalidKey):
        store.get(key)
    with pytest.raises(InvalidKey):
        store.delete(key)
    assert (tmp_path / "a" / "outside").read_bytes() == b"secret"
    assert files_under(tmp_path) == ["a/outside"]


def test_an_object_and_a_folder_cannot_share_a_name(local_store: LocalStore) -> None:
    # S3 allows "a" and "a/b" side by side; a directory tree cannot, and says so.
    local_store.put_bytes("slides/a", b"object")
    with pytest.raises(StorageError, match="clashes"):
        local_store.put_bytes("slides/a/pyramid.tiff", b"x")
    local_store.put_bytes("slides/b/pyramid.tiff", b"y")
    with pytest.raises(StorageError, match="clashes"):
        local_store.put_bytes("slides/b", b"z")
    assert files_under(local_store.root) == ["slides/a", "slides/b/pyramid.tiff"]
    with pytest.raises(ObjectNotFound):
        local_store.get_range("slides/b", 0, 1)


def test_deleting_the_last_object_removes_empty_folders(local_store: LocalStore) -> None:
    local_store.put_bytes("slides/case-1/a/pyramid.tiff", b"x")
    local_store.put_bytes("slides/keep.svs", b"y")
    local_store.delete("slides/case-1/a/pyramid.tiff")
    assert sorted(os.listdir(local_store.root / "slides")) == ["keep.svs"]
    assert local_store.root.is_dir()


# --- presigned URLs: the hub's /api/storage/ route checks them with verify_presigned ---------


def parse(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    key = unquote(parts.path.split("/api/storage/", 1)[1])
    return key, int(query["expires"]), query["signature"]


def test_presigned_url_points_at_the_hub(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, url_base="https://iain.chu-example.fr/", signing_key=b"k")
    url = store.presign_get("slides/test3-DAPI-2-(387) été.ndpi")
    assert url.startswith("https://iain.chu-example.fr/api/storage/slides/test3-DAPI-2-")
    assert " " not in url and "é" not in url
    key, expires, signature = parse(url)
    assert key == "slides/test3-DAPI-2-(387) été.ndpi"
    assert store.verify_presigned(key, expires, signature)


def test_presigned_url_checks(local_store: LocalStore) -> None:
    key, expires, signature = parse(local_store.presign_get("slides/a.svs", expires_s=60))
    assert local_store.verify_presigned(key, expires, signature)
    assert not local_store.verify_presigned("slides/b.svs", expires, signature)
    assert not local_store.verify_presigned(key, expires + 1, signature)
    assert not local_store.verify_presigned(key, expires, signature.upper())
    assert not local_store.verify_presigned(key, expires, "")
    other = LocalStore(local_store.root, signing_key=b"another centre's key")
    assert not other.verify_presigned(key, expires, signature)


def test_expired_presigned_url_is_refused(local_store: LocalStore) -> None:
    key, expires, signature = parse(local_store.presign_get("slides/a.svs", expires_s=-1))
    assert not local_store.verify_presigned(key, expires, signature)


def test_a_store_without_signing_key_cannot_presign(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StorageError, match="no signing key"):
        store.presign_get("slides/a.svs")
    assert not store.verify_presigned("slides/a.svs", 2**40, "0" * 64)
