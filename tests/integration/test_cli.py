"""The `iain` command as a lab technician uses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.testdata import READABLE, REFUSED, TESTDATA, sample

IAIN = [sys.executable, "-m", "iain.cli"]


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "IAIN_HOME": str(home), "COLUMNS": "200", **env}
    return subprocess.run([*IAIN, *args], env=environ, capture_output=True, text=True, timeout=120)


def test_ingest_prints_ids_and_lists_them(tmp_path):
    home = tmp_path / "home"
    result = run(
        ["ingest", str(sample("aperio/CMU-1-Small-Region.svs")), "--centre", "lille"], home
    )
    assert result.returncode == 0, result.stderr
    slide_id = result.stdout.split()[0]
    assert len(slide_id) == 12
    listed = run(["slides"], home)
    assert slide_id in listed.stdout and "lille" in listed.stdout


def test_every_readable_sample_ingests(tmp_path):
    paths = [str(sample(rel)) for rel in READABLE]
    result = run(["ingest", *paths], tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == len(READABLE)


@pytest.mark.parametrize("relative", sorted(REFUSED))
def test_broken_and_unsupported_files_are_refused_with_a_reason(tmp_path, relative):
    result = run(["ingest", str(sample(relative))], tmp_path / "home")
    assert result.returncode == 1
    assert "refused" in result.stderr and REFUSED[relative] in result.stderr
    assert "Traceback" not in result.stderr
    assert run(["slides"], tmp_path / "home").stdout.strip() == ""


def test_unknown_centre_and_missing_file_are_refused(tmp_path):
    home = tmp_path / "home"
    wrong = run(["ingest", str(sample("aperio/small.svs")), "--centre", "paris"], home)
    assert wrong.returncode == 1 and "unknown centre 'paris'" in wrong.stderr
    missing = run(["ingest", str(tmp_path / "nope.svs")], home)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_odd_file_names_work(tmp_path):
    odd = tmp_path / "lame n°3 été (bis) 2.ndpi"
    shutil.copy(sample("hamamatsu/test3-DAPI-2-(387).ndpi"), odd)
    home = tmp_path / "home"
    result = run(["ingest", str(odd)], home)
    assert result.returncode == 0, result.stderr
    assert odd.name in run(["slides"], home).stdout


def test_a_dicom_series_folder_is_one_slide(tmp_path):
    folder = sample("dicom/openslide-boxes")
    result = run(["ingest", str(folder)], tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_answers_and_sees_slides_ingested_meanwhile(tmp_path, unused_port):
    home = tmp_path / "home"
    environ = {**os.environ, "IAIN_HOME": str(home)}
    # A caller, made with the CLI as an administrator would: the hub answers no one else.
    added = run(["users", "add", "p.caen", "--centre", "caen", "--role", "pathologist"], home)
    assert added.returncode == 0, added.stderr
    token = run(["tokens", "create", "p.caen"], home).stdout.split()[0]
    auth = {"Authorization": f"Bearer {token}"}
    server = subprocess.Popen([*IAIN, "serve", "--port", str(unused_port)], env=environ)
    try:
        base = f"http://127.0.0.1:{unused_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/api/slides").status_code == 401
        assert httpx.get(f"{base}/api/slides", headers=auth).json()["items"] == []
        ingested = run(["ingest", str(sample("generic-tiff/boxes.tiff"))], home)
        slide_id = ingested.stdout.split()[0]
        listed = httpx.get(f"{base}/api/slides", headers=auth).json()["items"]
        assert [s["id"] for s in listed] == [slide_id]
        tile = httpx.get(f"{base}/slides/{slide_id}_files/9/0_0.jpeg", headers=auth)
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    finally:
        server.terminate()
        server.wait(10)


def test_production_mode_refuses_the_default_secret(tmp_path):
    result = run(["serve"], tmp_path / "home", IAIN_MODE="production")
    assert result.returncode == 2 and "IAIN_SECRET_KEY" in result.stderr


def test_testdata_location_is_configurable():
    assert TESTDATA.name == "testdata"
