"""An AI engineer on the command line: registers a model, runs it on several slides, and a
hospital's IT team adds a worker node with its own token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from tests import database
from tests.hub import ingest, serving, token_for
from tests.inference_kit import PurpleScore, manifest, torchscript_bytes


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return database.settings(tmp_path / "home", tile_cache_mb=16)


def _iain(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IAIN_HOME": str(settings.home),
        "IAIN_DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "iain.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_register_run_on_several_slides_and_a_worker_node_from_the_cli(
    settings: Settings, tmp_path: Path
) -> None:
    slide_file = tmp_path / "he.tiff"
    write_synthetic_slide(slide_file, 2048, 1536, seed=3)
    slides = [ingest(settings, slide_file) for _ in range(3)]
    token = token_for(settings, "engineer.caen", roles=("ai_engineer", "pathologist"))
    artefact = tmp_path / "purple.pt"
    artefact.write_bytes(torchscript_bytes(PurpleScore()))
    good = tmp_path / "purple.json"
    good.write_text(json.dumps(manifest()))
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nversion = "1"\n')

    node = _iain(settings, "workers", "token", "gpu-node-1", "--centre", "caen")
    assert node.returncode == 0, node.stderr
    worker_token = node.stdout.strip()
    assert worker_token.startswith("iain_")
    elsewhere = _iain(settings, "workers", "token", "lille-node", "--centre", "lille")
    lille_token = elsewhere.stdout.strip()

    with serving(settings) as url:
        hub = ["--hub", url, "--token", token]
        refused = _iain(settings, "models", "add", str(artefact), "--manifest", str(bad), *hub)
        assert refused.returncode == 2
        assert "invalid manifest" in refused.stderr and "task" in refused.stderr
        added = _iain(settings, "models", "add", str(artefact), "--manifest", str(good), *hub)
        assert added.returncode == 0, added.stderr
        assert "purple-score 1.0.0" in added.stdout
        listed = _iain(settings, "models", "list", *hub)
        assert "purple-score" in listed.stdout and "research use only" in listed.stdout

        queued = _iain(settings, "jobs", "run", "--model", "purple-score:1.0.0", *slides, *hub)
        assert queued.returncode == 0, queued.stderr
        assert "3 job(s), 3 new" in queued.stdout
        # A node in Lille's network runs Lille's jobs only: it leaves Caen's to Caen's.
        idle = _iain(settings, "worker", "--hub", url, "--token", lille_token, "--burst")
        assert idle.returncode == 0 and "0 job(s) run" in idle.stdout, idle.stderr
        ran = _iain(settings, "worker", "--hub", url, "--token", worker_token, "--burst")
        assert ran.returncode == 0, ran.stderr
        assert "3 job(s) run" in ran.stdout
        waited = _iain(settings, "jobs", "run", "--model", "purple-score", *slides, "--wait", *hub)
        assert waited.returncode == 0, waited.stderr
        assert "3 job(s), 0 new" in waited.stdout and waited.stdout.count(":succeeded:") >= 3
        jobs = _iain(settings, "jobs", "list", "--json", *hub)
        states = [json.loads(line)["state"] for line in jobs.stdout.splitlines()]
        assert states == ["succeeded"] * 3
        unknown = _iain(settings, "jobs", "run", "--model", "nope", slides[0], *hub)
        assert unknown.returncode == 2 and "no model 'nope'" in unknown.stderr
        # A worker's token is no user token: the models API refuses it.
        as_worker = _iain(settings, "models", "list", "--hub", url, "--token", worker_token)
        assert as_worker.returncode == 2 and "worker token" in as_worker.stderr
    no_token = _iain(settings, "worker", "--hub", "http://127.0.0.1:9", "--token", "")
    assert no_token.returncode == 2 and "needs its token" in no_token.stderr
