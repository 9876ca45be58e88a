"""Errors of the exchange hub; mapped to HTTP codes in iain.app."""

from __future__ import annotations


class ExchangeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCentre(ExchangeError):
    """A centre code that is not registered."""


class SlideMissing(ExchangeError):
    """No slide with this id."""
