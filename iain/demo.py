"""`iain demo`: embedded defaults with sample slides, on a fresh machine too."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from exchange.access.policy import Policy
from exchange.annotations.service import AnnotationData, create_annotations, list_annotations
from exchange.core.errors import ExchangeError
from exchange.core.models import Centre, InferenceJob
from exchange.core.statuses import CaseStatus, JobKind
from exchange.identity.accounts import Identities, principal_of
from exchange.jobs.queue import Jobs, TrainingParams
from exchange.jobs.registry import Registry
from exchange.overlays.service import add_features, list_overlays
from exchange.slides import lis
from exchange.slides.cases import CaseFields
from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from iain.app import build_store
from iain.sample_overlays import CLASS_COLOURS, cell_features
from iain.settings import Settings
from iain.synthetic import Region, truth_of, write_labelled_svs, write_tissue_regions_slide
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
DEMO_SEED = 7
# Who trains the demo's model (a demo account), and its name in the registry.
DEMO_TRAINER = "caen.pathologist"
DEMO_MODEL = "demo-tumour-vs-stroma"
# Demo accounts, one pathologist per centre: (username, centre, display name, password). The
# passwords are public (printed at start): the demo creates them in development mode only.
DEMO_USERS = (
    ("caen.pathologist", "caen", "Dr Caen (demo)", "demo-caen-2026"),
    ("lille.pathologist", "lille", "Dr Lille (demo)", "demo-lille-2026"),
    ("rouen.pathologist", "rouen", "Dr Rouen (demo)", "demo-rouen-2026"),
)


# Each centre's demo cases, with its own reference style and label barcode: (centre,
# barcode format, [(reference, organ, specimen type, received, status, IHC marker)]).
# Every case has an H&E slide and an IHC one, whose labels carry "REFERENCE|BLOCK|STAIN".
DEMO_CASES: tuple[tuple[str, str, tuple[tuple[str, str, str, str, CaseStatus, str], ...]], ...] = (
    (
        "caen",
        "DataMatrix",
        (
            ("B26-004211", "sein", "biopsie", "2026-11-30", CaseStatus.RECEIVED, "HER2"),
            ("B26-004187", "sein", "tumorectomie", "2026-11-27", CaseStatus.IN_PROGRESS, "ER"),
            ("B26-004102", "côlon", "biopsie", "2026-11-24", CaseStatus.SIGNED_OUT, "CK20"),
        ),
    ),
    (
        "lille",
        "QRCode",
        (
            ("L2026.018841", "prostate", "biopsie", "2026-12-01", CaseStatus.RECEIVED, "p63"),
            ("L2026.018790", "poumon", "biopsie", "2026-11-28", CaseStatus.IN_PROGRESS, "TTF-1"),
            ("L2026.018652", "peau", "exérèse", "2026-11-23", CaseStatus.SIGNED_OUT, "Melan-A"),
        ),
    ),
    (
        "rouen",
        "Code128",
        (
            ("R26H009934", "estomac", "biopsie", "2026-11-29", CaseStatus.RECEIVED, "HER2"),
            ("R26H009871", "ganglion", "exérèse", "2026-11-26", CaseStatus.IN_PROGRESS, "CD20"),
            ("R26H009755", "rein", "néphrectomie", "2026-11-20", CaseStatus.SIGNED_OUT, "PAX8"),
        ),
    ),
)
# How the demo centres read their labels: "REFERENCE|BLOCK|STAIN" (exchange.slides.linking).
DEMO_BARCODE_RULE = r"^(?P<case>[^|]+)\|(?P<block>(?P<part>[A-Z])\d+)\|(?P<stain>[^|]+)$"
DEMO_SLIDE_SIZE = (3072, 2304)


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
            write_tissue_regions_slide(synthetic, width, height, seed=DEMO_SEED)
        _ingest(store, catalogue, synthetic, "caen", console)
    _seed_overlays(store, catalogue, console)
    _seed_cases(settings, store, catalogue, have, console)
    _seed_users(settings, catalogue, console)
    _seed_training(settings, store, catalogue, console)
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


def _seed_cases(
    settings: Settings, store: ObjectStore, catalogue: Catalogue, have: set[str], console: Console
) -> None:
    """Each centre's cases as its lab system announces them, then their H&E and IHC slides
    scanned: the slides find their case by their label's barcode, read at ingest."""
    with catalogue.session() as session, session.begin():
        for centre, _format, cases in DEMO_CASES:
            row = session.get(Centre, centre)
            if row is not None and row.barcode_rule is None:
                row.barcode_rule = DEMO_BARCODE_RULE
            records = [
                lis.CaseRecord(
                    reference,
                    CaseFields(
                        organ=organ,
                        specimen_type=specimen,
                        received_on=date.fromisoformat(received),
                        status=status,
                    ),
                )
                for reference, organ, specimen, received, status, _marker in cases
            ]
            lis.import_records(session, centre, records)
    folder = settings.home / "samples" / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    width, height = DEMO_SLIDE_SIZE
    seed = 11
    for centre, barcode_format, cases in DEMO_CASES:
        for reference, _organ, _specimen, _received, _status, marker in cases:
            for block, stain, look in (("A1", "H&E", "he"), ("A1", marker, "ihc")):
                seed += 1
                name = f"scan-{reference.replace('.', '-')}-{stain.replace('&', '')}.svs"
                if name in have:
                    continue
                path = folder / name
                if not path.exists():
                    write_labelled_svs(
                        path,
                        width,
                        height,
                        barcode_text=f"{reference}|{block}|{stain}",
                        barcode_format=barcode_format,
                        stain=look,  # type: ignore[arg-type]
                        seed=seed,
                    )
                _ingest(store, catalogue, path, centre, console)


