"""Schema migrations (exchange/migrations) on SQLite and on a real PostgreSQL server: a new
database, one at the previous revision with slides in it, one made before migrations
existed, the way back down, and models that agree with the migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from exchange.core import db
from exchange.core.migrations.baseline import SCHEMA as BASELINE
from exchange.core.models import Base
from exchange.slides.catalogue import Catalogue
from iain.settings import Settings
from tests.database import BACKEND, BACKENDS, empty_database_url, postgres

# Every migration test runs on both databases, whichever one the rest of the suite runs on.
both = pytest.mark.parametrize("backend", BACKENDS)

SLIDE = {
    "id": "slide0000001",
    "name": "CMU-1.svs",
    "centre": "lille",
    "status": "ready",
    "vendor": "aperio",
    "reader": "openslide",
    "width": 46000,
    "height": 32914,
    "mpp_x": 0.499,
    "levels": [[46000, 32914], [11500, 8228]],
    "associated": ["label", "macro"],
    "main_key": "slides/slide0000001/CMU-1.svs",
    "main_size": 177552579,
    "keys": ["slides/slide0000001/CMU-1.svs"],
    "content_hash": "ab" * 32,
    "size_bytes": 177552579,
    "created_at": datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
}
ANNOTATION = {
    "id": "ann000000001",
    "slide_id": SLIDE["id"],
    "kind": "polygon",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]},
    "label": "tumour",
    "colour": "#ff0000",
    "comment": "",
    "version": 3,
    "created_at": datetime(2026, 3, 2, tzinfo=UTC),
    "updated_at": datetime(2026, 3, 2, tzinfo=UTC),
}


@pytest.fixture
def url(tmp_path: Path, backend: str) -> str:
    return empty_database_url(tmp_path, backend)


def diff_from_models(url: str) -> list[Any]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return db.current_revision(conn)
    finally:
        engine.dispose()


def put_slide_with_annotation(url: str, *, with_public_columns: bool = True) -> None:
    """A Lille slide with one annotation, written as revision 0001's code wrote them."""
    engine = db.make_engine(url)
    slides, annotations = BASELINE.tables["slides"], BASELINE.tables["annotations"]
    slide = dict(SLIDE)
    if with_public_columns:
        slide |= {"public_id": "p" * 24, "public_metadata": {"mpp_x": 0.499}}
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(BASELINE.tables["centres"]),
                [{"code": "lille", "name": "Centre Oscar Lambret", "city": "Lille"}],
            )
            conn.execute(sa.insert(slides).values(**slide))
            conn.execute(sa.insert(annotations).values(**ANNOTATION))
    finally:
        engine.dispose()


def check_slide_and_annotation_kept(catalogue: Catalogue) -> None:
    slide = catalogue.get(str(SLIDE["id"]))
    assert slide is not None
    assert (slide.name, slide.centre, slide.width, slide.levels) == (
        SLIDE["name"],
        "lille",
        46000,
        SLIDE["levels"],
    )
    assert slide.created_at.astimezone(UTC) == SLIDE["created_at"]
    assert slide.case_id is None and slide.stain is None
    with catalogue.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT label, version, geometry FROM annotations")).one()
    # JSON comes back parsed from PostgreSQL, as text from SQLite through a raw query.
    geometry = row.geometry if isinstance(row.geometry, dict) else json.loads(row.geometry)
    assert (row.label, row.version, geometry) == ("tumour", 3, ANNOTATION["geometry"])


@both
def test_an_empty_database_gets_the_newest_schema_and_the_centres(url: str) -> None:
    # A plain postgresql:// URL (as hospital IT writes it) goes through psycopg 3 too.
    catalogue = Catalogue.open(url.replace("postgresql+psycopg://", "postgresql://"))
    assert revision_of(url) == db.head_revision()
    assert [c.code for c in catalogue.db.centres()] == ["caen", "lille", "rouen"]
    assert diff_from_models(url) == []
    catalogue.engine.dispose()


