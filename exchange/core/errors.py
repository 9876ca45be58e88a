"""Errors of the exchange hub. Each class says its HTTP status (`http_status`); the web
layer's error handler reads it, so a new error needs no edit elsewhere."""

from __future__ import annotations

from typing import ClassVar


class ExchangeError(Exception):
    """Base class of every error raised by the hub; a bare one is a 500."""

    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCentre(ExchangeError):
    """A centre code that is not registered."""

    http_status = 400
