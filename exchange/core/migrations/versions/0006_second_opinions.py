"""Second opinions: specialty pools, consultations with their slides, grants, material,
timeline and threads; notifications; users' e-mail; annotations of a consultation's layer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:04:59.306821
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "consultation_pools",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("specialty", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["centre"],
            ["centres.code"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("centre", "specialty"),
    )
    with op.batch_alter_table("consultation_pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consultation_pools_centre"), ["centre"], unique=False)

    op.create_table(
        "consultation_pool_members",
        sa.Column("pool_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("manager", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["pool_id"], ["consultation_pools.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("pool_id", "user_id"),
    )
    with op.batch_alter_table("consultation_pool_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_pool_members_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "consultations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("requester_centre", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("case_reference", sa.String(length=100), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("clinical_context", sa.Text(), nullable=False),
        sa.Column("specimen_site", sa.String(length=200), nullable=False),
        sa.Column("specimen_procedure", sa.String(length=200), nullable=False),
        sa.Column("stains", sa.String(length=500), nullable=False),
        sa.Column("initial_diagnosis", sa.Text(), nullable=False),
        sa.Column("initial_status", sa.String(length=20), nullable=False),
        sa.Column("initial_confidence", sa.String(length=20), nullable=False),
        sa.Column("urgency", sa.String(length=20), nullable=False),
        sa.Column("network", sa.String(length=50), nullable=False),
        sa.Column("consent", sa.String(length=30), nullable=False),
        sa.Column("addressee_user_id", sa.String(length=32), nullable=True),
        sa.Column("pool_id", sa.String(length=32), nullable=True),
        sa.Column("addressee_centre", sa.String(length=32), nullable=True),
        sa.Column("assignee_id", sa.String(length=32), nullable=True),
        sa.Column("decline_reason", sa.Text(), nullable=False),
        sa.Column("answer_diagnosis", sa.Text(), nullable=False),
        sa.Column("answer_agreement", sa.String(length=20), nullable=False),
        sa.Column("answer_confidence", sa.String(length=20), nullable=False),
        sa.Column("answer_comments", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_viewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_overdue_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["addressee_centre"],
            ["centres.code"],
        ),
        sa.ForeignKeyConstraint(
            ["addressee_user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["consultation_pools.id"],
        ),
        sa.ForeignKeyConstraint(
            ["requester_centre"],
            ["centres.code"],
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consultations_addressee", ["addressee_user_id", "updated_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_addressee_centre"), ["addressee_centre"], unique=False
        )
        batch_op.create_index(
            "ix_consultations_assignee", ["assignee_id", "updated_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consultations_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            "ix_consultations_pool", ["pool_id", "updated_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_consultations_requester", ["requester_id", "updated_at", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consultations_requester_centre"), ["requester_centre"], unique=False
        )
        batch_op.create_index("ix_consultations_state_due", ["state", "due_at"], unique=False)

    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=30), nullable=False),
        sa.Column("subject_type", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mail_state", sa.String(length=10), nullable=False),
        sa.Column("mail_attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_created", ["created_at"], unique=False)
        batch_op.create_index("ix_notifications_mail", ["mail_state", "created_at"], unique=False)
        batch_op.create_index(
            "ix_notifications_user", ["user_id", "read_at", "created_at"], unique=False
        )

    op.create_table(
        "consultation_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=False),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consultation_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consultation_events_at", ["consultation_id", "at", "id"], unique=False
        )

    op.create_table(
        "consultation_material",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consultation_material", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_material_consultation_id"),
            ["consultation_id"],
            unique=False,
        )

    op.create_table(
        "consultation_slides",
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("slide_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("consultation_id", "slide_id"),
    )
    with op.batch_alter_table("consultation_slides", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consultation_slides_slide_id"), ["slide_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("mentions", sa.JSON(), nullable=False),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_consultation_id"), ["consultation_id"], unique=False
        )
        batch_op.create_index(
            "ix_messages_subject", ["subject_type", "subject_id", "created_at"], unique=False
        )

    op.create_table(
        "consultation_grants",
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("consultation_id", "grant_id"),
    )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consultation_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("author_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_annotations_consultation_id"), ["consultation_id"], unique=False
        )
        batch_op.create_foreign_key("fk_annotations_author_id", "users", ["author_id"], ["id"])
        batch_op.create_foreign_key(
            "fk_annotations_consultation_id",
            "consultations",
            ["consultation_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email", sa.String(length=254), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email")

    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_annotations_consultation_id", type_="foreignkey")
        batch_op.drop_constraint("fk_annotations_author_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_annotations_consultation_id"))
        batch_op.drop_column("author_id")
        batch_op.drop_column("consultation_id")

    op.drop_table("consultation_grants")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_subject")
        batch_op.drop_index(batch_op.f("ix_messages_consultation_id"))

    op.drop_table("messages")
    with op.batch_alter_table("consultation_slides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_slides_slide_id"))

    op.drop_table("consultation_slides")
    with op.batch_alter_table("consultation_material", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_material_consultation_id"))

    op.drop_table("consultation_material")
    with op.batch_alter_table("consultation_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consultation_events_at")

    op.drop_table("consultation_events")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user")
        batch_op.drop_index("ix_notifications_mail")
        batch_op.drop_index("ix_notifications_created")

    op.drop_table("notifications")
    op.drop_table("notification_settings")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index("ix_consultations_state_due")
        batch_op.drop_index(batch_op.f("ix_consultations_requester_centre"))
        batch_op.drop_index("ix_consultations_requester")
        batch_op.drop_index("ix_consultations_pool")
        batch_op.drop_index(batch_op.f("ix_consultations_case_id"))
        batch_op.drop_index("ix_consultations_assignee")
        batch_op.drop_index(batch_op.f("ix_consultations_addressee_centre"))
        batch_op.drop_index("ix_consultations_addressee")

    op.drop_table("consultations")
    with op.batch_alter_table("consultation_pool_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_pool_members_user_id"))

    op.drop_table("consultation_pool_members")
    with op.batch_alter_table("consultation_pools", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_pools_centre"))

    op.drop_table("consultation_pools")
