"""The states of a slide and of its conversion, as the API and the viewer read them."""

from __future__ import annotations

import json

import pytest

from exchange.core.statuses import ConversionStatus, SlideStatus, is_viewable


def test_a_status_is_its_plain_string_in_json_and_in_the_database() -> None:
    assert json.dumps({"status": SlideStatus.CONVERTING}) == '{"status": "converting"}'
    assert SlideStatus("failed") is SlideStatus.FAILED
    stored: str = "skipped"  # as a column gives it back
    assert stored == ConversionStatus.SKIPPED


@pytest.mark.parametrize("status", list(SlideStatus))
def test_every_slide_status_is_viewable_the_original_serves(status: SlideStatus) -> None:
    assert status.viewable
    assert is_viewable(str(status))


@pytest.mark.parametrize("stored", ["deleted", "", "READY", " ready"])
def test_a_status_as_stored_that_is_not_known_is_not_viewable(stored: str) -> None:
    assert not is_viewable(stored)


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        (ConversionStatus.QUEUED, False),
        (ConversionStatus.CONVERTING, False),
        (ConversionStatus.READY, True),
        (ConversionStatus.SKIPPED, True),
        (ConversionStatus.FAILED, True),
    ],
)
def test_a_conversion_is_finished_once_ready_skipped_or_failed(
    status: ConversionStatus, finished: bool
) -> None:
    assert status.finished is finished
