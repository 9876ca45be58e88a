"""Alembic migrations of the hub's database, run by exchange.core.db.upgrade (no alembic.ini:
the configuration is built in code, so an installed package migrates its own database).

A change to exchange/core/models.py needs a revision: `python -c 'from exchange.core.db import
new_revision; new_revision("what changed")'` writes versions/NNNN_what_changed.py from the
difference; review it (SQLite ALTERs run in batch mode), then
tests/integration/test_migrations.py checks models and migrations agree on SQLite and
PostgreSQL."""
