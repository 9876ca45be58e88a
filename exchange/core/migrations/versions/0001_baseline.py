"""The schema before migrations: centres, slides, annotations, overlays, uploads, conversions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from exchange.core.migrations.baseline import SCHEMA

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    SCHEMA.create_all(op.get_bind())


def downgrade() -> None:
    SCHEMA.drop_all(op.get_bind())
