"""The AI panel in the browser: a pathologist runs a registered model on a slide, follows the
job live, and sees its heatmap switched on with its summary figures and provenance; a job
drawn on a region is cancelled and retried.

The hub runs in this process (tests/hub.py `serving`), with a tiny TorchScript model
(tests/inference_kit.py PurpleScore) registered by an AI engineer; the worker is the real
one (inference.worker), pulling jobs over HTTP in a thread, started only by the tests that
want a job to run. Browser, tab and prerequisites are test_viewer.py's."""

from __future__ import annotations

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
from iain.synthetic import write_synthetic_slide
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
    with serving(settings) as url:
        engineer = token_for(settings, "ai.caen", roles=("ai_engineer",))
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {engineer}"}, timeout=30
        ) as client:
            model = register(client, torchscript_bytes(PurpleScore()), manifest())
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        slide = httpx.get(f"{url}/api/slides/{slide_id}", headers=headers, timeout=30).json()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield AiHub(url, {slide["name"]: slide}, headers=headers, settings=settings, model=model)


@pytest.fixture
def start_worker(hub: AiHub, tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """Starts the worker (in a thread) when the test calls it; stops it, and waits for it to
    stop, at the end: no later test's job is claimed by it."""
    client = SlowHub(hub.url, worker_token(hub.hub_settings))
    config = WorkerConfig(burst=False, wait_s=1, cache_dir=tmp_path / "w", tile_threads=1)
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
    expect(row.locator(".intended-use")).to_have_text("Research use only")
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
