"""open_store: a storage URL from the settings becomes a store, or a clear StorageError."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import LocalStore, S3Store, StorageError, open_store

ACCESS_KEY, SECRET_KEY = "AKIAEXAMPLE", "secret-example"


def test_s3_url() -> None:
    # Building the store sends no request: this port need not be open.
    store = open_store(
        "s3://minio.chu-example.fr:9000/iain-slides", access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    assert isinstance(store, S3Store)
    assert (store.endpoint, store.bucket) == ("minio.chu-example.fr:9000", "iain-slides")


def test_s3_url_with_a_trailing_slash() -> None:
    store = open_store("s3://127.0.0.1:9000/slides/", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    assert isinstance(store, S3Store)
    assert store.bucket == "slides"


@pytest.mark.parametrize(
    "url",
    [
        "s3://127.0.0.1:9000",
        "s3://127.0.0.1:9000/",
        "s3:///slides",
        "s3://127.0.0.1:9000/slides/sub",
        "s3://127.0.0.1:9000/bad..bucket",
        "s3://127.0.0.1:9000/ab",
    ],
)
def test_malformed_s3_urls(url: str) -> None:
    with pytest.raises(StorageError):
        open_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


@pytest.mark.parametrize(
    ("access_key", "secret_key"), [("", ""), (ACCESS_KEY, ""), ("", SECRET_KEY)]
)
def test_s3_url_needs_both_keys(access_key: str, secret_key: str) -> None:
    with pytest.raises(StorageError, match="IAIN_S3_ACCESS_KEY and IAIN_S3_SECRET_KEY"):
        open_store("s3://127.0.0.1:9000/slides", access_key=access_key, secret_key=secret_key)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/slides", "gs://slides", "ftp://x/y"])
def test_unsupported_schemes(url: str) -> None:
    with pytest.raises(StorageError, match="unsupported storage URL"):
        open_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


def test_a_directory_path(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "data"), signing_key=b"k")
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "data").resolve()
    assert store.root.is_dir()
    store.put_bytes("slides/a.svs", b"x")
    assert (tmp_path / "data" / "slides" / "a.svs").read_bytes() == b"x"
    assert store.presign_get("slides/a.svs").startswith("/api/storage/slides/a.svs?")


def test_a_file_url(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/data")
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "data").resolve()


def test_a_relative_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("var/storage")
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "var" / "storage").resolve()
