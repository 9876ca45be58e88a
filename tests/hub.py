"""Helpers for tests that drive the hub."""

from __future__ import annotations

from pathlib import Path

from exchange.catalogue import Catalogue
from exchange.ingest import ingest_path
from iain.app import build_store
from iain.settings import Settings


def ingest(settings: Settings, path: Path, centre: str = "caen", *, convert: bool = False) -> str:
    """Ingests a slide into the hub's store and catalogue; returns its id. Without
    `convert`, the slide is served from its original only (no pyramid changes its tiles
    under a test's feet); tests/integration/test_conversion.py covers conversion."""
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    return ingest_path(store, catalogue, path, centre, convert=convert).id
