"""A hub on embedded defaults (local storage; SQLite, or PostgreSQL with
IAIN_TEST_DATABASE=postgresql) in a temporary IAIN_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from iain.app import create_app
from iain.settings import Settings
from tests import database
from tests.hub import hub_client


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return database.settings(tmp_path / "home", tile_cache_mb=16)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A hub client logged in as a pathologist of Caen (tests.hub.DEFAULT_USER)."""
    with hub_client(settings) as c:
        yield c


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    """A client of the same hub without credentials."""
    with TestClient(create_app(settings)) as c:
        yield c
