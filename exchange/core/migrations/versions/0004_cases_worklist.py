"""Cases and the worklist at hospital scale: case status, received date and folded
reference; slides get part, block, level, folded stain, barcode and how they were linked;
centres get their linking rules; search terms; slides announced by the lab system; the
indexes the worklist's pages use.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 12:38:23.436189
"""

from __future__ import annotations

import re
import secrets
import string
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


# As exchange.core.models.FoldedKey: byte order on PostgreSQL whatever the locale.
FOLDED_KEY = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


ID_ALPHABET = string.ascii_lowercase + string.digits


def _fold(text: str) -> str:
    """exchange.slides.search.fold as it was at this revision: no accents, case folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _terms(text: str) -> set[str]:
    """exchange.slides.search.terms as it was at this revision."""
    words = [w for w in re.split(r"[^0-9a-z]+", _fold(text)) if w]
    out = {w[:100] for w in words}
    if len(words) > 1:
        out.add("".join(words)[:100])
    return out


def upgrade() -> None:
    op.create_table(
        "expected_slides",
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=256), nullable=False),
        sa.Column("case_reference", sa.String(length=100), nullable=False),
        sa.Column("part", sa.String(length=20), nullable=True),
        sa.Column("block", sa.String(length=20), nullable=True),
        sa.Column("level", sa.String(length=20), nullable=True),
        sa.Column("stain", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["centre"], ["centres.code"]),
        sa.PrimaryKeyConstraint("centre", "label"),
    )
    op.create_table(
        "search_terms",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("centre", sa.String(length=32), nullable=False),
        sa.Column("term", FOLDED_KEY, nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=True),
        sa.Column("slide_id", sa.String(length=32), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["slide_id"], ["slides.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("search_terms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_search_terms_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            "ix_search_terms_centre_term", ["centre", "term", "case_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_search_terms_slide_id"), ["slide_id"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference_key", FOLDED_KEY, nullable=True))
        batch_op.add_column(sa.Column("received_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("public_id", sa.String(length=32), nullable=True))

    # Existing cases: folded reference, received the day they were created, their terms.
    bind = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.String),
        sa.column("centre", sa.String),
        sa.column("reference", sa.String),
        sa.column("organ", sa.String),
        sa.column("specimen_type", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("reference_key", sa.String),
        sa.column("received_on", sa.Date),
        sa.column("status", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("public_id", sa.String),
    )
    terms = sa.table(
        "search_terms",
        sa.column("centre", sa.String),
        sa.column("term", sa.String),
        sa.column("case_id", sa.String),
        sa.column("slide_id", sa.String),
        sa.column("public", sa.Boolean),
    )
    rows: list[dict[str, object]] = []
    for case in bind.execute(sa.select(cases)).mappings().all():
        created = case["created_at"] or datetime.now(UTC)
        if isinstance(created, str):  # SQLite without type affinity
            created = datetime.fromisoformat(created)
        key = "".join(re.split(r"[^0-9a-z]+", _fold(case["reference"])))[:100] or case["id"]
        bind.execute(
            cases.update()
            .where(cases.c.id == case["id"])
            .values(
                reference_key=key,
                received_on=created.date(),
                status="received",
                updated_at=created,
                public_id="".join(secrets.choice(ID_ALPHABET) for _ in range(24)),
            )
        )
        words = _terms(case["reference"]) | _terms(case["organ"] or "")
        words |= _terms(case["specimen_type"] or "")
        rows += [
            {
                "centre": case["centre"],
                "term": w,
                "case_id": case["id"],
                "slide_id": None,
                "public": True,
            }
            for w in words
        ]
    slides = sa.table(
        "slides",
        sa.column("id", sa.String),
        sa.column("centre", sa.String),
        sa.column("name", sa.String),
        sa.column("case_id", sa.String),
        sa.column("stain", sa.String),
    )
    for slide in bind.execute(sa.select(slides)).mappings().all():
        rows += [
            {
                "centre": slide["centre"],
                "term": w,
                "case_id": slide["case_id"],
                "slide_id": slide["id"],
                "public": False,
            }
            for w in _terms(slide["name"])
        ]
        rows += [
            {
                "centre": slide["centre"],
                "term": w,
                "case_id": slide["case_id"],
                "slide_id": slide["id"],
                "public": True,
            }
            for w in _terms(slide["stain"] or "")
        ]
    if rows:
        bind.execute(terms.insert(), rows)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("reference_key", existing_type=FOLDED_KEY, nullable=False)
        batch_op.alter_column("received_on", existing_type=sa.Date(), nullable=False)
        batch_op.alter_column("status", existing_type=sa.String(20), nullable=False)
        batch_op.alter_column(
            "updated_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_cases_centre_received", ["centre", "received_on", "id"], unique=False
        )
        batch_op.create_index(
            "ix_cases_centre_status", ["centre", "status", "received_on", "id"], unique=False
        )
        batch_op.create_index(
            "uq_cases_centre_reference_key", ["centre", "reference_key"], unique=True
        )
        batch_op.create_unique_constraint("uq_cases_public_id", ["public_id"])

    with op.batch_alter_table("centres", schema=None) as batch_op:
        batch_op.add_column(sa.Column("barcode_rule", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("file_name_rule", sa.Text(), nullable=True))

    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stain_key", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("part", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("block", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("level", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("barcode", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("link_source", sa.String(length=20), nullable=True))
        batch_op.create_index(
            "ix_slides_case_block", ["case_id", "block", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_slides_centre_created", ["centre", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_slides_centre_status", ["centre", "status", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_slides_centre_barcode", ["centre", "barcode"], unique=False)
        batch_op.create_index("ix_slides_stain_case", ["stain_key", "case_id"], unique=False)
        batch_op.create_index("ix_slides_centre_name", ["centre", "name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slides", schema=None) as batch_op:
        batch_op.drop_index("ix_slides_stain_case")
        batch_op.drop_index("ix_slides_centre_name")
        batch_op.drop_index("ix_slides_centre_barcode")
        batch_op.drop_index("ix_slides_centre_status")
        batch_op.drop_index("ix_slides_centre_created")
        batch_op.drop_index("ix_slides_case_block")
        batch_op.drop_column("link_source")
        batch_op.drop_column("barcode")
        batch_op.drop_column("level")
        batch_op.drop_column("block")
        batch_op.drop_column("part")
        batch_op.drop_column("stain_key")

    with op.batch_alter_table("centres", schema=None) as batch_op:
        batch_op.drop_column("file_name_rule")
        batch_op.drop_column("barcode_rule")

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint("uq_cases_public_id", type_="unique")
        batch_op.drop_column("public_id")
        batch_op.drop_index("uq_cases_centre_reference_key")
        batch_op.drop_index("ix_cases_centre_status")
        batch_op.drop_index("ix_cases_centre_received")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("status")
        batch_op.drop_column("received_on")
        batch_op.drop_column("reference_key")

    with op.batch_alter_table("search_terms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_terms_slide_id"))
        batch_op.drop_index("ix_search_terms_centre_term")
        batch_op.drop_index(batch_op.f("ix_search_terms_case_id"))

    op.drop_table("search_terms")
    op.drop_table("expected_slides")
