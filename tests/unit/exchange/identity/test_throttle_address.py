"""The login throttle's key for a client address: one per IPv4 address, one per IPv6 /64
(a subscriber usually gets a whole /64: a key per address would give them 2^64 fresh tries),
and an IPv4 client seen through an IPv6 socket counted as that IPv4 address."""

from __future__ import annotations

import pytest

from exchange.identity.login import throttle_address


@pytest.mark.parametrize("address", ["192.0.2.7", "10.0.0.1", "127.0.0.1"])
def test_an_ipv4_address_is_its_own_key(address: str) -> None:
    assert throttle_address(address) == address


def test_two_ipv4_neighbours_are_two_keys() -> None:
    assert throttle_address("192.0.2.7") != throttle_address("192.0.2.8")


def test_an_ipv6_address_is_keyed_by_its_64() -> None:
    assert throttle_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert throttle_address("::1") == "::/64"


def test_every_address_of_one_64_is_the_same_key_and_the_next_64_another() -> None:
    key = throttle_address("2001:db8:1:2::1")
    assert throttle_address("2001:db8:1:2:ffff:ffff:ffff:ffff") == key
    assert throttle_address("2001:DB8:1:2:0:0:0:99") == key  # written differently
    assert throttle_address("2001:db8:1:3::1") != key


def test_an_ipv4_mapped_ipv6_address_is_the_ipv4_client() -> None:
    assert throttle_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert throttle_address("::ffff:c000:207") == "192.0.2.7"  # the same, in hex


@pytest.mark.parametrize("address", ["", "unknown", "testclient", "192.0.2.300", "2001:db8::g"])
def test_what_is_not_an_address_is_kept_as_it_is(address: str) -> None:
    assert throttle_address(address) == address
