"""The policy's decisions that need no database: which roles do what, which view a caller
has at home, when a grant is live, who may share. Decisions on grants held in the database
are in tests/integration/test_permissions.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from exchange.access.policy import (
    ANNOTATE_ROLES,
    FULL_VIEW_ROLES,
    GRANT_ROLES,
    OVERLAY_WRITE_ROLES,
    SLIDE_ROLES,
    UPLOAD_ROLES,
    Forbidden,
    Policy,
    SlideAccess,
    home_view,
    is_live,
)
from exchange.core.models import Grant, Slide
from exchange.core.principal import Principal, Role
from exchange.slides.catalogue import Catalogue
from tiles.deid import View

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PUBLIC = "p" * 24
ACTION_ROLES = [ANNOTATE_ROLES, OVERLAY_WRITE_ROLES, UPLOAD_ROLES, GRANT_ROLES]


def caller(*roles: Role, centre: str = "caen") -> Principal:
    return Principal("u1", "alice", centre, frozenset(roles))


def test_hub_admin_alone_sees_and_does_nothing_on_slides() -> None:
    for roles in [FULL_VIEW_ROLES, SLIDE_ROLES, *ACTION_ROLES]:
        assert Role.HUB_ADMIN not in roles


def test_teachers_and_ai_engineers_see_slides_but_never_the_full_view() -> None:
    for role in (Role.TEACHER, Role.AI_ENGINEER):
        assert role in SLIDE_ROLES and role not in FULL_VIEW_ROLES
        assert all(role not in roles for roles in ACTION_ROLES)


def test_whoever_may_act_on_a_slide_has_its_full_view() -> None:
    for roles in ACTION_ROLES:
        assert roles <= FULL_VIEW_ROLES


@pytest.mark.parametrize(
    ("roles", "view"),
    [
        ((Role.PATHOLOGIST,), View.FULL),
        ((Role.RESIDENT,), View.FULL),
        ((Role.TECHNICIAN,), View.FULL),
        ((Role.CENTRE_ADMIN,), View.FULL),
        ((Role.TEACHER,), View.DEIDENTIFIED),
        ((Role.AI_ENGINEER,), View.DEIDENTIFIED),
        ((Role.TEACHER, Role.TECHNICIAN), View.FULL),  # the widest role decides
        ((Role.HUB_ADMIN,), None),
        ((Role.HUB_ADMIN, Role.PATHOLOGIST), View.FULL),
        ((), None),
    ],
)
def test_the_view_of_the_own_centres_slides(roles: tuple[Role, ...], view: View | None) -> None:
    assert home_view(caller(*roles)) is view


def grant(**times: Any) -> Grant:
    return Grant(id="g1", slide_id="s1", grantor_id="u1", grantor_centre="caen", **times)


@pytest.mark.parametrize(
    ("times", "live"),
    [
        ({}, True),  # no expiry
        ({"expires_at": NOW + timedelta(days=30)}, True),
        ({"expires_at": NOW + timedelta(microseconds=1)}, True),
        ({"expires_at": NOW}, False),  # expired at this very moment
        ({"expires_at": NOW - timedelta(days=1)}, False),
        ({"revoked_at": NOW - timedelta(hours=1)}, False),
        ({"revoked_at": NOW - timedelta(hours=1), "expires_at": NOW + timedelta(days=30)}, False),
        ({"revoked_at": NOW + timedelta(hours=1)}, False),  # any revocation ends it
    ],
)
def test_a_grant_is_live_until_it_expires_or_is_revoked(times: dict[str, Any], live: bool) -> None:
    assert is_live(grant(**times), NOW) is live


def test_a_grant_is_live_now_by_default() -> None:
    now = datetime.now(UTC)
    assert is_live(grant(expires_at=now + timedelta(hours=1)))
    assert not is_live(grant(expires_at=now - timedelta(seconds=1)))


class NoCatalogue:
    """A catalogue that must not be asked: these decisions need none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the policy used the catalogue ({name})")


class OneSlide(NoCatalogue):
    """Caen's slide s1 and its de-identified view's id; the grants (a session) must not be
    needed."""

    def __init__(self) -> None:
        self.slide = Slide(id="s1", centre="caen", public_id=PUBLIC)
        self.lookups = 0

    def resolve(self, any_id: str) -> tuple[Slide, View] | None:
        self.lookups += 1
        return {"s1": (self.slide, View.FULL), PUBLIC: (self.slide, View.DEIDENTIFIED)}.get(any_id)


@pytest.fixture
def policy() -> Policy:
    return Policy(cast(Catalogue, NoCatalogue()))


@pytest.mark.parametrize("role", sorted(GRANT_ROLES))
def test_pathologists_and_centre_admins_may_share(policy: Policy, role: Role) -> None:
    policy.may_grant(caller(role))


@pytest.mark.parametrize("role", sorted(set(Role) - GRANT_ROLES))
def test_other_roles_may_not_share(policy: Policy, role: Role) -> None:
    with pytest.raises(Forbidden, match="only pathologists and centre admins") as refused:
        policy.may_grant(caller(role))
    assert refused.value.http_status == 403


@pytest.mark.parametrize("any_id", ["", "a" * 65])
def test_an_id_no_slide_can_have_is_unknown_without_a_lookup(policy: Policy, any_id: str) -> None:
    assert policy.access(caller(Role.PATHOLOGIST), any_id) is None


def test_a_de_identified_access_is_never_addressed_by_the_real_id() -> None:
    slide = Slide(id="s1", public_id=PUBLIC)
    assert SlideAccess(slide, View.FULL).address == "s1"
    assert SlideAccess(slide, View.FULL).full
    assert SlideAccess(slide, View.DEIDENTIFIED).address == PUBLIC
    assert not SlideAccess(slide, View.DEIDENTIFIED).full
    assert SlideAccess(Slide(id="s1", public_id=None), View.DEIDENTIFIED).address == ""


@pytest.mark.parametrize(
    ("roles", "any_id", "view"),
    [
        ((Role.PATHOLOGIST,), "s1", View.FULL),
        ((Role.PATHOLOGIST,), PUBLIC, View.DEIDENTIFIED),  # the id named decides the view
        ((Role.TEACHER,), "s1", None),  # a 404, as for an unknown id
        ((Role.TEACHER,), PUBLIC, View.DEIDENTIFIED),
        ((Role.HUB_ADMIN,), "s1", None),
        ((Role.HUB_ADMIN,), PUBLIC, None),
        ((Role.PATHOLOGIST,), "s2", None),
    ],
)
def test_what_a_caller_sees_of_the_own_centres_slide(
    roles: tuple[Role, ...], any_id: str, view: View | None
) -> None:
    access = Policy(cast(Catalogue, OneSlide())).access(caller(*roles), any_id)
    assert (None if access is None else access.view) is view


def test_another_centre_never_gets_the_real_id_and_a_hub_admin_nothing() -> None:
    # Both answered before any grant is looked up (OneSlide has no session to give).
    policy = Policy(cast(Catalogue, OneSlide()))
    assert policy.access(caller(Role.PATHOLOGIST, centre="lille"), "s1") is None
    assert policy.access(caller(Role.HUB_ADMIN, centre="lille"), PUBLIC) is None


def test_a_decision_is_reused_until_forgotten() -> None:
    catalogue = OneSlide()
    policy = Policy(cast(Catalogue, catalogue), ttl_s=60)
    for _ in range(3):
        assert policy.access(caller(Role.PATHOLOGIST), "s1") is not None
    assert catalogue.lookups == 1
    policy.forget()
    policy.access(caller(Role.PATHOLOGIST), "s1")
    assert catalogue.lookups == 2
