"""The AI panel in the browser: a pathologist runs a registered model on a slide, follows the
job live, and sees its heatmap switched on with its summary figures and provenance; a job
drawn on a region is cancelled and retried; a model is trained from a slide's annotations,
then runs over it, and its heatmap is cut at a threshold.

The hub runs in this process (tests/hub.py `serving`), with a tiny TorchScript model
(tests/inference_kit.py PurpleScore) registered by an AI engineer; the worker is the real
one (inference.worker), pulling jobs over HTTP in a thread, started only by the tests that
want a job to run. Browser, tab and prerequisites are test_viewer.py's."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from iain.settings import Settings
from iain.synthetic import Region, write_synthetic_slide, write_tissue_regions_slide
from inference.hub_client import HubClient
from inference.worker import Worker, WorkerConfig
from tests import database
from tests.browser import test_viewer
from tests.browser.test_viewer import (
    LOAD_TIMEOUT_MS,
    SCREENSHOTS,
    VIEWPORT,
    Hub,
    Tab,
    _require_prerequisites,
    wait_fully_loaded,
)
from tests.hub import ingest, serving, token_for
from tests.inference_kit import PurpleScore, manifest, register, torchscript_bytes, worker_token

pytestmark = pytest.mark.browser

playwright = test_viewer.playwright
browser = test_viewer.browser
tab = test_viewer.tab

WIDTH, HEIGHT = 4096, 3072
# The slide a model is trained on: tumour and stroma where iain.synthetic says they are.
REGIONS_NAME = "regions-HE.tiff"
REGIONS_SIZE = (8192, 6144)
REGIONS_MPP = 0.5
TRAIN_SQUARES = 2  # per class, 300 µm (600 px) a side
TRAIN_TIMEOUT_MS = 180_000
# A tile read of the worker takes this long: the job runs for a few heartbeats (2 s each),
# so the panel sees it running, with its progress, before it ends.
SLOW_TILE_S = 1.0
JOB_TIMEOUT_MS = 60_000


class SlowHub(HubClient):
    """The hub as a worker sees it, with slow tile reads."""

    def tile(self, *args: Any, **kwargs: Any) -> bytes:
        time.sleep(SLOW_TILE_S)
        return super().tile(*args, **kwargs)


@dataclass
class AiHub(Hub):
    settings: Settings | None = None
    model: dict[str, Any] = field(default_factory=dict)
    # The regions slide, and the squares of each class to annotate on it.
    regions: dict[str, Any] = field(default_factory=dict)
    squares: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def hub_settings(self) -> Settings:
        assert self.settings is not None
        return self.settings


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AiHub]:
    _require_prerequisites()
    home = tmp_path_factory.mktemp("ai-hub")
    settings = database.settings(home / ".iain", convert_worker=False)
    path = home / "synthetic-HE.tiff"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=3)
    slide_id = ingest(settings, path)
    regions_path = home / REGIONS_NAME
    truth = write_tissue_regions_slide(regions_path, *REGIONS_SIZE, seed=5, mpp=REGIONS_MPP)
    regions_id = ingest(settings, regions_path)
    squares = {
        "tumour": truth.region_polygons(Region.TUMOUR, TRAIN_SQUARES, side_um=300),
        "stroma": truth.region_polygons(Region.STROMA, TRAIN_SQUARES, side_um=300),
    }
    with serving(settings) as url:
        engineer = token_for(settings, "ai.caen", roles=("ai_engineer",))
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {engineer}"}, timeout=30
        ) as client:
            model = register(client, torchscript_bytes(PurpleScore()), manifest())
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        slide = httpx.get(f"{url}/api/slides/{slide_id}", headers=headers, timeout=30).json()
        regions = httpx.get(f"{url}/api/slides/{regions_id}", headers=headers, timeout=30).json()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield AiHub(
            url,
            {slide["name"]: slide},
            headers=headers,
            settings=settings,
            model=model,
            regions=regions,
            squares=squares,
        )


def _worker_starter(client: HubClient, config: WorkerConfig) -> Iterator[Callable[[], Worker]]:
    """Starts the worker (in a thread) when the test calls it; stops it, and waits for it to
    stop, at the end: no later test's job is claimed by it."""
    worker = Worker(client, config)
    threads: list[threading.Thread] = []

    def start() -> Worker:
        thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
        thread.start()
        threads.append(thread)
        return worker

    yield start
    worker.stopping.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"
    client.close()


