"""`iain demo` prepares embedded defaults with sample slides, once."""

from __future__ import annotations

import io

from rich.console import Console

from iain.demo import DEMO_CASES, SAMPLES, SYNTHETIC_NAME, prepare_demo
from iain.settings import Settings
from tests.hub import hub_client
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
