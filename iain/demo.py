"""`iain demo`: embedded defaults with sample slides, on a fresh machine too."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from exchange.identity.accounts import Identities
from exchange.overlays.service import add_features, add_heatmap, list_overlays
from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from iain.app import build_store
from iain.sample_overlays import CLASS_COLOURS, blob_heatmap, cell_features
from iain.settings import Settings
from iain.synthetic import write_synthetic_slide
from storage import ObjectStore
from tiles.errors import TilesError

# Readable samples of ../shared/testdata, with the centre each is given in the demo.
SAMPLES = (
    ("aperio/CMU-1-Small-Region.svs", "caen"),
    ("hamamatsu/test3-DAPI-2-(387).ndpi", "lille"),
    ("generic-tiff/boxes.tiff", "rouen"),
    ("dicom/google-wsi2dcm-jpeg/jpeg.dicom", "rouen"),
)
SYNTHETIC_NAME = "synthetic-HE-demo.tiff"
# Demo accounts, one pathologist per centre: (username, centre, display name, password). The
# passwords are public (printed at start): the demo creates them in development mode only.
DEMO_USERS = (
    ("caen.pathologist", "caen", "Dr Caen (demo)", "demo-caen-2026"),
    ("lille.pathologist", "lille", "Dr Lille (demo)", "demo-lille-2026"),
    ("rouen.pathologist", "rouen", "Dr Rouen (demo)", "demo-rouen-2026"),
)


def prepare_demo(
    settings: Settings, console: Console, synthetic_size: tuple[int, int] = (16384, 12288)
) -> None:
    """Ingests what is missing; running it again adds nothing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    have = {s.name for s in catalogue.list_slides()}
    synthetic = settings.home / "samples" / SYNTHETIC_NAME
    if SYNTHETIC_NAME not in have:
        if not synthetic.exists():
            width, height = synthetic_size
            console.print(f"generating a synthetic H&E slide ({width} x {height})...")
            synthetic.parent.mkdir(parents=True, exist_ok=True)
            write_synthetic_slide(synthetic, width, height, seed=7)
        _ingest(store, catalogue, synthetic, "caen", console)
    _seed_overlays(store, catalogue, console)
    _seed_users(settings, catalogue, console)
    if not settings.testdata.is_dir():
        console.print(f"(no sample slides at {settings.testdata}; the synthetic slide only)")
        return
    for relative, centre in SAMPLES:
        path = settings.testdata / relative
        if path.exists() and path.name not in have:
            _ingest(store, catalogue, path, centre, console)


def _seed_users(settings: Settings, catalogue: Catalogue, console: Console) -> None:
    """The demo's accounts, and how to log in with them."""
    if settings.mode != "development":
        console.print("(production mode: no demo accounts; add users with `iain users add`)")
        return
    identities = Identities(catalogue.db)
    for username, centre, name, password in DEMO_USERS:
        if identities.user(username) is None:
            identities.add_user(
                username, centre, ["pathologist"], password=password, display_name=name
            )
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"Log in at {url}/login with a demo account (development only):")
    for username, centre, _name, password in DEMO_USERS:
        console.print(f"  {username:20} password {password}   ({centre})", highlight=False)
    console.print("  scripts: TOKEN=$(iain tokens create lille.pathologist), then")
    console.print(f'  curl -H "Authorization: Bearer $TOKEN" {url}/api/slides', highlight=False)
    console.print("  audit trail (who saw or changed what): iain audit show", highlight=False)


def _seed_overlays(store: ObjectStore, catalogue: Catalogue, console: Console) -> None:
    """A heatmap and 10,000 cell outlines on the synthetic slide, as an inference worker
    would write them, so the viewer's layers panel has something to show."""
    slide = next((s for s in catalogue.list_slides() if s.name == SYNTHETIC_NAME), None)
    if slide is None or list_overlays(catalogue, slide.id):
        return
    # One heatmap value per 64x64 slide pixels: a patch classifier's typical stride.
    field = blob_heatmap(max(1, slide.width // 64), max(1, slide.height // 64), seed=7)
    add_heatmap(store, catalogue, slide.id, field, name="Tumour probability", label="P(tumour)")
    cells = cell_features(slide.width, slide.height, count=10_000, seed=7)
    add_features(store, catalogue, slide.id, cells, name="Cells", class_colours=CLASS_COLOURS)
    console.print(f"  added a demo heatmap and {len(cells)} cell outlines to {slide.id}")


def _ingest(
    store: ObjectStore, catalogue: Catalogue, path: Path, centre: str, console: Console
) -> None:
    try:
        slide = ingest_path(store, catalogue, path, centre)
        console.print(f"  ingested {slide.name} as {slide.id} ({centre})")
    except TilesError as exc:
        console.print(f"  [yellow]skipped[/yellow] {path.name}: {exc.message}")
