"""The HTTP status of each error is said by its class and read in one place."""

from __future__ import annotations

import pytest

from exchange.access.policy import Forbidden
from exchange.annotations.service import StaleAnnotation
from exchange.core.errors import ExchangeError, UnknownCentre
from exchange.identity.oidc import OidcError, OidcRefused, OidcUnavailable
from exchange.slides.uploads import ChecksumMismatch, UploadConflict
from exchange.web.auth import CsrfRejected, NotAuthenticated
from exchange.web.errors import status_of
from storage import InvalidKey, ObjectNotFound, StorageError
from storage.base import InvalidRange
from tiles.errors import CorruptSlide, SlideNotFound, SlideUnavailable, TilesError, UnsupportedSlide


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotAuthenticated, 401),
        (CsrfRejected, 403),
        (Forbidden, 403),
        (UnknownCentre, 400),
        (StaleAnnotation, 409),
        (UploadConflict, 409),
        (ChecksumMismatch, 422),
        (OidcError, 400),
        (OidcRefused, 403),
        (OidcUnavailable, 502),
        (SlideNotFound, 404),
        (UnsupportedSlide, 415),
        (CorruptSlide, 422),
        (SlideUnavailable, 503),
        (ObjectNotFound, 404),
        (InvalidKey, 400),
        # Storage that fails in a way without its own status: down, worth a retry.
        (InvalidRange, 503),
        (StorageError, 503),
        # A bare base error is a bug of ours, not the caller's.
        (ExchangeError, 500),
        (TilesError, 500),
    ],
)
def test_each_error_says_its_status(error: type[Exception], status: int) -> None:
    assert status_of(error("message")) == status


def test_a_new_error_inherits_its_parents_status_and_anything_else_is_a_500() -> None:
    class SlideGone(SlideNotFound):
        """A feature's own error: no table to edit."""

    assert status_of(SlideGone("gone")) == 404
    assert status_of(ValueError("bug")) == 500
