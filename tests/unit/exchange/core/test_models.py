"""UTCDateTime, the type of every moment column: stored in UTC, read back aware in UTC on
SQLite (which keeps no zone) and PostgreSQL alike; a naive moment is taken as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Dialect

from exchange.core.models import UTCDateTime

NINE_THIRTY_UTC = datetime(2026, 12, 7, 9, 30, 15, 250, tzinfo=UTC)
PARIS_WINTER = timezone(timedelta(hours=1))
# The hub's two databases' dialects (an engine connects only when first used).
SQLITE = create_engine("sqlite://").dialect
DIALECTS = [SQLITE, create_engine("postgresql+psycopg://").dialect]


def same_moment_in_utc(value: datetime | None, expected: datetime) -> None:
    assert value is not None
    assert value == expected
    assert value.utcoffset() == timedelta(0)
    assert (value.hour, value.minute) == (expected.hour, expected.minute)  # the UTC wall clock


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_moment_is_written_in_utc(dialect: Dialect) -> None:
    column = UTCDateTime()
    same_moment_in_utc(column.process_bind_param(NINE_THIRTY_UTC, dialect), NINE_THIRTY_UTC)
    in_paris = datetime(2026, 12, 7, 10, 30, 15, 250, tzinfo=PARIS_WINTER)
    same_moment_in_utc(column.process_bind_param(in_paris, dialect), NINE_THIRTY_UTC)
    naive = datetime(2026, 12, 7, 9, 30, 15, 250)  # taken as UTC, not as the server's zone
    same_moment_in_utc(column.process_bind_param(naive, dialect), NINE_THIRTY_UTC)
    assert column.process_bind_param(None, dialect) is None


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_moment_is_read_back_aware_in_utc(dialect: Dialect) -> None:
    column = UTCDateTime()
    # What SQLite gives back: the UTC wall clock, without a zone.
    naive = datetime(2026, 12, 7, 9, 30, 15, 250)
    same_moment_in_utc(column.process_result_value(naive, dialect), NINE_THIRTY_UTC)
    # What PostgreSQL may give back: the session's zone.
    new_york = datetime(2026, 12, 7, 4, 30, 15, 250, tzinfo=timezone(timedelta(hours=-5)))
    same_moment_in_utc(column.process_result_value(new_york, dialect), NINE_THIRTY_UTC)
    assert column.process_result_value(None, dialect) is None


def test_two_moments_read_back_compare_whatever_their_source() -> None:
    column, dialect = UTCDateTime(), SQLITE
    earlier = column.process_result_value(datetime(2026, 12, 7, 9, 0), dialect)
    later = column.process_result_value(datetime(2026, 12, 7, 10, 0, tzinfo=PARIS_WINTER), dialect)
    assert earlier is not None and later is not None
    assert later - earlier == timedelta(0)  # both 09:00 UTC; naive and aware mixed would raise
