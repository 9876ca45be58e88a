"""The database: `Database` (engine, sessions, the centres), engines and schema
migrations (Alembic, exchange/core/migrations).

SQLite (embedded default: WAL, durable commits) and PostgreSQL (`postgresql+psycopg://`)
get the same schema through the same revisions; `upgrade` brings any database to the
newest one, adopting a database made before migrations existed."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from exchange.core.centres import SEED_CENTRES
from exchange.core.errors import UnknownCentre
from exchange.core.migrations.baseline import SCHEMA as BASELINE
from exchange.core.models import Centre

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001"
# Any constant: PostgreSQL sessions migrating one database queue on this advisory lock.
_PG_MIGRATION_LOCK = 0x1A1_0DB


class DatabaseProblem(RuntimeError):
    """The database cannot be used as it is: the message says why, for the command line."""


class DatabaseUnavailable(DatabaseProblem):
    """The database cannot be reached or opened."""


class SchemaTooOld(DatabaseProblem):
    """A database made before migrations that lacks a required column: it cannot be adopted."""


class SchemaTooNew(DatabaseProblem):
    """A database migrated by a newer version of IAIN than this one."""


class Database:
    """The hub's database: every service gets this handle, and nothing else of the others',
    to open its sessions (`with db.session() as session, session.begin(): ...`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Services may listen to its events (the slide catalogue listens to commits).
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Database:
        """The database at `url`, migrated to the newest schema, the centres seeded."""
        database = cls(make_engine(url))
        database.create_schema()
        return database

    def create_schema(self) -> None:
        if not is_current(self.engine):
            upgrade(self.engine.url.render_as_string(hide_password=False))
        try:
            with self.sessions.begin() as session:
                known = set(session.scalars(select(Centre.code)))
                for code, name, city in SEED_CENTRES:
                    if code not in known:
                        session.add(Centre(code=code, name=name, city=city))
        except IntegrityError:
            pass  # another process opening the new database seeded them at the same moment

    def session(self) -> Session:
        return self.sessions()

    def centres(self) -> Sequence[Centre]:
        with self.session() as session:
            return session.scalars(select(Centre).order_by(Centre.code)).all()

    def check_centre(self, code: str) -> None:
        with self.session() as session:
            if session.get(Centre, code) is None:
                known = ", ".join(c.code for c in self.centres())
                raise UnknownCentre(f"unknown centre {code!r} (known: {known})")


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _wal(cursor: sqlite3.Cursor) -> None:
    """Switches a new database to WAL. The switch needs the file to itself and SQLite
    answers "locked" at once (no busy wait) while another process opens it: retried."""
    for _ in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` URLs go through psycopg 3, the driver installed."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets `iain ingest` write while the server reads; FULL sync makes commits durable.
            cur = dbapi_conn.cursor()
            _wal(cur)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # Sessions in UTC: the API then gives every time in UTC on both databases, whatever the
    # server's TimeZone (the tests run PostgreSQL in Europe/Paris to catch such slips).
    return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"})


def _migration_engine(url: str) -> Engine:
    """An engine for migrating. On SQLite: foreign keys off (a batch ALTER drops and
    recreates a table, which would otherwise cascade deletes into its children) and one
    BEGIN IMMEDIATE transaction, so a failed migration rolls back whole and two processes
    opening a new database migrate it one after the other."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url)
    path = _sqlite_path(url)
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # transactions are begun below, DDL included
        cur = dbapi_conn.cursor()
        _wal(cur)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision (the cheap check on every start)."""
    try:
        with engine.connect() as conn:
            return current_revision(conn) == head_revision()
    except OperationalError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot open the database {where}: {reason}") from exc


def upgrade(url: str, revision: str = "head") -> None:
    """Migrates the database at `url` to `revision`, in one transaction."""
    engine = _migration_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            current = current_revision(conn)
            if current is None and "slides" in inspect(conn).get_table_names():
                _adopt(conn)
            elif current is not None and current not in _known_revisions():
                raise SchemaTooNew(
                    f"the database is at schema revision {current}, newer than this version"
                    f" of IAIN knows (newest: {head_revision()}): run a newer IAIN"
                )
            command.upgrade(alembic_config(conn), revision)
            if conn.dialect.name == "sqlite":
                # Foreign keys were off while tables were rebuilt: nothing may dangle now.
                dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    raise RuntimeError(f"migration left rows without their parent: {dangling[:5]}")
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    engine = _migration_engine(url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


def _adopt(conn: Connection) -> None:
    """Brings a database made by create_all (before migrations) to the baseline revision
    and stamps it: tables that older versions lacked are created, and the nullable columns
    added since then (the de-identified view's public_id, public_metadata) are added."""
    inspector = inspect(conn)
    present_tables = set(inspector.get_table_names())
    BASELINE.create_all(conn, checkfirst=True)
    for table in BASELINE.sorted_tables:
        if table.name not in present_tables:
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        required = [c.name for c in missing if not c.nullable]
        if required:
            raise SchemaTooOld(
                f"table {table.name} lacks {', '.join(required)}: too old to upgrade in place"
            )
        for column in missing:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
        added = {c.name for c in missing}
        for index in table.indexes:
            if added & {c.name for c in index.columns}:
                index.create(conn, checkfirst=True)
    command.stamp(alembic_config(conn), BASELINE_REVISION)


def new_revision(message: str) -> None:
    """Writes the next revision into exchange/core/migrations/versions from the difference between
    the models and the newest revision (a developer's tool; review what it writes):
    `python -c 'from exchange.core.db import new_revision; new_revision("what changed")'`."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        upgrade(url)
        number = f"{int(head_revision()) + 1:04d}"
        engine = _migration_engine(url)
        try:
            with engine.begin() as conn:
                command.revision(
                    alembic_config(conn), message=message, autogenerate=True, rev_id=number
                )
        finally:
            engine.dispose()