@pytest.fixture
def start_worker(hub: AiHub, tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """A worker with slow tile reads: its job is seen running."""
    client = SlowHub(hub.url, worker_token(hub.hub_settings))
    config = WorkerConfig(burst=False, wait_s=1, cache_dir=tmp_path / "w", tile_threads=1)
    yield from _worker_starter(client, config)


@pytest.fixture
def start_fast_worker(hub: AiHub, tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """A worker at full speed: it trains a model, then runs it over a large slide."""
    client = HubClient(hub.url, worker_token(hub.hub_settings))
    config = WorkerConfig(burst=False, wait_s=1, cache_dir=tmp_path / "w", tile_threads=4)
    yield from _worker_starter(client, config)


def _slide(hub: Hub) -> dict[str, Any]:
    return next(iter(hub.slides.values()))


def _open_panel(page: Page, hub: Hub) -> None:
    page.goto(f"{hub.url}/viewer/{_slide(hub)['id']}")
    wait_fully_loaded(page)
    page.evaluate("() => window.iain.ai.ready")
    button = page.locator(".ai-button")
    expect(button).to_be_visible()
    button.click()
    expect(page.get_by_test_id("ai-panel")).to_be_visible()


def _record_states(page: Page) -> None:
    """Every state a job of the list shows, in order, kept in window.aiStates."""
    page.evaluate(
        """() => {
            window.aiStates = [];
            const note = () => {
                for (const e of document.querySelectorAll('.ai-job[data-state]')) {
                    const s = e.dataset.state, p = e.querySelector('.ai-job-progress');
                    const text = s + ' ' + (p ? p.textContent : '');
                    if (window.aiStates.at(-1) !== text) window.aiStates.push(text);
                }
            };
            note();
            new MutationObserver(note).observe(document.querySelector('.ai-job-list'),
                {childList: true, subtree: true, attributes: true, characterData: true});
        }"""
    )


def _uncaught(page: Page) -> list[str]:
    """The page's uncaught errors, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _job(page: Page, index: int = 0) -> dict[str, Any]:
    job: dict[str, Any] = page.evaluate(f"() => window.iain.ai.jobs[{index}]")
    return job


def test_run_on_whole_slide_shows_progress_then_heatmap_summary_and_provenance(
    hub: AiHub, tab: Tab, start_worker: Callable[[], Worker]
) -> None:
    page = tab.page
    _open_panel(page, hub)

    # The model, what it may be used for, and its licence.
    item = page.locator(".ai-model").filter(has_text="purple-score")
    expect(item).to_have_count(1)
    expect(item.locator(".ai-model-version")).to_have_text("1.0.0")
    badge = item.locator(".intended-use")
    expect(badge).to_have_text("Research use only")
    assert badge.get_attribute("data-intended-use") == "research use only"
    expect(item.locator(".ai-model-facts")).to_contain_text("Licence Apache-2.0")

    # Queued while no worker runs; the panel asks the hub again and again meanwhile.
    page.get_by_role("button", name="Run on whole slide").click()
    job_item = page.locator(".ai-job").first
    expect(job_item).to_have_attribute("data-state", "queued")
    expect(job_item.locator(".ai-job-progress")).to_have_text("Waiting for a worker…")
    expect(job_item.locator(".ai-cancel")).to_be_visible()
    assert page.evaluate("() => window.iain.ai.polling")
    _record_states(page)

    start_worker()
    expect(job_item).to_have_attribute("data-state", "running", timeout=JOB_TIMEOUT_MS)
    expect(job_item.locator("progress")).to_be_visible()
    expect(job_item.locator(".ai-job-progress")).to_contain_text("patches")
    page.screenshot(path=str(SCREENSHOTS / "ai-panel-running.png"))
    expect(job_item).to_have_attribute("data-state", "succeeded", timeout=JOB_TIMEOUT_MS)
    states = page.evaluate("() => window.aiStates")
    assert [s.split()[0] for s in states][:1] == ["queued"], states
    assert any(s.startswith("running") for s in states), states
    page.wait_for_function("() => !window.iain.ai.polling")

    job = _job(page)
    assert job["state"] == "succeeded" and job["mine"]
    heatmap_id = job["overlay_ids"][0]

    # Its heatmap: listed in the layers panel, switched on, and its tiles asked for.
    page.wait_for_function(
        "(id) => window.iain.overlays.layers.some(l => l.info.id === id && l.visible)",
        arg=heatmap_id,
    )
    row = page.locator(f'.overlay-item[data-overlay-id="{heatmap_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("input[type=checkbox]")).to_be_checked()
    expect(row.get_by_test_id("overlay-ramp")).to_be_visible()
    # Which model made it, and what for, under its legend and threshold.
    layer_row = page.locator(f'.overlay-layer[data-layer-id="{heatmap_id}"]')
    expect(layer_row.locator(".overlay-source .intended-use")).to_have_text("Research use only")
    # The job's other result (its tissue mask) is listed, off.
    for other in job["overlay_ids"][1:]:
        expect(
            page.locator(f'.overlay-item[data-overlay-id="{other}"] input[type=checkbox]')
        ).not_to_be_checked()
    page.wait_for_function(
        """(id) => {
            const layer = window.iain.overlays.layers.find(l => l.info.id === id);
            return layer.item && layer.item.getOpacity() > 0 && layer.item.getFullyLoaded();
        }""",
        arg=heatmap_id,
    )
    tiles = [(u, s) for u, s in tab.tile_responses if f"/overlays/{heatmap_id}_files/" in u]
    assert tiles and all(status == 200 for _, status in tiles), tiles

    # The result: intended use, summary figures, provenance.
    result = job_item.locator(".ai-result")
    expect(result).to_have_attribute("open", "")
    expect(result.locator(".intended-use-notice")).to_contain_text("not for diagnosis")
    expect(result.locator(".ai-show")).to_have_text("Shown on the slide")
    summary = job["summary"]
    assert summary["patches"] > 0 and summary["tissue_area_mm2"] > 0
    expect(result.locator('[data-field="tissue-area"]')).to_contain_text("mm²")
    expect(result.locator('[data-field="patches"]')).to_have_text(str(summary["patches"]))
    for name, figures in summary["classes"].items():
        cells = result.locator(f'.ai-classes tr[data-class="{name}"] td')
        expect(cells.nth(0)).to_have_text(name)
        expect(cells.nth(1)).to_contain_text("mm²")
        expect(cells.nth(2)).to_have_text(str(figures["patches"]))
    provenance = job["provenance"]
    sha = result.locator('[data-field="sha256"]')
    assert sha.inner_text().startswith(hub.model["sha256"][:12])
    assert sha.get_attribute("title") == hub.model["sha256"] == provenance["model_sha256"]
    expect(result.locator('[data-field="device"]')).to_have_text(provenance["device"])
    expect(result.locator('[data-field="code"]')).to_have_text(provenance["code_version"])
    expect(result.locator('[data-field="durations"]')).to_contain_text("total")
    page.screenshot(path=str(SCREENSHOTS / "ai-panel.png"))

    # The button switches the heatmap off and on again.
    result.locator(".ai-show").click()
    expect(row.locator("input[type=checkbox]")).not_to_be_checked()
    result.locator(".ai-show").click()
    expect(row.locator("input[type=checkbox]")).to_be_checked()

    # Running it again gives the same job back: nothing queued twice.
    count = page.evaluate("() => window.iain.ai.jobs.length")
    page.get_by_role("button", name="Run on whole slide").click()
    expect(page.locator(".ai-message")).to_contain_text("already ran")
    assert page.evaluate("() => window.iain.ai.jobs.length") == count

    # The list of the user's jobs, over every slide.
    page.locator('.ai-scope [data-scope="mine"]').click()
    expect(page.locator('.ai-scope [data-scope="mine"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f'.ai-job[data-job-id="{job["id"]}"]')).to_be_visible()
    tab.assert_no_console_errors()


def test_region_job_is_cancelled_and_retried(hub: AiHub, tab: Tab) -> None:
    """No worker runs here: the job stays queued until cancelled."""
    page = tab.page
    _open_panel(page, hub)
    slide = _slide(hub)
    before = {j["id"] for j in page.evaluate("() => window.iain.ai.jobs")}

    # Esc gives the rectangle up: nothing queued.
    page.get_by_role("button", name="Run on a drawn region").click()
    expect(page.locator(".ai-message")).to_contain_text("Drag a rectangle")
    page.keyboard.press("Escape")
    expect(page.locator(".ai-message")).to_have_text("No region drawn: nothing queued.")

    # A rectangle dragged on the slide is the job's region (and no annotation).
    page.get_by_role("button", name="Run on a drawn region").click()
    box = page.locator("#osd").bounding_box()
    assert box is not None
    x, y = box["x"] + 350, box["y"] + 250
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 160, y + 120, steps=8)
    page.mouse.up()
    expect(page.locator(".ai-message")).to_have_text("Queued: a worker will pick it up.")
    page.wait_for_function("(n) => window.iain.ai.jobs.length === n", arg=len(before) + 1)
    job = _job(page)
    assert job["id"] not in before and job["state"] == "queued"
    rx, ry, rw, rh = job["params"]["region"]
    assert min(rx, ry) >= 0 and min(rw, rh) > 100
    assert rx + rw <= slide["width"] and ry + rh <= slide["height"]
    assert page.evaluate("() => window.iain.annotations.store.features.length") == 0
    item = page.locator(f'.ai-job[data-job-id="{job["id"]}"]')
    expect(item.locator(".ai-job-meta")).to_contain_text(f"Region {rw:,} × {rh:,} px")

    item.locator(".ai-cancel").click()
    expect(item).to_have_attribute("data-state", "cancelled")
    expect(item.get_by_test_id("ai-job-state")).to_have_text("Cancelled")
    expect(item.locator(".ai-cancel")).to_have_count(0)
    item.locator(".ai-retry").click()
    expect(item).to_have_attribute("data-state", "queued")
    assert page.evaluate("() => window.iain.ai.polling")
    item.locator(".ai-cancel").click()
    expect(item).to_have_attribute("data-state", "cancelled")
    page.wait_for_function("() => !window.iain.ai.polling")
    tab.assert_no_console_errors()


def test_french_panel_and_no_button_for_roles_that_run_no_model(
    hub: AiHub, browser: Browser
) -> None:
    slide = _slide(hub)
    technician = {
        "Authorization": f"Bearer {token_for(hub.hub_settings, 'tech.caen', roles=('technician',))}"
    }
    for headers, language in ((hub.headers, "fr"), (technician, "en")):
        context = browser.new_context(viewport=VIEWPORT, extra_http_headers=headers)  # type: ignore[arg-type]
        context.add_init_script(f"localStorage.setItem('iain.language', '{language}')")
        page = context.new_page()
        page.set_default_timeout(LOAD_TIMEOUT_MS)
        errors = _uncaught(page)
        try:
            page.goto(f"{hub.url}/viewer/{slide['id']}")
            wait_fully_loaded(page)
            page.evaluate("() => window.iain.ai.ready")
            if language == "en":
                # The hub answers 404 to a technician's /api/models: no button.
                expect(page.locator(".ai-button")).to_be_hidden()
                continue
            page.locator(".ai-button").click()
            panel = page.get_by_test_id("ai-panel")
            expect(panel.locator("h2")).to_have_text("Aide par IA")
            expect(panel.locator(".ai-model .intended-use")).to_have_text("Recherche uniquement")
            expect(panel.get_by_role("button", name="Lancer sur la lame entière")).to_be_visible()
            expect(panel.locator(".ai-jobs h3")).to_have_text("Tâches")
            page.screenshot(path=str(SCREENSHOTS / "ai-panel-fr.png"))
        finally:
            context.close()
        assert errors == []


def _annotate(hub: AiHub, label: str, squares: list[Any]) -> None:
    """Rectangles over `squares` (level-0 corners), labelled, as the user drew them."""
    for square in squares:
        ring = [[x, y] for x, y in square] + [list(square[0])]
        feature = {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"label": label, "kind": "rectangle"},
        }
        response = httpx.post(
            f"{hub.url}/api/slides/{hub.regions['id']}/annotations",
            json=feature,
            headers=hub.headers,
            timeout=30,
        )
        assert response.status_code == 201, response.text


def _heatmap_loaded_at(page: Page, overlay_id: str, threshold: int) -> None:
    """Until the heatmap's image is the one cut at `threshold`, with every tile of the view."""
    page.wait_for_function(
        """([id, threshold]) => {
            const layer = window.iain.overlays.layers.find(l => l.info.id === id);
            if (!layer || layer.threshold !== threshold || layer.next || !layer.item) return false;
            // OpenSeadragon keeps the descriptor's query as it matched it (an array).
            const query = String(layer.item.source.queryParams || "");
            const cut = threshold > 0 ? query.includes(`threshold=${threshold}`) : query === "";
            return cut && layer.item.getFullyLoaded();
        }""",
        arg=[overlay_id, threshold],
        timeout=JOB_TIMEOUT_MS,
    )


def test_train_from_annotations_then_run_then_threshold_the_heatmap(
    hub: AiHub, tab: Tab, start_fast_worker: Callable[[], Worker]
) -> None:
    """Runs after the other tests of the module: the model it trains is then registered."""
    page = tab.page
    regions = hub.regions
    _annotate(hub, "tumour", hub.squares["tumour"])
    _annotate(hub, "stroma", hub.squares["stroma"])
    page.goto(f"{hub.url}/viewer/{regions['id']}")
    wait_fully_loaded(page)
    page.evaluate("() => window.iain.ai.ready")
    page.locator(".ai-button").click()
    panel = page.get_by_test_id("ai-panel")
    train = panel.get_by_test_id("ai-train")
    # Models are registered: the section starts closed.
    expect(train).not_to_have_attribute("open", "")
    train.locator("summary").click()

    # The labels of the area annotations, with how many; the name made from them.
    labels = train.get_by_test_id("ai-train-labels")
    for label in ("tumour", "stroma"):
        item = labels.locator(f'li[data-label="{label}"]')
        expect(item.locator(".ai-train-label")).to_have_text(label)
        expect(item.locator(".ai-train-count")).to_have_text(f"{TRAIN_SQUARES} areas")
    name = train.get_by_role("textbox", name="Model name")
    expect(name).to_have_value("tumour-vs-stroma")
    run = train.get_by_role("button", name="Train and run")
    expect(run).to_be_enabled()
    expect(train.get_by_test_id("ai-train-why")).to_be_hidden()

    # One label ticked: nothing to tell apart, the button says why it is off.
    labels.get_by_label("Learn stroma").uncheck()
    expect(run).to_be_disabled()
    expect(train.get_by_test_id("ai-train-why")).to_have_text("Tick two labels at least.")
    expect(name).to_have_value("tumour")
    labels.get_by_label("Learn stroma").check()
    expect(run).to_be_enabled()
    expect(name).to_have_value("tumour-vs-stroma")

    # A name the hub refuses: its reason, inline; nothing queued.
    name.fill("Tumour vs Stroma!")
    run.click()
    message = train.locator(".ai-train-message")
    expect(message).to_contain_text("Not queued:")
    expect(message).to_contain_text("lower-case")
    expect(message).to_have_class("ai-train-message error")
    assert not any(j["kind"] == "training" for j in page.evaluate("() => window.iain.ai.jobs"))
    name.fill("tumour-vs-stroma")
    page.screenshot(path=str(SCREENSHOTS / "ai-train.png"))

    run.click()
    expect(message).to_have_text(
        "Queued: a worker will train the model, then run it over the slide."
    )
    training = panel.locator('.ai-job[data-kind="training"]')
    expect(training).to_have_count(1)
    expect(training).to_have_attribute("data-state", "queued")
    expect(training.locator(".ai-job-model")).to_have_text("Training tumour-vs-stroma")
    expect(training.locator(".ai-job-meta")).to_contain_text("Labels tumour, stroma")
    assert page.evaluate("() => window.iain.ai.polling")

    start_fast_worker()
    expect(training).to_have_attribute("data-state", "succeeded", timeout=TRAIN_TIMEOUT_MS)
    job = next(j for j in page.evaluate("() => window.iain.ai.jobs") if j["kind"] == "training")
    summary, made = job["summary"], job["result_model"]
    assert made["name"] == "tumour-vs-stroma" and job["model"] is None
    result = training.locator(".ai-result")
    expect(result).to_have_attribute("open", "")
    expect(result.locator('[data-field="model"]')).to_have_text(
        f"tumour-vs-stroma {made['version']}"
    )
    shown_accuracy = result.locator('[data-field="accuracy"]')
    expect(shown_accuracy).to_have_text(
        re.compile(rf"^\d+(\.\d)? % on {summary['held_out_patches']} patches$")
    )
    percent = float(shown_accuracy.inner_text().split(" %")[0])
    assert percent == pytest.approx(summary["held_out_accuracy"] * 100, abs=0.051)
    assert summary["held_out_patches"] > 0
    for label, count in summary["patches"].items():
        cells = result.locator(f'.ai-train-patches tr[data-label="{label}"] td')
        expect(cells.nth(0)).to_have_text(label)
        expect(cells.nth(1)).to_have_text(f"{count:,}")
    assert set(summary["patches"]) == {"tumour", "stroma"}
    expect(result.locator(".intended-use-notice")).to_contain_text("Research use only")
    # The new model is listed, to run again.
    expect(panel.locator(".ai-model").filter(has_text="tumour-vs-stroma")).to_have_count(1)

    # The run it asked for: followed, and its heatmap switched on once done.
    follow_up = panel.locator(".ai-job:not([data-kind=training])").filter(
        has_text=f"tumour-vs-stroma {made['version']}"
    )
    expect(follow_up).to_have_attribute("data-state", "succeeded", timeout=TRAIN_TIMEOUT_MS)
    page.wait_for_function("() => !window.iain.ai.polling", timeout=JOB_TIMEOUT_MS)
    run_job = next(
        j
        for j in page.evaluate("() => window.iain.ai.jobs")
        if (j["model"] or {}).get("id") == made["id"]
    )
    heatmap_id = run_job["overlay_ids"][0]
    page.wait_for_function(
        "(id) => window.iain.overlays.layers.some(l => l.info.id === id && l.visible)",
        arg=heatmap_id,
        timeout=JOB_TIMEOUT_MS,
    )
    row = page.locator(f'.overlay-item[data-overlay-id="{heatmap_id}"]')
    expect(row.locator("input[type=checkbox]")).to_be_checked()
    expect(follow_up.locator(".ai-show")).to_have_text("Shown on the slide")
    _heatmap_loaded_at(page, heatmap_id, 0)
    training.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "ai-trained.png"))

    # The threshold: under the heatmap's ramp, none at first; tiles cut at it once moved.
    layer = page.locator(f'.overlay-layer[data-layer-id="{heatmap_id}"]')
    threshold = layer.get_by_role("slider", name=f"Threshold of {run_job_name(page, heatmap_id)}")
    expect(threshold).to_have_value("0")
    expect(layer.locator(".overlay-threshold-value")).to_have_text("none")
    tab.tile_responses.clear()
    threshold.fill("50")
    expect(layer.locator(".overlay-threshold-value")).to_have_text("≥ 50 %")
    _heatmap_loaded_at(page, heatmap_id, 50)
    cut = [(u, s) for u, s in tab.tile_responses if f"/overlays/{heatmap_id}_files/" in u]
    assert cut and all("threshold=50" in u and s == 200 for u, s in cut), cut
    # The old image is gone: one image per heatmap layer over the slide.
    heatmaps = page.evaluate(
        """() => window.iain.overlays.layers.filter(l => l.info.kind === 'heatmap').length"""
    )
    assert page.evaluate("() => window.iain.viewer.world.getItemCount()") == 1 + heatmaps
    # Keys move it too (debounced): the last value wins.
    threshold.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    expect(layer.locator(".overlay-threshold-value")).to_have_text("≥ 55 %")
    _heatmap_loaded_at(page, heatmap_id, 55)
    assert any("threshold=55" in u and s == 200 for u, s in tab.tile_responses)
    assert not any("threshold=51" in u for u, _ in tab.tile_responses)
    page.screenshot(path=str(SCREENSHOTS / "ai-threshold.png"))
    # The hub's 400 to the name it refused is the one error the browser logs.
    assert [e for e in tab.console_errors if "400" not in e] == [], tab.console_errors