def _seed_overlays(store: ObjectStore, catalogue: Catalogue, console: Console) -> None:
    """10,000 generated cell outlines on the synthetic slide, so the viewer's layers panel
    shows a feature set (its heatmaps come from real jobs: _seed_training)."""
    slide = next((s for s in catalogue.list_slides() if s.name == SYNTHETIC_NAME), None)
    if slide is None or list_overlays(catalogue, slide.id):
        return
    cells = cell_features(slide.width, slide.height, count=10_000, seed=7)
    add_features(store, catalogue, slide.id, cells, name="Cells", class_colours=CLASS_COLOURS)
    console.print(f"  added {len(cells)} generated cell outlines to {slide.id}")


def _seed_training(
    settings: Settings, store: ObjectStore, catalogue: Catalogue, console: Console
) -> None:
    """What a pathologist of Caen would do: outline tumour and stroma on the synthetic
    slide, train a classifier from them, and run it over the slide. The embedded worker
    runs both jobs at start-up: the tissue mask and the heatmap appear within a minute."""
    slide = next((s for s in catalogue.list_slides() if s.name == SYNTHETIC_NAME), None)
    identities = Identities(catalogue.db)
    user = identities.user(DEMO_TRAINER)
    if slide is None or user is None:
        return
    with catalogue.session() as session:
        trained = session.scalar(
            select(InferenceJob.id).where(
                InferenceJob.slide_id == slide.id, InferenceJob.kind == JobKind.TRAINING
            )
        )
    if trained is not None:
        return
    principal = principal_of(user)
    truth = truth_of(slide.width, slide.height, seed=DEMO_SEED)
    if not list_annotations(catalogue, slide.id)[1]:
        items = [
            AnnotationData(
                kind="polygon",
                geometry={
                    "type": "Polygon",
                    "coordinates": [[[x, y] for x, y in [*square, square[0]]]],
                },
                label=label,
                colour=colour,
            )
            for label, region, colour in (
                ("tumour", Region.TUMOUR, "#6a1b9a"),
                ("stroma", Region.STROMA, "#ec407a"),
            )
            for square in truth.region_polygons(region, 30)
        ]
        if {item.label for item in items} != {"tumour", "stroma"}:
            return  # a slide too small for training squares (the tests' tiny demos)
        create_annotations(catalogue, slide.id, items, principal)
    policy = Policy(catalogue)
    jobs = Jobs(catalogue.db, store, Registry(catalogue.db, store, settings.cache_dir), policy)
    try:
        jobs.create_training(principal, slide.id, DEMO_MODEL, TrainingParams(run_after=True))
    except ExchangeError as exc:
        console.print(f"  [yellow]no demo training:[/yellow] {exc.message}")
        return
    console.print(
        f"  queued: train {DEMO_MODEL} from {DEMO_TRAINER}'s annotations on {slide.id}, "
        "then run it (the embedded worker does both)"
    )


def _ingest(
    store: ObjectStore, catalogue: Catalogue, path: Path, centre: str, console: Console
) -> None:
    try:
        slide = ingest_path(store, catalogue, path, centre)
        console.print(f"  ingested {slide.name} as {slide.id} ({centre})")
    except TilesError as exc:
        console.print(f"  [yellow]skipped[/yellow] {path.name}: {exc.message}")
