"""AI assistance: registered model versions, inference and training jobs with their
leases, and the job and provenance of an overlay that a model made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("task", sa.String(length=30), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("artefact_format", sa.String(length=20), nullable=False),
        sa.Column("artefact_key", sa.String(length=1000), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("centre", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    )
    op.create_index("ix_model_versions_sha256", "model_versions", ["sha256"])
    op.create_table(
        "inference_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=True),
        sa.Column("result_model_id", sa.String(length=32), nullable=True),
        sa.Column("slide_id", sa.String(length=32), nullable=False),
        sa.Column("slide_address", sa.String(length=64), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("requester_centre", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lost_leases", sa.Integer(), nullable=False),
        sa.Column("lease_hash", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("patches_done", sa.Integer(), nullable=False),
        sa.Column("patches_total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("overlay_ids", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["result_model_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["requester_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inference_jobs_model_id", "inference_jobs", ["model_id"])
    op.create_index("ix_inference_jobs_slide_id", "inference_jobs", ["slide_id"])
    op.create_index("ix_inference_jobs_requester_id", "inference_jobs", ["requester_id"])
    op.create_index("ix_inference_jobs_requester_centre", "inference_jobs", ["requester_centre"])
    op.create_index("ix_inference_jobs_state_created", "inference_jobs", ["state", "created_at"])
    op.create_index(
        "ix_inference_jobs_dedup", "inference_jobs", ["model_id", "slide_id", "params_key", "state"]
    )
    with op.batch_alter_table("overlays") as batch:
        batch.add_column(sa.Column("job_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("info", sa.JSON(), nullable=True))
        batch.create_index("ix_overlays_job_id", ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("overlays") as batch:
        batch.drop_index("ix_overlays_job_id")
        batch.drop_column("info")
        batch.drop_column("job_id")
    op.drop_table("inference_jobs")
    op.drop_table("model_versions")
