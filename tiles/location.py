"""Where a slide's bytes are: what the tile layer needs from whoever keeps the catalogue.

The tiles package never imports the exchange hub; the hub hands a SlideLocator to the
routes (and, later, decides per request whether the caller may see the slide at all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tiles.deid import View
from tiles.formats import ReaderKind
from tiles.geometry import Size


@dataclass(frozen=True)
class SlideLocation:
    slide_id: str
    kind: ReaderKind
    main_key: str
    main_size: int
    keys: tuple[str, ...]
    # Header pack of a TIFF-family slide: opening it costs one GET instead of dozens.
    index_key: str | None
    # sha256 of the original: immutable tiles are tagged with it.
    content_hash: str
    l_sizes: tuple[Size, ...]
    # What the caller may see of the slide (tiles.deid): chosen by the locator per access.
    view: View = View.FULL
    # Set when the tiles come from a normalised pyramid (tiles.convert): the untouched
    # original, which still gives the associated images and vendor properties.
    original: SlideLocation | None = None

    @property
    def l0_size(self) -> Size:
        return self.l_sizes[0]

    @property
    def source(self) -> SlideLocation:
        """Where associated images and vendor properties are read: the original."""
        return self.original or self


class SlideLocator(Protocol):
    def locate(self, slide_id: str) -> SlideLocation | None:
        """The location of a ready slide, or None if unknown (or not visible)."""
        ...


def slide_prefix(slide_id: str) -> str:
    return f"slides/{slide_id}/"


def original_key(slide_id: str, relative: str) -> str:
    return f"{slide_prefix(slide_id)}original/{relative}"


def index_key(slide_id: str) -> str:
    return f"{slide_prefix(slide_id)}tiff-index.bin"
