"""How a verified ID token's claims become an IAIN user: centre, roles, RPPS number and
username through the configured claim names and value maps; a login that names no known
centre or no IAIN role is refused (403) with a reason the login page can show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exchange.identity.oidc import (
    Claimed,
    OidcClient,
    OidcConfig,
    OidcRefused,
    _strings,
    _username,
)

ISSUER = "https://psc.example.fr/realms/c3/"
CENTRES = {"caen", "lille", "rouen"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"mapping claims sent a request: {request.url}")

    with httpx.Client(transport=httpx.MockTransport(no_network)) as client:
        yield client


def claimed(http: httpx.Client, claims: dict[str, Any], **config: Any) -> Claimed:
    client = OidcClient(OidcConfig(ISSUER, "iain", "secret", **config), b"key", http=http)
    return client.claimed({"sub": "f:550e8400", **claims}, CENTRES)


def refusal(http: httpx.Client, claims: dict[str, Any], **config: Any) -> OidcRefused:
    with pytest.raises(OidcRefused) as refused:
        claimed(http, claims, **config)
    assert refused.value.http_status == 403
    return refused.value


ALICE = {
    "preferred_username": "Alice.Martin",
    "name": "Alice Martin",
    "centre": "caen",
    "roles": ["pathologist"],
    "rpps": "10001234567",
}


def test_a_provider_account_with_the_default_claims(http: httpx.Client) -> None:
    assert claimed(http, ALICE) == Claimed(
        subject="https://psc.example.fr/realms/c3|f:550e8400",  # no trailing slash
        username="alice.martin",
        display_name="Alice Martin",
        centre="caen",
        roles=["pathologist"],
        rpps="10001234567",
    )


EMAIL = "a.martin@chu-caen.fr"


def test_claim_names_and_value_maps_come_from_the_configuration(http: httpx.Client) -> None:
    claims = {"org": "CFB-14", "groups": "ANAPATH enseignant", "email": EMAIL}
    user = claimed(
        http,
        claims,
        centre_claim="org",
        roles_claim="groups",
        username_claim="email",
        centre_map={"CFB-14": "caen"},
        role_map={"ANAPATH": "pathologist", "enseignant": "teacher"},
    )
    assert (user.centre, user.roles, user.username) == ("caen", ["pathologist", "teacher"], EMAIL)
    # A value the map does not name is taken as it is.
    lille = claimed(http, {**ALICE, "centre": "lille"}, centre_map={"CFB-14": "caen"})
    assert lille.centre == "lille"


def test_roles_are_normalised_deduplicated_and_unknown_ones_dropped(http: httpx.Client) -> None:
    roles = ["Centre-Admin", "PATHOLOGIST", "pathologist", "secretary", " teacher "]
    user = claimed(http, {**ALICE, "roles": roles})
    assert user.roles == ["centre_admin", "pathologist", "teacher"]
    assert claimed(http, {**ALICE, "roles": "resident ai-engineer"}).roles == [
        "resident",
        "ai_engineer",
    ]


@pytest.mark.parametrize(
    "centre", ["bordeaux", "", None, ["caen"], 14], ids=["unknown", "empty", "none", "list", "int"]
)
def test_a_login_naming_no_known_centre_is_refused(http: httpx.Client, centre: Any) -> None:
    refused = refusal(http, {**ALICE, "centre": centre})
    assert refused.reason == "unknown_centre"
    if centre == "bordeaux":
        assert "'bordeaux'" in refused.message and "caen, lille, rouen" in refused.message


def test_a_centre_map_to_an_unknown_centre_is_refused(http: httpx.Client) -> None:
    assert refusal(http, ALICE, centre_map={"caen": "paris"}).reason == "unknown_centre"


@pytest.mark.parametrize(
    "roles",
    [["secretary"], [], "", None, {"pathologist": True}, 3],
    ids=["unknown", "empty-list", "empty-text", "none", "object", "int"],
)
def test_a_login_with_no_iain_role_is_refused(http: httpx.Client, roles: Any) -> None:
    refused = refusal(http, {**ALICE, "roles": roles})
    assert refused.reason == "no_role"
    assert "'roles'" in refused.message


def test_a_role_map_to_no_iain_role_is_refused(http: httpx.Client) -> None:
    assert refusal(http, ALICE, role_map={"pathologist": "anapath"}).reason == "no_role"


@pytest.mark.parametrize(
    ("rpps", "kept"),
    [
        ("10001234567", "10001234567"),
        (10001234567, "10001234567"),  # a number claim
        ("81010001234567", None),  # prefixed (an ADELI/RPPS type digit): not kept
        ("1000123456", None),  # 10 digits
        ("1000123456a", None),
        (None, None),
    ],
)
def test_only_an_eleven_digit_rpps_is_kept(http: httpx.Client, rpps: Any, kept: str | None) -> None:
    assert claimed(http, {**ALICE, "rpps": rpps}).rpps == kept


def test_the_username_falls_back_to_the_email_then_the_subject(http: httpx.Client) -> None:
    base = {k: v for k, v in ALICE.items() if k != "preferred_username"}
    assert claimed(http, {**base, "email": "Alice@CHU.fr"}).username == "alice@chu.fr"
    assert claimed(http, base).username == "f-550e8400"  # "f:550e8400" made safe


def test_the_display_name_is_cut_to_what_the_column_holds(http: httpx.Client) -> None:
    assert claimed(http, {**ALICE, "name": "x" * 500}).display_name == "x" * 200
    assert claimed(http, {k: v for k, v in ALICE.items() if k != "name"}).display_name == ""


@pytest.mark.parametrize(
    ("wanted", "username"),
    [
        ("Jean.Dupont@chu-caen.fr", "jean.dupont@chu-caen.fr"),
        ("  Jean Dupont  ", "jean-dupont"),
        ("jean/dupont", "jean-dupont"),
        ("--jean--", "jean"),
        ("a", "a-user"),
        ("", "user"),
        ("@@@", "user"),
        ("x" * 300, "x" * 150),
    ],
)
def test_usernames_are_made_safe(wanted: str, username: str) -> None:
    assert _username(wanted) == username


def test_a_claim_as_a_list_of_strings() -> None:
    assert _strings("a b  c") == ["a", "b", "c"]
    assert _strings(["a b", 1]) == ["a b", "1"]
    assert _strings(None) == []
    assert _strings({"a": 1}) == []


def test_accented_names_keep_their_letters_in_the_username() -> None:
    assert _username("Hélène Lefèvre") == "helene-lefevre"
    assert _username("Zoë Ørsted") == "zoe-rsted"  # Ø has no plain-ASCII decomposition
