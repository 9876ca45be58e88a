"""What the audit chain's hash covers, so that `verify` notices an edited row: every hashed
field, the previous event's hash, and the moment in UTC (the same event read back from a
database in another zone hashes the same). And what one 'viewing session' of a shared slide is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from exchange.audit.chain import GENESIS, event_hash, hashed_fields, viewing_session
from exchange.core.models import AuditEvent
from exchange.core.principal import Principal, Role

AT = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "seq": 7,
    "at": AT,
    "actor_id": "u1",
    "actor_centre": "caen",
    "action": "grant",
    "target_type": "slide",
    "target_id": "s1",
    "detail": {"purpose": "teaching", "grantee": "lille"},
}


def event(**changes: Any) -> AuditEvent:
    return AuditEvent(**{**FIELDS, **changes}, prev_hash=GENESIS, hash="")


def digest(prev_hash: str = GENESIS, **changes: Any) -> str:
    return event_hash(prev_hash, hashed_fields(event(**changes)))


def test_the_hash_is_a_sha256_that_the_same_event_gives_again() -> None:
    value = digest()
    assert len(value) == 64 and set(value) <= set("0123456789abcdef")
    assert digest() == value


def test_every_field_of_the_event_is_hashed() -> None:
    assert set(hashed_fields(event())) == set(FIELDS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 8),
        ("at", AT + timedelta(microseconds=1)),
        ("actor_id", "u2"),
        ("actor_id", None),
        ("actor_centre", "lille"),
        ("action", "revoke"),
        ("target_type", "case"),
        ("target_id", "s2"),
        ("detail", {"purpose": "second_opinion", "grantee": "lille"}),
        ("detail", {}),
    ],
)
def test_changing_any_hashed_field_changes_the_hash(field: str, value: Any) -> None:
    assert digest(**{field: value}) != digest()


def test_the_hash_depends_on_the_previous_one() -> None:
    assert digest(prev_hash="1" * 64) != digest(prev_hash=GENESIS)


def test_the_order_of_the_detail_keys_does_not_matter() -> None:
    # A JSON column may give the keys back in another order (PostgreSQL's JSONB does).
    assert digest(detail={"grantee": "lille", "purpose": "teaching"}) == digest()


@pytest.mark.parametrize("hours", [1, -5, 14])
def test_the_moment_is_hashed_in_utc_whatever_its_zone(hours: int) -> None:
    elsewhere = AT.astimezone(timezone(timedelta(hours=hours)))
    assert elsewhere.utcoffset() != timedelta(0)
    assert digest(at=elsewhere) == digest()
    assert hashed_fields(event(at=elsewhere))["at"] == "2026-12-07T09:30:15.123456+00:00"


def principal(session_id: str | None = None, token_id: str | None = None) -> Principal:
    roles = frozenset({Role.PATHOLOGIST})
    return Principal("u1", "alice", "lille", roles, token_id=token_id, session_id=session_id)


MORNING = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC)
EVENING = datetime(2026, 12, 7, 23, 59, 59, tzinfo=UTC)


def test_a_browser_session_is_one_viewing_session_whatever_the_day() -> None:
    assert viewing_session(principal(session_id="ls1"), MORNING) == "session:ls1"
    assert viewing_session(principal(session_id="ls1"), MORNING + timedelta(days=3)) == (
        "session:ls1"
    )
    assert viewing_session(principal(session_id="ls2"), MORNING) == "session:ls2"


def test_a_token_is_one_viewing_session_per_utc_day() -> None:
    token = principal(token_id="t1")
    assert viewing_session(token, MORNING) == viewing_session(token, EVENING)
    assert viewing_session(token, EVENING) == "token:t1:2026-12-07"
    assert viewing_session(token, EVENING + timedelta(seconds=1)) == "token:t1:2026-12-08"
    assert viewing_session(principal(token_id="t2"), MORNING) != viewing_session(token, MORNING)
    assert viewing_session(principal(), MORNING) == "user:2026-12-07"


def test_without_a_moment_the_day_is_todays_utc_day() -> None:
    before = datetime.now(UTC).date()
    got = viewing_session(principal(token_id="t1"))
    after = datetime.now(UTC).date()
    assert got in {f"token:t1:{day.isoformat()}" for day in (before, after)}


def test_the_day_of_a_moment_given_in_another_zone_is_its_utc_day() -> None:
    # 23:30 in New York (UTC-5) on the 7th is 04:30 UTC on the 8th.
    new_york = datetime(2026, 12, 7, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert viewing_session(principal(token_id="t1"), new_york) == "token:t1:2026-12-08"
