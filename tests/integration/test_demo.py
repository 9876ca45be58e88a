"""`iain demo` prepares embedded defaults with sample slides, once."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from iain.demo import DEMO_CASES, SAMPLES, SYNTHETIC_NAME, prepare_demo
from iain.embedded_worker import EmbeddedWorker
from iain.settings import Settings
from tests.hub import hub_client, serving
from tests.testdata import TESTDATA


def test_demo_ingests_a_synthetic_slide_and_the_samples_once(tmp_path):
    settings = Settings(home=tmp_path / "home", testdata=TESTDATA)
    output = io.StringIO()
    prepare_demo(settings, Console(file=output), synthetic_size=(3000, 2000))
    prepare_demo(settings, Console(file=output), synthetic_size=(3000, 2000))
    # Each centre's pathologist sees their centre's demo slides; together, all of them.
    slides = []
    for centre, _format, demo_cases in DEMO_CASES:
        with hub_client(settings, f"pathologist.{centre}", centre=centre) as other:
            own = other.get("/api/slides", params={"limit": 200}).json()["items"]
            assert {s["centre"] for s in own} <= {centre}
            slides += own
            # A realistic worklist: the centre's cases, each an H&E and an IHC slide whose
            # case, block and stain were read from the label's barcode at ingest.
            cases = other.get("/api/cases").json()["items"]
            assert [c["reference"] for c in cases] == [c[0] for c in demo_cases]
            for case, (_ref, organ, _spec, received, status, marker) in zip(
                cases, demo_cases, strict=True
            ):
                assert (case["organ"], case["received_on"], case["status"]) == (
                    organ,
                    received,
                    status,
                )
                assert case["stains"] == ["H&E", marker]
                assert {s["link_source"] for s in case["slides"]} == {"barcode"}
                assert {s["block"] for s in case["slides"]} == {"A1"}
    names = sorted(s["name"] for s in slides)
    expected = {SYNTHETIC_NAME}
    for _centre, _format, demo_cases in DEMO_CASES:
        for reference, *_rest, marker in demo_cases:
            stem = f"scan-{reference.replace('.', '-')}"
            expected |= {f"{stem}-HE.svs", f"{stem}-{marker}.svs"}
    if TESTDATA.is_dir():
        expected |= {rel.rsplit("/", 1)[1] for rel, _ in SAMPLES}
    assert sorted(expected) == names  # the second run added nothing
    with hub_client(settings) as client:
        synthetic = next(s for s in slides if s["name"] == SYNTHETIC_NAME)
        assert (synthetic["width"], synthetic["height"]) == (3000, 2000)
        assert synthetic["mpp"] == 0.25
        tile = client.get(f"/slides/{synthetic['id']}_files/12/5_3.jpeg")
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"


def test_demo_without_sample_data_serves_the_synthetic_slide(tmp_path):
    settings = Settings(home=tmp_path / "home", testdata=tmp_path / "absent")
    output = io.StringIO()
    prepare_demo(settings, Console(file=output), synthetic_size=(1000, 800))
    assert "synthetic slide only" in output.getvalue()
    with hub_client(settings) as client:
        listed = client.get("/api/slides", params={"linked": "false"}).json()["items"]
        assert [s["name"] for s in listed] == [SYNTHETIC_NAME]  # to be linked


def test_the_demo_trains_its_model_and_runs_it_at_start_up(tmp_path: Path) -> None:
    """The demo's heatmaps are real results: a classifier trained from a demo pathologist's
    annotations, run over the synthetic slide by the embedded worker (a child process)."""
    settings = Settings(home=tmp_path / "home", testdata=tmp_path / "absent")
    output = io.StringIO()
    prepare_demo(settings, Console(file=output, width=200), synthetic_size=(8192, 6144))
    assert "queued: train demo-tumour-vs-stroma" in output.getvalue()
    with serving(settings) as url:
        worker = EmbeddedWorker(settings, url)
        worker.start()
        try:
            with hub_client(settings, "caen.pathologist") as client:
                deadline = time.monotonic() + 240
                while True:
                    jobs = client.get("/api/inference/jobs").json()
                    states = {(j["kind"], j["state"]) for j in jobs}
                    if states == {("training", "succeeded"), ("inference", "succeeded")}:
                        break
                    assert not any(j["state"] == "failed" for j in jobs), jobs
                    assert time.monotonic() < deadline, jobs
                    time.sleep(1)
                synthetic = next(
                    s
                    for s in client.get("/api/slides", params={"limit": 200}).json()["items"]
                    if s["name"] == SYNTHETIC_NAME
                )
                overlays = client.get(f"/api/slides/{synthetic['id']}/overlays").json()
        finally:
            worker.stop()
    names = [o["name"] for o in overlays]
    assert "Cells" in names
    assert any(n.startswith("demo-tumour-vs-stroma") and n.endswith(": tumour") for n in names)
    assert any(n.startswith("Tissue (demo-tumour-vs-stroma") for n in names)
    info = next(o["info"] for o in overlays if o["name"].endswith(": tumour"))
    assert info["model"]["intended_use"] == "research use only"
    assert info["provenance"]["slide_content_hash"]
    # A second start queues nothing again.
    again = io.StringIO()
    prepare_demo(settings, Console(file=again, width=200), synthetic_size=(8192, 6144))
    assert "queued" not in again.getvalue()
