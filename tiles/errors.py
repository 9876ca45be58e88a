"""Errors of the tiles package. Each carries what the HTTP layer needs; the mapping to status
codes lives in one place (iain.app)."""

from __future__ import annotations


class TilesError(Exception):
    """Base class of every error raised by the tiles package."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SlideNotFound(TilesError):
    """No slide with this id (or the caller may not know it exists)."""


class TileNotFound(TilesError):
    """Level, column or row outside the slide's pyramid."""


class InvalidRequest(TilesError):
    """A malformed or unsatisfiable request (bad IIIF parameters, too large a region...)."""


class UnsupportedSlide(TilesError):
    """A file that is not a slide format we read, or a variant we cannot serve."""


class CorruptSlide(TilesError):
    """A slide whose structure or pixel data cannot be decoded."""


class SlideUnavailable(TilesError):
    """The slide's bytes cannot be read right now (storage down); worth a retry."""


class ImageNotFound(TilesError):
    """The slide has no associated image of that name."""
