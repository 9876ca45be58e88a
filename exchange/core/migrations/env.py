"""Alembic's entry point: runs on the connection exchange.core.db.upgrade hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from exchange.core.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through exchange.core.db.upgrade, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
