"""Helpers for tests that drive the hub."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from exchange.core.db import Database
from exchange.identity.accounts import Identities
from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from iain.app import build_store, create_app
from iain.settings import Settings


def ingest(settings: Settings, path: Path, centre: str = "caen", *, convert: bool = False) -> str:
    """Ingests a slide into the hub's store and catalogue; returns its id. Without
    `convert`, the slide is served from its original only (no pyramid changes its tiles
    under a test's feet); tests/integration/test_conversion.py covers conversion."""
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    return ingest_path(store, catalogue, path, centre, convert=convert).id


# The caller every hub test is by default: a pathologist of Caen, where test slides go.
DEFAULT_USER = "pathologist.caen"


def token_for(
    settings: Settings,
    username: str = DEFAULT_USER,
    centre: str = "caen",
    roles: tuple[str, ...] = ("pathologist",),
) -> str:
    """An API token of `username` (created, with `centre` and `roles`, if new)."""
    identities = Identities(Database.open(settings.database_url))
    if identities.user(username) is None:
        identities.add_user(username, centre, roles)
    return identities.create_token(username)[1]


def auth_headers(settings: Settings, username: str = DEFAULT_USER, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, username, **kw)}"}


def hub_client(settings: Settings, username: str = DEFAULT_USER, **kw: Any) -> TestClient:
    """A TestClient of a new hub on `settings`, sending `username`'s token on every call."""
    app = create_app(settings)
    return TestClient(app, headers=auth_headers(settings, username, **kw))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The hub on a real port, in a thread of this process: its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