@both
def test_models_and_migrations_agree(url: str) -> None:
    db.upgrade(url)
    assert diff_from_models(url) == []


@both
def test_slides_and_annotations_survive_the_upgrade_from_revision_1(url: str) -> None:
    db.upgrade(url, db.BASELINE_REVISION)
    put_slide_with_annotation(url)
    catalogue = Catalogue.open(url)
    assert revision_of(url) == db.head_revision()
    check_slide_and_annotation_kept(catalogue)
    slide = catalogue.get(str(SLIDE["id"]))
    assert slide is not None and slide.public_id == "p" * 24
    # The upgraded slide table still cascades to annotations (SQLite rebuilt it).
    with catalogue.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM slides"))
        assert conn.execute(sa.text("SELECT count(*) FROM annotations")).scalar() == 0
    catalogue.engine.dispose()


@both
def test_a_database_from_before_migrations_is_adopted(url: str) -> None:
    # What create_all made before migrations, in a hub older still: no opaque-id columns.
    engine = db.make_engine(url)
    with engine.begin() as conn:
        BASELINE.create_all(conn)
        conn.execute(sa.text("DROP INDEX ix_slides_public_id"))
        conn.execute(sa.text("ALTER TABLE slides DROP COLUMN public_id"))
        conn.execute(sa.text("ALTER TABLE slides DROP COLUMN public_metadata"))
        conn.execute(sa.text("DROP TABLE overlays"))
    engine.dispose()
    put_slide_with_annotation(url, with_public_columns=False)
    catalogue = Catalogue.open(url)
    assert revision_of(url) == db.head_revision()
    check_slide_and_annotation_kept(catalogue)
    slide = catalogue.get(str(SLIDE["id"]))
    assert slide is not None and slide.public_id is not None and len(slide.public_id) == 24
    assert diff_from_models(url) == []
    catalogue.engine.dispose()


@both
def test_downgrade_to_revision_1_and_back_keeps_the_slides(url: str) -> None:
    db.upgrade(url, db.BASELINE_REVISION)
    put_slide_with_annotation(url)
    db.upgrade(url)
    db.downgrade(url, db.BASELINE_REVISION)
    assert revision_of(url) == db.BASELINE_REVISION
    engine = db.make_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert "users" not in tables and "grants" not in tables and "slides" in tables
    catalogue = Catalogue.open(url)
    check_slide_and_annotation_kept(catalogue)
    assert diff_from_models(url) == []
    catalogue.engine.dispose()


@both
def test_two_hubs_opening_one_new_database_at_once_both_start(url: str) -> None:
    errors: list[BaseException] = []
    opened: list[Catalogue] = []

    def open_it() -> None:
        try:
            opened.append(Catalogue.open(url))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert revision_of(url) == db.head_revision()
    assert [c.code for c in opened[0].db.centres()] == ["caen", "lille", "rouen"]
    for catalogue in opened:
        catalogue.engine.dispose()


@both
def test_a_database_from_a_newer_iain_is_refused_with_a_clear_message(url: str) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(db.SchemaTooNew, match="revision 9999, newer than this version"):
        Catalogue.open(url)
    assert revision_of(url) == "9999"  # left as it was


def test_a_database_that_cannot_be_opened_gets_a_message_not_a_traceback(tmp_path: Path) -> None:
    missing = postgres().url("no_such_database")
    environ = {**os.environ, "IAIN_HOME": str(tmp_path), "IAIN_DATABASE_URL": missing}
    result = subprocess.run(
        [sys.executable, "-m", "iain.cli", "slides"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot open the database" in result.stderr and "no_such_database" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_suite_runs_on_the_database_it_was_asked_for(settings: Settings) -> None:
    # IAIN_TEST_DATABASE reaches the hubs the tests make, and their `iain` subprocesses.
    dialect = sa.make_url(settings.database_url).get_backend_name()
    assert dialect == BACKEND
    assert sa.make_url(Settings().database_url).get_backend_name() == BACKEND
