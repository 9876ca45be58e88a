"""Every benchmark script still runs: each on a tiny generated slide, for seconds, so that
none can rot unnoticed (bench/viewer_load.py once waited for a viewer that the login page
never showed). The figures themselves are not checked here: they are measured by hand and
recorded in docs/benchmarks.md. The servers the scripts start for themselves (the
reference, floor and no-auth servers, the load generator) run inside compare_tiles.

They never touch the suite's database: the scripts make their own hubs, so they run in the
SQLite pass only (`-m "not bench"` in the PostgreSQL one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str | Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAIN_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"bench/{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bench/make_slide.py's pyramidal TIFF, at 2048 x 1536 (8 x 6 tiles)."""
    path = tmp_path_factory.mktemp("bench") / "small.tiff"
    run("make_slide.py", "--width", "2048", "--height", "1536", "--out", path, "--quiet")
    assert path.stat().st_size > 100_000
    return path


def test_authorisation_overhead(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "auth.json"
    run("auth_overhead.py", "--slide", slide, "--rounds", "1", "--requests", "50",
        "--distinct", "20", "--json", out)  # fmt: skip
    assert out.is_file() and json.loads(out.read_text())


def test_tile_serving_against_the_references(slide: Path, tmp_path: Path) -> None:
    printed = run("compare_tiles.py", "--slide", slide, "--tiles", "200", "--viewers", "1",
                  "--rss-tiles", "0", "--out", tmp_path)  # fmt: skip
    assert "iain-s3" in printed and "reference" in printed and "floor-asgi" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    # Both protocols, every tile answered (the IIIF runs ask the same tiles by region).
    for name in ("iain-local", "iain-local-iiif", "iain-s3", "iain-s3-iiif"):
        for state in ("cold", "warm"):
            assert results[name][state][0]["errors"] == 0, (name, state)
            assert results[name][state][0]["tiles"] > 0, (name, state)


def test_server_memory_over_a_run(slide: Path, tmp_path: Path) -> None:
    run("rss.py", "--slide", slide, "--requests", "2000", "--chunk", "1000", "--out", tmp_path)
    assert any(tmp_path.iterdir())


def test_conversion_against_libvips(slide: Path) -> None:
    assert '"ours"' in run("convert.py", slide)


@pytest.mark.browser
def test_viewer_load_signs_in_and_times_a_zoom_step() -> None:
    printed = run("viewer_load.py", "--smoke")
    assert printed.count("first complete viewport") == 3 and "zoom step median" in printed


@pytest.mark.browser
def test_viewer_overlay_frames(slide: Path) -> None:
    printed = run("viewer_overlays.py", "--slide", slide, "--frames", "10")
    assert "frame median" in printed


def test_detection_viewports() -> None:
    printed = run("detections.py", "--count", "20000", "--views", "5")
    assert "packed, S3" in printed and "GeoJSON in memory" in printed


def test_inference_on_cpu_pipeline_against_model_only() -> None:
    printed = run("inference_cpu.py", "--quick")
    assert "pipeline, ResNet-18" in printed and "Whole slide" in printed


def test_inference_gpu_script_checks_on_cpu() -> None:
    printed = run("inference_gpu.py", "--device", "cpu", "--quick")
    assert "ResNet-50, pipeline" in printed and "ViT-B/16" in printed
