"""Slides find their case at ingest (the centre's file-name rule, the lab system's feed),
the feed over HTTP and from the CLI, and the rules' own checks, on a real hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.core.db import Database
from exchange.core.models import AuditEvent, Case, ExpectedSlide
from iain.app import create_app
from iain.settings import Settings
from tests.hub import auth_headers, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"
FILE_RULE = r"^(?P<case>[A-Z]\d{2}-\d{5})_(?P<block>(?P<part>[A-Z])\d+)_(?P<stain>[^_.]+)"


@dataclass
class Hub:
    client: TestClient
    settings: Settings
    admin: dict[str, str]  # Caen's centre admin
    tech: dict[str, str]  # a technician of Caen
    resident: dict[str, str]

    def slide(self, slide_id: str) -> Any:
        response = self.client.get(f"/api/slides/{slide_id}", headers=self.tech)
        assert response.status_code == 200, response.text
        return response.json()

    def set_rules(self, **rules: str | None) -> Any:
        return self.client.put("/api/centres/caen/rules", json=rules, headers=self.admin)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    admin = auth_headers(settings, "admin.caen", centre="caen", roles=("centre_admin",))
    tech = auth_headers(settings, "tech.caen", centre="caen", roles=("technician",))
    resident = auth_headers(settings, "res.caen", centre="caen", roles=("resident",))
    with TestClient(create_app(settings)) as client:
        yield Hub(client, settings, admin, tech, resident)


def named(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "scans" / name
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(sample(SVS), path)
    return path


def test_a_file_name_rule_puts_slides_into_their_case(hub: Hub, tmp_path: Path) -> None:
    assert hub.set_rules(file_name_rule=FILE_RULE).status_code == 200
    he = ingest(hub.settings, named(tmp_path, "B26-00123_A1_HE.svs"))
    her2 = ingest(hub.settings, named(tmp_path, "B26-00123_A2_HER2.svs"))
    other = ingest(hub.settings, named(tmp_path, "scan-0001.svs"))  # matches nothing
    first, second = hub.slide(he), hub.slide(her2)
    assert first["case_id"] == second["case_id"] is not None
    assert (first["case_reference"], first["part"], first["block"], first["stain"]) == (
        "B26-00123",
        "A",
        "A1",
        "HE",
    )
    assert (second["block"], second["stain"], second["link_source"]) == ("A2", "HER2", "file_name")
    assert hub.slide(other)["case_id"] is None
    cases = hub.client.get("/api/cases", headers=hub.tech).json()
    assert [(c["reference"], c["stains"]) for c in cases["items"]] == [
        ("B26-00123", ["HE", "HER2"])
    ]
    unlinked = hub.client.get("/api/slides", params={"linked": "false"}, headers=hub.tech).json()
    assert [s["id"] for s in unlinked["items"]] == [other]


def test_slides_of_one_new_case_ingested_at_once_make_one_case(hub: Hub, tmp_path: Path) -> None:
    assert hub.set_rules(file_name_rule=FILE_RULE).status_code == 200
    paths = [named(tmp_path, f"B26-00999_A{i}_HE.svs") for i in range(1, 5)]
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            ingest(hub.settings, path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    [case] = hub.client.get("/api/cases", headers=hub.tech).json()["items"]
    assert case["reference"] == "B26-00999" and case["slide_count"] == 4


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("(?P<case>[A-Z", "not a regular expression"),
        (r"^(?P<ref>\w+)", "needs a (?P<case>...) group"),
        (r"^(?P<case>\w+)_(?P<patient>\w+)", "unknown groups patient"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(hub: Hub, rule: str, words: str) -> None:
    response = hub.set_rules(file_name_rule=rule)
    assert response.status_code == 400 and words in response.text
    assert (
        hub.client.get("/api/centres/caen/rules", headers=hub.admin).json()["file_name_rule"]
        is None
    )


def test_only_the_centres_admins_set_its_rules(hub: Hub, settings: Settings) -> None:
    assert (
        hub.client.put(
            "/api/centres/caen/rules", json={"file_name_rule": FILE_RULE}, headers=hub.tech
        ).status_code
        == 403
    )
    lille = auth_headers(settings, "admin.lille", centre="lille", roles=("centre_admin",))
    assert (
        hub.client.put(
            "/api/centres/caen/rules", json={"file_name_rule": FILE_RULE}, headers=lille
        ).status_code
        == 403
    )
    assert hub.client.get("/api/centres/paris/rules", headers=hub.admin).status_code == 400


def test_the_lab_system_announces_slides_before_and_after_they_are_scanned(
    hub: Hub, tmp_path: Path
) -> None:
    early = ingest(hub.settings, named(tmp_path, "S-0001.svs"))  # before the record
    records = {
        "records": [
            {
                "reference": "B26-04242",
                "organ": "Sein",
                "specimen_type": "biopsie",
                "received_on": "2026-11-30",
                "status": "in_progress",
                "slides": [
                    {"label": "S-0001.svs", "block": "A1", "stain": "H&E"},
                    {"label": "S-0002", "block": "A1", "level": "2", "stain": "ER"},
                ],
            }
        ]
    }
    pushed = hub.client.post("/api/lis/records", json=records, headers=hub.tech)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json() == {"cases": 1, "slides_linked": 1, "slides_expected": 1}
    late = ingest(hub.settings, named(tmp_path, "S-0002.svs"))  # its stem was announced
    first, second = hub.slide(early), hub.slide(late)
    assert first["case_id"] == second["case_id"] is not None
    assert (second["stain"], second["level"], second["link_source"]) == ("ER", "2", "lis")
    [case] = hub.client.get("/api/cases", headers=hub.tech).json()["items"]
    assert (case["organ"], case["received_on"], case["status"]) == (
        "Sein",
        "2026-11-30",
        "in_progress",
    )
    # The same push again changes nothing.
    again = hub.client.post("/api/lis/records", json=records, headers=hub.tech)
    assert again.status_code == 200
    assert hub.client.get("/api/cases", headers=hub.tech).json()["total"] == 1
    with Database.open(hub.settings.database_url).session() as session:
        assert session.scalar(select(func.count()).select_from(ExpectedSlide)) == 2
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "lis_import"))
        assert len(list(events)) == 2


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"organ": "x"}, "has no reference"),
        ({"reference": "B1", "received_on": "30/11/2026"}, "is no date"),
        ({"reference": "B1", "status": "lost"}, "is none of"),
        ({"reference": "B1", "slides": [{"block": "A1"}]}, "has no label"),
        ({"reference": "---"}, "is no case reference"),
        ({"reference": "B1", "slides": [{"label": "x", "stain": "s" * 200}]}, "longer than"),
    ],
)
def test_a_bad_record_refuses_the_whole_batch(hub: Hub, record: dict[str, Any], words: str) -> None:
    batch = {"records": [{"reference": "B26-00001"}, record]}
    response = hub.client.post("/api/lis/records", json=batch, headers=hub.tech)
    assert response.status_code == 400, response.text
    assert words in response.text
    with Database.open(hub.settings.database_url).session() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0


def test_the_feed_needs_a_role_that_edits_cases(hub: Hub, settings: Settings) -> None:
    teacher = auth_headers(settings, "teach.caen", centre="caen", roles=("teacher",))
    batch = {"records": [{"reference": "B26-00001"}]}
    assert hub.client.post("/api/lis/records", json=batch, headers=teacher).status_code == 403
    assert hub.client.post("/api/lis/records", json=batch, headers=hub.resident).status_code == 200


def test_the_cli_imports_a_csv_export_and_sets_rules(hub: Hub, tmp_path: Path) -> None:
    export = tmp_path / "lis.csv"
    export.write_text(
        "reference,organ,received_on,label,block,stain\n"
        "B26-00777,Côlon,2026-12-01,B26-00777-A1-HE,A1,H&E\n"
        "B26-00777,Côlon,2026-12-01,B26-00777-A1-CK20,A1,CK20\n"
        "B26-00778,Peau,2026-12-02,,,\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "IAIN_HOME": str(hub.settings.home),
        "IAIN_DATABASE_URL": hub.settings.database_url,
        "COLUMNS": "200",
    }
    cli = [sys.executable, "-m", "iain.cli", "cases"]
    done = subprocess.run(
        [*cli, "import", str(export), "--centre", "caen"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "2 case(s); 0 scanned slide(s) linked, 2 expected" in done.stdout
    cases = hub.client.get("/api/cases", headers=hub.tech).json()["items"]
    assert {(c["reference"], c["organ"]) for c in cases} == {
        ("B26-00777", "Côlon"),
        ("B26-00778", "Peau"),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("reference,patient_name\nB1,X\n", encoding="utf-8")
    refused = subprocess.run(
        [*cli, "import", str(bad), "--centre", "caen"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "unknown CSV columns: patient_name" in refused.stderr
    ruled = subprocess.run(
        [*cli, "rules", "caen", "--file-name", FILE_RULE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ruled.returncode == 0, ruled.stderr
    shown = hub.client.get("/api/centres/caen/rules", headers=hub.admin).json()
    assert shown["file_name_rule"] == FILE_RULE
    wrong = subprocess.run(
        [*cli, "rules", "caen", "--barcode", "(?P<x>.*)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "case" in wrong.stderr
