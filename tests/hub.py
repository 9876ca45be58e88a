"""Helpers for tests that drive the hub."""

from __future__ import annotations

from pathlib import Path

from exchange.catalogue import Catalogue
from exchange.ingest import ingest_path
from iain.app import build_store
from iain.settings import Settings


def ingest(settings: Settings, path: Path, centre: str = "caen") -> str:
    """Ingests a slide into the hub's store and catalogue; returns its id."""
    store = build_store(settings)
    return ingest_path(store, Catalogue.open(settings.database_url), path, centre).id
