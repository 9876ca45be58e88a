"""The worklist's pages on a real hub and database (SQLite, or PostgreSQL with
IAIN_TEST_DATABASE=postgresql): cases with their slides, server-side filters, search and
counts, keyset paging (empty, last page, inserts while paging), and the access rules on
every filter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exchange.core.db import Database
from iain.app import create_app
from iain.settings import Settings
from iain.synthetic_catalogue import fill
from tests.hub import auth_headers

CASES = 90  # 30 a centre, about 150 slides


@dataclass
class Worklist:
    client: TestClient
    caen: dict[str, str]  # a pathologist of Caen
    rouen: dict[str, str]  # a pathologist of Rouen
    teacher: dict[str, str]  # a teacher of Caen: the de-identified view at home
    admin: dict[str, str]  # the hub's admin: no slides at all

    def get(self, path: str, who: dict[str, str] | None = None, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=who or self.caen)
        assert response.status_code == 200, response.text
        return response.json()

    def pages(self, path: str, who: dict[str, str] | None = None, **params: Any) -> list[Any]:
        """Every item, page after page."""
        items: list[Any] = []
        cursor = None
        for _ in range(1000):
            page = self.get(path, who, **params, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("the pages never end")


@pytest.fixture
def worklist(settings: Settings) -> Iterator[Worklist]:
    caen = auth_headers(settings, "path.caen", centre="caen")
    rouen = auth_headers(settings, "path.rouen", centre="rouen")
    teacher = auth_headers(settings, "teach.caen", centre="caen", roles=("teacher",))
    admin = auth_headers(settings, "admin.hub", centre="caen", roles=("hub_admin",))
    fill(Database.open(settings.database_url), CASES, slides_per_case=1.7, seed=3)
    with TestClient(create_app(settings)) as client:
        yield Worklist(client, caen, rouen, teacher, admin)


def test_cases_come_with_their_slides_newest_first_and_counted(worklist: Worklist) -> None:
    page = worklist.get("/api/cases", limit=10)
    assert page["total"] == CASES // 3  # Caen's only
    assert len(page["items"]) == 10 and page["next_cursor"]
    days = [c["received_on"] for c in page["items"]]
    assert days == sorted(days, reverse=True)
    for case in page["items"]:
        assert case["centre"] == "caen" and case["view"] == "full"
        assert case["slide_count"] == len(case["slides"]) >= 1
        assert case["slides"][0]["stain"] == "H&E"  # block A1 first
        assert {s["case_id"] for s in case["slides"]} == {case["id"]}
        assert {s["case_reference"] for s in case["slides"]} == {case["reference"]}
        assert set(case["stains"]) == {s["stain"] for s in case["slides"]}


@pytest.mark.parametrize("sort", ["date", "reference", "status"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_visits_every_case_once_in_order(worklist: Worklist, sort: str, order: str) -> None:
    everything = worklist.get("/api/cases", limit=200, sort=sort, order=order)["items"]
    paged = worklist.pages("/api/cases", limit=7, sort=sort, order=order)
    assert [c["id"] for c in paged] == [c["id"] for c in everything]
    assert len(paged) == CASES // 3
    key = {"date": "received_on", "reference": "reference", "status": "status"}[sort]
    values = [c[key] for c in paged]
    assert values == sorted(values, reverse=order == "desc")


def test_an_empty_list_and_an_exact_last_page(worklist: Worklist) -> None:
    empty = worklist.get("/api/cases", q="nothingmatchesthis")
    assert empty == {"items": [], "total": 0, "next_cursor": None}
    first = worklist.get("/api/cases", limit=15)
    second = worklist.get("/api/cases", limit=15, cursor=first["next_cursor"])
    assert len(second["items"]) == 15 and second["next_cursor"] is None  # 30 = 2 x 15


def test_cases_created_while_paging_neither_repeat_nor_shift_the_pages(
    worklist: Worklist, settings: Settings
) -> None:
    first = worklist.get("/api/cases", limit=10, sort="reference", order="asc")
    before = worklist.get("/api/cases", limit=200, sort="reference", order="asc")["items"]
    # New cases, sorting before and after the pages already seen.
    for reference in ("A00-000001", "Z99-999999"):
        created = worklist.client.post(
            "/api/cases", json={"reference": reference}, headers=worklist.caen
        )
        assert created.status_code == 201, created.text
    rest: list[Any] = []
    cursor = first["next_cursor"]
    while cursor:
        page = worklist.get("/api/cases", limit=10, sort="reference", order="asc", cursor=cursor)
        rest += page["items"]
        cursor = page["next_cursor"]
    seen = [c["id"] for c in first["items"] + rest]
    assert len(seen) == len(set(seen))
    old = [c["id"] for c in before]
    assert [i for i in seen if i in old] == old  # every old case once, in order
    assert rest[-1]["reference"] == "Z99-999999"  # after the cursor: on a later page
    assert "A00-000001" not in {c["reference"] for c in first["items"] + rest}


def test_search_is_accent_and_case_insensitive_on_words_and_references(
    worklist: Worklist,
) -> None:
    some = worklist.get("/api/cases", limit=1)["items"][0]
    reference = some["reference"]  # B26-000123 style
    for typed in (reference, reference.lower(), reference.replace("-", ""), reference[:6]):
        found = worklist.get("/api/cases", q=typed)["items"]
        assert some["id"] in {c["id"] for c in found}, typed
        assert all(
            c["reference"].replace("-", "").lower().startswith(typed.replace("-", "").lower())
            for c in found
        ), typed
    created = worklist.client.post(
        "/api/cases",
        json={"reference": "É26-777", "organ": "Côlon sigmoïde"},
        headers=worklist.caen,
    )
    assert created.status_code == 201, created.text
    for typed in ("sigmoide", "SIGMOÏDE", "e26-77", "sigmo côlon"):
        found = worklist.get("/api/cases", q=typed)["items"]
        assert [c["reference"] for c in found] == ["É26-777"], typed


def test_filters_narrow_cases_and_slides_and_counts_agree(worklist: Worklist) -> None:
    cases = worklist.get("/api/cases", limit=200)["items"]
    her2 = [c for c in cases if "HER2" in c["stains"]]
    page = worklist.get("/api/cases", stain="her-2", limit=200)
    assert {c["id"] for c in page["items"]} == {c["id"] for c in her2}
    assert page["total"] == len(her2)
    signed = worklist.get("/api/cases", status="signed_out", limit=200)
    assert signed["total"] == sum(c["status"] == "signed_out" for c in cases)
    day = sorted(c["received_on"] for c in cases)[len(cases) // 2]
    since = worklist.get("/api/cases", since=day, limit=200)["items"]
    assert {c["id"] for c in since} == {c["id"] for c in cases if c["received_on"] >= day}
    organ = cases[0]["organ"]
    assert all(c["organ"] == organ for c in worklist.get("/api/cases", organ=organ)["items"])
    slides = worklist.get("/api/slides", stain="HER2", limit=200)
    assert slides["total"] == sum(s["stain"] == "HER2" for c in cases for s in c["slides"])
    assert all(s["stain"] == "HER2" for s in slides["items"])
    prefix = cases[0]["reference"][:5]
    by_ref = worklist.get("/api/slides", reference=prefix, limit=200)["items"]
    assert by_ref and all(s["case_reference"].startswith(prefix) for s in by_ref)


def test_another_centre_sees_lists_counts_and_finds_nothing_unshared(worklist: Worklist) -> None:
    caen_case = worklist.get("/api/cases", limit=1)["items"][0]
    reference = caen_case["reference"]
    organ = caen_case["organ"]
    every_filter: list[dict[str, Any]] = [
        {},
        {"q": reference},
        {"q": caen_case["slides"][0]["name"][:-4]},
        {"reference": reference[:3]},
        {"centre": "caen"},
        {"stain": "H&E", "centre": "caen"},
        {"status": caen_case["status"]},
        {"organ": organ},
        {"since": "2020-01-01", "until": "2030-01-01"},
        {"shared": "true"},
        {"sort": "reference"},
        {"sort": "status", "order": "asc"},
    ]
    for query in every_filter:
        cases = worklist.get("/api/cases", worklist.rouen, **query, limit=200)
        assert all(c["centre"] == "rouen" for c in cases["items"]), query
        assert cases["total"] == len(cases["items"]) <= CASES // 3, query
        assert "caen" not in str(cases), query
        # A slide's status is its own (ready, converting...), a case's its case's.
        # Slides sort by date or status only.
        of_slides = {**query, "status": "ready"} if "status" in query else query
        if of_slides.get("sort") == "reference":
            of_slides = {**of_slides, "sort": "date"}
        slides = worklist.get("/api/slides", worklist.rouen, **of_slides, limit=200)
        assert all(s["centre"] == "rouen" for s in slides["items"]), query
        assert "caen" not in str(slides), query
    for query in ({"linked": "false"}, {"case": caen_case["id"]}):
        slides = worklist.get("/api/slides", worklist.rouen, **query)
        assert slides["total"] == 0 and slides["items"] == [], query
    for query in ({}, {"q": reference}):
        assert worklist.get("/api/cases", worklist.admin, **query)["total"] == 0
        assert worklist.get("/api/slides", worklist.admin, **query)["total"] == 0
    seen = worklist.client.get(f"/api/cases/{caen_case['id']}", headers=worklist.rouen)
    assert seen.status_code == 404


def test_a_shared_case_is_listed_deidentified_and_found_only_by_public_words(
    worklist: Worklist,
) -> None:
    case = worklist.get("/api/cases", limit=1)["items"][0]
    slide_name = case["slides"][0]["name"]
    granted = worklist.client.post(
        "/api/grants",
        json={"case_id": case["id"], "centre": "rouen", "purpose": "second_opinion"},
        headers=worklist.caen,
    )
    assert granted.status_code == 201, granted.text
    shared = worklist.get("/api/cases", worklist.rouen, shared="true")
    assert shared["total"] == 1
    [seen] = shared["items"]
    assert seen["view"] == "deidentified" and seen["id"] != case["id"]
    assert seen["received_on"] is None and seen["received_year"] == int(case["received_on"][:4])
    assert seen["reference"] == case["reference"]  # the pseudonymous reference
    assert all(s["view"] == "deidentified" and s["name"] == s["id"] for s in seen["slides"])
    assert case["id"] not in str(shared) and slide_name not in str(shared)
    # Found by its reference, not by a word of a file name (which may carry identifiers).
    found = worklist.get("/api/cases", worklist.rouen, q=case["reference"])["items"]
    assert [c["id"] for c in found] == [seen["id"]]
    private_word = slide_name.split("_")[-1].removesuffix(".svs")  # the slide's index
    assert worklist.get("/api/slides", worklist.caen, q=case["reference"])["total"] >= 1
    assert (
        worklist.get("/api/cases", worklist.rouen, q=f"{case['reference']} {private_word}x")[
            "total"
        ]
        == 0
    )
    detail = worklist.get(f"/api/cases/{seen['id']}", worklist.rouen)
    assert detail["slide_count"] == case["slide_count"]
    slides = worklist.get("/api/slides", worklist.rouen, case=seen["id"])
    assert slides["total"] == case["slide_count"]
    # The teacher at home: the de-identified view, no file-name search either.
    taught = worklist.get("/api/cases", worklist.teacher, q=case["reference"])["items"]
    assert taught and taught[0]["view"] == "deidentified"
    assert worklist.get("/api/slides", worklist.teacher, q=slide_name[:-4])["total"] == 0
    assert worklist.get("/api/slides", worklist.caen, q=slide_name[:-4])["total"] == 1


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "invalid request"),
        ({"limit": 100000}, "invalid request"),
        ({"sort": "name"}, "invalid request"),
        ({"since": "yesterday"}, "invalid request"),
        ({"status": "lost"}, "invalid request"),
        ({"reference": "---"}, "letters or digits"),
        ({"q": "x" * 300}, "invalid request"),
    ],
)
def test_bad_list_requests_get_a_400_that_says_why(
    worklist: Worklist, params: dict[str, Any], words: str
) -> None:
    response = worklist.client.get("/api/cases", params=params, headers=worklist.caen)
    assert response.status_code == 400, response.text
    assert words in response.text


def test_a_cursor_of_another_sort_or_list_is_refused(worklist: Worklist) -> None:
    cursor = worklist.get("/api/cases", limit=5)["next_cursor"]
    other = worklist.client.get(
        "/api/cases", params={"cursor": cursor, "sort": "reference"}, headers=worklist.caen
    )
    assert other.status_code == 400 and "another list or sort" in other.text
    slides = worklist.client.get("/api/slides", params={"cursor": cursor}, headers=worklist.caen)
    assert slides.status_code == 400
    tampered = cursor[:-6] + ("A" if cursor[-6] != "A" else "B") + cursor[-5:]
    bad = worklist.client.get("/api/cases", params={"cursor": tampered}, headers=worklist.caen)
    assert bad.status_code == 400


def test_unlinked_slides_are_the_to_be_linked_list(worklist: Worklist) -> None:
    assert worklist.get("/api/slides", linked="false")["total"] == 0
    slide = worklist.get("/api/slides", limit=1)["items"][0]
    unlinked = worklist.client.put(
        f"/api/slides/{slide['id']}/case", json={"case_reference": None}, headers=worklist.caen
    )
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["case_id"] is None
    listed = worklist.get("/api/slides", linked="false")
    assert [s["id"] for s in listed["items"]] == [slide["id"]]
    placed = worklist.client.put(
        f"/api/slides/{slide['id']}/case",
        json={"case_reference": "B26-NEW1", "block": "B2", "stain": "Ki-67"},
        headers=worklist.caen,
    )
    assert placed.status_code == 200, placed.text
    body = placed.json()
    assert (body["case_reference"], body["block"], body["stain"], body["link_source"]) == (
        "B26-NEW1",
        "B2",
        "Ki-67",
        "manual",
    )
    case = worklist.get(f"/api/cases/{body['case_id']}")
    assert case["stains"] == ["Ki-67"] and case["received_on"] == date.today().isoformat()
    assert worklist.get("/api/slides", linked="false")["total"] == 0
