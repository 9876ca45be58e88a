"""Fixtures shared by the whole suite, one section per kind of real part."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import LocalStore, S3Store
from tests import database
from tests.s3server import SeaweedS3

SIGNING_KEY = b"test-signing-key-not-secret"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the S3 server get the `s3` marker: `-m "not s3"` leaves them out.
    for item in items:
        if "s3_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)


# --- Database ---------------------------------------------------------------------------------


def pytest_report_header() -> str:
    return f"database: {database.BACKEND} (IAIN_TEST_DATABASE)"


@pytest.fixture(autouse=True)
def suite_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """On IAIN_TEST_DATABASE=postgresql, every hub a test makes without naming a database
    (Settings(), `iain` subprocesses) uses the fresh PostgreSQL database of the test's
    tmp_path/"home" (tests/database.py); on SQLite, each home keeps its own file."""
    if database.BACKEND == "sqlite":
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    monkeypatch.setenv("IAIN_DATABASE_URL", database.database_url(tmp_path / "home"))


# --- Object storage -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real SeaweedFS S3 server for the session. A missing `weed` fails, never skips."""
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_store(s3_server: SeaweedS3) -> Iterator[S3Store]:
    """A store on a fresh bucket of its own (created by its first put), removed afterwards."""
    store = S3Store(
        s3_server.endpoint,
        "test-" + uuid.uuid4().hex[:12],
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    yield store
    s3_server.remove_bucket(store.bucket)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A store in a fresh directory, able to presign URLs."""
    return LocalStore(tmp_path / "store", signing_key=SIGNING_KEY)
