"""Ingest, hub half: give the slide an id, store it, record it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exchange.core.ids import new_id
from exchange.core.models import Slide
from exchange.slides.catalogue import Catalogue
from storage import ObjectStore
from tiles.ingest import Inspection, store_original
from tiles.location import slide_prefix
from tiles.sandbox import inspect_in_sandbox


def ingest_path(
    store: ObjectStore,
    catalogue: Catalogue,
    path: Path,
    centre: str,
    *,
    name: str | None = None,
    on_inspected: Callable[[Inspection], None] | None = None,
    progress: Callable[[int], None] | None = None,
    slide_id: str | None = None,
    convert: bool = True,
) -> Slide:
    """Validates and stores one slide; raises a TilesError saying why it was refused.

    Nothing is recorded until the original is fully stored, so a crash leaves at most
    unreferenced objects, never a slide without its bytes. With `convert`, the slide is
    recorded `queued` for its normalised pyramid (exchange.slides.conversion), which a worker
    builds; until then it is served from its original."""
    catalogue.db.check_centre(centre)
    inspection = inspect_in_sandbox(path)
    if on_inspected is not None:
        on_inspected(inspection)
    # A caller may choose the id beforehand (the drop-folder watcher journals it, so a
    # restart after a crash can tell whether the slide was recorded).
    slide_id = slide_id or new_id()
    try:
        loc = store_original(store, slide_id, inspection, progress)
        return catalogue.add_slide(name or path.name, centre, loc, inspection, convert=convert)
    except BaseException:
        for obj in list(store.list(slide_prefix(slide_id))):
            store.delete(obj.key)
        raise