def run_job_name(page: Page, overlay_id: str) -> str:
    name: str = page.evaluate(
        "(id) => window.iain.overlays.layers.find(l => l.info.id === id).info.name", overlay_id
    )
    return name


def test_french_training_section_and_threshold(hub: AiHub, browser: Browser) -> None:
    """In French: the training section on a slide with no annotation (the button off, and
    why), and on the trained slide; the threshold slider of its heatmap."""
    context = browser.new_context(viewport=VIEWPORT, extra_http_headers=hub.headers)  # type: ignore[arg-type]
    context.add_init_script("localStorage.setItem('iain.language', 'fr')")
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    errors = _uncaught(page)
    try:
        page.goto(f"{hub.url}/viewer/{_slide(hub)['id']}")
        wait_fully_loaded(page)
        page.evaluate("() => window.iain.ai.ready")
        page.locator(".ai-button").click()
        train = page.get_by_test_id("ai-train")
        train.locator("summary").click()
        expect(train.locator("summary")).to_have_text(
            "Entraîner un modèle à partir de mes annotations"
        )
        expect(train.get_by_test_id("ai-train-why")).to_contain_text(
            "Aucune annotation de surface étiquetée"
        )
        expect(train.get_by_role("button", name="Entraîner et lancer")).to_be_disabled()
        page.screenshot(path=str(SCREENSHOTS / "ai-train-fr-empty.png"))

        page.goto(f"{hub.url}/viewer/{hub.regions['id']}")
        wait_fully_loaded(page)
        page.evaluate("() => window.iain.ai.ready")
        page.evaluate("() => window.iain.overlays.ready")
        page.locator(".ai-button").click()
        train.locator("summary").click()
        expect(train.locator('li[data-label="tumour"] .ai-train-count')).to_have_text(
            f"{TRAIN_SQUARES} surfaces"
        )
        expect(train.get_by_role("button", name="Entraîner et lancer")).to_be_enabled()
        training = page.locator('.ai-job[data-kind="training"]')
        expect(training.locator(".ai-job-model")).to_have_text("Entraînement de tumour-vs-stroma")
        expect(training.get_by_test_id("ai-job-state")).to_have_text("Terminée")
        training.locator(".ai-result summary").click()
        training.scroll_into_view_if_needed()
        expect(training.locator('[data-field="accuracy"]')).to_contain_text("\u00a0% sur ")
        shown = page.locator(".overlay-layer:not(.hidden-layer) .overlay-threshold-row").first
        expect(shown.locator(".overlay-threshold-label")).to_have_text("Seuil")
        shown.locator("input.overlay-threshold").fill("40")
        expect(shown.locator(".overlay-threshold-value")).to_have_text("≥ 40\u00a0%")
        page.screenshot(path=str(SCREENSHOTS / "ai-train-fr.png"))
    finally:
        context.close()
    assert errors == []
