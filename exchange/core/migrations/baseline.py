"""The schema before Alembic: what `Base.metadata.create_all` made at revision 0001.

Frozen here (never edit it: later changes are new revisions), so revision 0001 creates
exactly these tables, and a database made by create_all before migrations existed is
recognised and adopted (exchange.core.db.upgrade)."""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA = sa.MetaData()

sa.Table(
    "centres",
    SCHEMA,
    sa.Column("code", sa.String(length=32), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("city", sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint("code"),
)
sa.Table(
    "slides",
    SCHEMA,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("name", sa.String(length=500), nullable=False),
    sa.Column("centre", sa.String(length=32), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("vendor", sa.String(length=50), nullable=False),
    sa.Column("reader", sa.String(length=20), nullable=False),
    sa.Column("width", sa.Integer(), nullable=False),
    sa.Column("height", sa.Integer(), nullable=False),
    sa.Column("mpp_x", sa.Float(), nullable=True),
    sa.Column("mpp_y", sa.Float(), nullable=True),
    sa.Column("objective_power", sa.Float(), nullable=True),
    sa.Column("levels", sa.JSON(), nullable=False),
    sa.Column("associated", sa.JSON(), nullable=False),
    sa.Column("main_key", sa.String(length=1000), nullable=False),
    sa.Column("main_size", sa.BigInteger(), nullable=False),
    sa.Column("keys", sa.JSON(), nullable=False),
    sa.Column("index_key", sa.String(length=1000), nullable=True),
    sa.Column("content_hash", sa.String(length=64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("public_id", sa.String(length=32), nullable=True),
    sa.Column("public_metadata", sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(
        ["centre"],
        ["centres.code"],
    ),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_slides_centre", SCHEMA.tables["slides"].c["centre"], unique=False)
sa.Index("ix_slides_content_hash", SCHEMA.tables["slides"].c["content_hash"], unique=False)
sa.Index("ix_slides_public_id", SCHEMA.tables["slides"].c["public_id"], unique=True)
sa.Table(
    "uploads",
    SCHEMA,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("slide_id", sa.String(length=32), nullable=False),
    sa.Column("centre", sa.String(length=32), nullable=False),
    sa.Column("name", sa.String(length=500), nullable=False),
    sa.Column("part_size", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(
        ["centre"],
        ["centres.code"],
    ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("slide_id"),
)
sa.Table(
    "annotations",
    SCHEMA,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("slide_id", sa.String(length=32), nullable=False),
    sa.Column("kind", sa.String(length=20), nullable=False),
    sa.Column("geometry", sa.JSON(), nullable=False),
    sa.Column("label", sa.String(length=200), nullable=False),
    sa.Column("colour", sa.String(length=7), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_annotations_slide_id", SCHEMA.tables["annotations"].c["slide_id"], unique=False)
sa.Table(
    "conversions",
    SCHEMA,
    sa.Column("slide_id", sa.String(length=32), nullable=False),
    sa.Column("status", sa.String(length=20), nullable=False),
    sa.Column("percent", sa.Float(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("worker_pid", sa.Integer(), nullable=True),
    sa.Column("pyramid_key", sa.String(length=1000), nullable=True),
    sa.Column("pyramid_size", sa.BigInteger(), nullable=True),
    sa.Column("pyramid_index_key", sa.String(length=1000), nullable=True),
    sa.Column("pyramid_hash", sa.String(length=64), nullable=True),
    sa.Column("pyramid_levels", sa.JSON(), nullable=True),
    sa.Column("seconds", sa.Float(), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("slide_id"),
)
sa.Index("ix_conversions_status", SCHEMA.tables["conversions"].c["status"], unique=False)
sa.Table(
    "overlays",
    SCHEMA,
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("slide_id", sa.String(length=32), nullable=False),
    sa.Column("kind", sa.String(length=20), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("legend", sa.JSON(), nullable=False),
    sa.Column("storage_key", sa.String(length=1000), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("width", sa.Integer(), nullable=True),
    sa.Column("height", sa.Integer(), nullable=True),
    sa.Column("colour_map", sa.String(length=32), nullable=True),
    sa.Column("feature_count", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_overlays_slide_id", SCHEMA.tables["overlays"].c["slide_id"], unique=False)
sa.Table(
    "upload_files",
    SCHEMA,
    sa.Column("upload_id", sa.String(length=32), nullable=False),
    sa.Column("index", sa.Integer(), nullable=False),
    sa.Column("path", sa.String(length=1000), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("key", sa.String(length=1000), nullable=False),
    sa.Column("multipart_id", sa.String(length=1000), nullable=False),
    sa.Column("assembled", sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("upload_id", "index"),
)
sa.Table(
    "upload_parts",
    SCHEMA,
    sa.Column("upload_id", sa.String(length=32), nullable=False),
    sa.Column("file_index", sa.Integer(), nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("etag", sa.String(length=200), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("upload_id", "file_index", "number"),
)
