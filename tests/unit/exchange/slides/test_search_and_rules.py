"""Folding for search, query words, linking rules and the lab system's CSV: pure functions."""

from __future__ import annotations

import pytest

from exchange.core.statuses import CaseStatus
from exchange.slides.linking import InvalidRule, apply_rule, compile_rule
from exchange.slides.lis import InvalidRecords, records_from_csv, records_from_json
from exchange.slides.search import fold, query_words, reference_key, stain_key, terms


def test_folding_drops_accents_and_case() -> None:
    assert fold("Côlon Sigmoïde ÉPREUVE") == "colon sigmoide epreuve"
    assert reference_key("B26-00123") == reference_key(" b26 00123 ") == "b2600123"
    assert stain_key("HER-2") == stain_key("her2") == stain_key("Her 2") == "her2"
    assert stain_key("  ") is None


def test_terms_hold_each_word_and_the_words_joined() -> None:
    assert terms("B26-00123") == {"b26", "00123", "b2600123"}
    assert terms("H&E") == {"h", "e", "he"}
    assert terms("") == set()
    assert all(len(t) <= 100 for t in terms("x" * 500))


def test_query_words_are_folded_joined_bounded_and_unique() -> None:
    assert query_words("B26-001  côlon") == ["b26001", "colon"]
    assert query_words("colon COLON") == ["colon"]
    assert query_words("%_ ") == []  # LIKE wildcards mean nothing
    assert len(query_words(" ".join(f"w{i}" for i in range(20)))) == 6


RULE = r"^(?P<case>[A-Z]\d{2}-\d{5})_(?P<block>(?P<part>[A-Z])\d+)_(?P<stain>[^_.]+)"


def test_a_rule_reads_case_block_and_stain() -> None:
    read = apply_rule(RULE, "B26-00123_A2_HER2.svs")
    assert read is not None
    reference, placement = read
    assert (reference, placement.part, placement.block, placement.stain) == (
        "B26-00123",
        "A",
        "A2",
        "HER2",
    )
    assert apply_rule(RULE, "scan0001.svs") is None  # a rule that matches nothing
    assert apply_rule(RULE, "B26-00123_A2_HER2" + "x" * 300) is None  # too long to try
    assert apply_rule(None, "B26-00123_A2_HER2.svs") is None
    assert apply_rule("(?P<case>[", "anything") is None  # a broken stored rule is skipped


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("(", "not a regular expression"),
        (r"(?P<block>\w+)", "(?P<case>...)"),
        (r"(?P<case>\w+)(?P<name>\w+)", "unknown groups name"),
        ("x" * 2000, "at most"),
    ],
)
def test_bad_rules_say_why(rule: str, words: str) -> None:
    with pytest.raises(InvalidRule, match=None) as raised:
        compile_rule(rule)
    assert words in raised.value.message


def test_a_csv_export_groups_rows_into_cases() -> None:
    records = records_from_csv(
        "reference,organ,received_on,status,label,block,stain\n"
        "B1,sein,2026-11-30,in_progress,B1-A1-HE,A1,H&E\n"
        "B1,,,,B1-A1-ER,A1,ER\n"
        "B2,peau,2026-12-01,,,,\n"
    )
    assert [r.reference for r in records] == ["B1", "B2"]
    first = records[0]
    assert first.fields.organ == "sein" and first.fields.status is CaseStatus.IN_PROGRESS
    assert [(s.label, s.placement.stain) for s in first.slides] == [
        ("B1-A1-HE", "H&E"),
        ("B1-A1-ER", "ER"),
    ]
    assert records[1].slides == ()


@pytest.mark.parametrize(
    ("items", "words"),
    [
        (["not an object"], "not an object"),
        ([{"reference": 12.5}], "must be text"),
        ([{"reference": "B1", "slides": "x"}], "must be a list"),
        ([{"reference": "B1", "received_on": "2026-13-01"}], "is no date"),
    ],
)
def test_bad_json_records_say_which_and_why(items: list[object], words: str) -> None:
    with pytest.raises(InvalidRecords) as raised:
        records_from_json(items)
    assert words in raised.value.message and "record 1" in raised.value.message
