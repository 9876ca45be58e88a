"""Record ids: random lowercase letters and digits, safe in URLs, paths and S3 keys;
`looks_like_id` is the check made before a query on a client's id."""

from __future__ import annotations

import string

import pytest

from exchange.core.ids import looks_like_id, new_id, new_public_id

SAFE = set(string.ascii_lowercase + string.digits)


def test_a_record_id_is_twelve_safe_characters() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(len(i) == 12 and set(i) <= SAFE for i in ids)
    assert len(set(ids)) == 1000  # 62 random bits: no two alike
    assert set("".join(ids)) == SAFE  # every letter and digit turns up: not a narrower alphabet


def test_an_id_may_be_longer_and_a_public_id_is_longer_than_a_record_id() -> None:
    assert len(new_id(16)) == 16 and set(new_id(16)) <= SAFE
    public = new_public_id()
    assert len(public) == 24 and set(public) <= SAFE


def test_every_id_made_looks_like_an_id() -> None:
    assert all(looks_like_id(i) for i in (new_id(), new_id(16), new_public_id()))


@pytest.mark.parametrize("value", ["a", "0", "abc123", "a" * 64])
def test_what_looks_like_an_id(value: str) -> None:
    assert looks_like_id(value)


@pytest.mark.parametrize(
    "value",
    ["", "a" * 65, "ABC", "abc-1", "abc_1", "../etc", "a b", "abc\n", "é", "١٢٣", "a%2f"],
)
def test_what_does_not(value: str) -> None:
    assert not looks_like_id(value)
