"""Errors of the tiles package. Each carries what the HTTP layer needs, its status code
included (`http_status`, read by the one error handler of the app)."""

from __future__ import annotations

from typing import ClassVar


class TilesError(Exception):
    """Base class of every error raised by the tiles package."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SlideNotFound(TilesError):
    """No slide with this id (or the caller may not know it exists)."""

    http_status = 404


class TileNotFound(TilesError):
    """Level, column or row outside the slide's pyramid."""

    http_status = 404


class InvalidRequest(TilesError):
    """A malformed or unsatisfiable request (bad IIIF parameters, too large a region...)."""

    http_status = 400


class UnsupportedSlide(TilesError):
    """A file that is not a slide format we read, or a variant we cannot serve."""

    http_status = 415


class CorruptSlide(TilesError):
    """A slide whose structure or pixel data cannot be decoded."""

    http_status = 422


class SlideUnavailable(TilesError):
    """The slide's bytes cannot be read right now (storage down); worth a retry."""

    http_status = 503


class ImageNotFound(TilesError):
    """The slide has no associated image of that name."""

    http_status = 404
