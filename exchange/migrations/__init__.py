"""Alembic migrations of the hub's database, run by exchange.db.upgrade (no alembic.ini:
the configuration is built in code, so an installed package migrates its own database)."""
