"""Identity, access and audit: users, API tokens, login sessions, cases, grants, audit
events; slides get a case and a stain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 23:42:28.348570
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=True),
        sa.Column("actor_centre", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target_type", sa.String(length=30), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("hash"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("floor_seq", sa.BigInteger(), nullable=False),
        sa.Column("floor_hash", sa.String(length=64), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_views",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("slide_id", sa.String(length=32), nullable=False),
        sa.Column("viewing_session", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "slide_id", "viewing_session"),
    )
    with op.batch_alter_table("audit_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_views_at"), ["at"], unique=False)

    op.create_table(
        "cases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("organ", sa.String(length=100), nullable=False),
        sa.Column("specimen_type", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre"],
            ["centres.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("centre", "reference"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_centre"), ["centre"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("rpps", sa.String(length=11), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("oidc_subject", sa.String(length=500), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre"],
            ["centres.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_centre"), ["centre"], unique=False)
        batch_op.create_index(batch_op.f("ix_users_oidc_subject"), ["oidc_subject"], unique=True)
        batch_op.create_index(batch_op.f("ix_users_username"), ["username"], unique=True)

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_sessions_secret_hash"), ["secret_hash"], unique=True
        )
        batch_op.create_index(batch_op.f("ix_login_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("slide_id", sa.String(length=32), nullable=True),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("grantor_id", sa.String(length=32), nullable=False),
        sa.Column("grantor_centre", sa.String(length=32), nullable=False),
        sa.Column("grantee_centre", sa.String(length=32), nullable=True),
        sa.Column("grantee_user_id", sa.String(length=32), nullable=True),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("legal_basis", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["grantee_centre"],
            ["centres.code"],
        ),
        sa.ForeignKeyConstraint(
            ["grantee_user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["grantor_centre"],
            ["centres.code"],
        ),
        sa.ForeignKeyConstraint(
            ["grantor_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_grants_grantee_centre"), ["grantee_centre"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grants_grantee_user_id"), ["grantee_user_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grants_grantor_centre"), ["grantor_centre"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grants_grantor_id"), ["grantor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_grants_slide_id"), ["slide_id"], unique=False)

    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("stain", sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f("ix_slides_case_id"), ["case_id"], unique=False)
        batch_op.create_foreign_key(
            "slides_case_id_fkey", "cases", ["case_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("slides", schema=None) as batch_op:
        # Dropping the column drops its foreign key too (PostgreSQL; SQLite's copy omits it).
        batch_op.drop_index(batch_op.f("ix_slides_case_id"))
        batch_op.drop_column("stain")
        batch_op.drop_column("case_id")

    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_slide_id"))
        batch_op.drop_index(batch_op.f("ix_grants_grantor_id"))
        batch_op.drop_index(batch_op.f("ix_grants_grantor_centre"))
        batch_op.drop_index(batch_op.f("ix_grants_grantee_user_id"))
        batch_op.drop_index(batch_op.f("ix_grants_grantee_centre"))
        batch_op.drop_index(batch_op.f("ix_grants_case_id"))

    op.drop_table("grants")
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_sessions_user_id"))
        batch_op.drop_index(batch_op.f("ix_login_sessions_secret_hash"))

    op.drop_table("login_sessions")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_tokens_token_hash"))

    op.drop_table("api_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_username"))
        batch_op.drop_index(batch_op.f("ix_users_oidc_subject"))
        batch_op.drop_index(batch_op.f("ix_users_centre"))

    op.drop_table("users")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_centre"))

    op.drop_table("cases")
    with op.batch_alter_table("audit_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_views_at"))

    op.drop_table("audit_views")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
