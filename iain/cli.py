"""The `iain` command: serve, demo, ingest, slides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TransferSpeedColumn,
)

from exchange.core.db import DatabaseProblem
from exchange.core.errors import ExchangeError
from exchange.core.statuses import ConversionStatus
from exchange.slides.catalogue import Catalogue
from exchange.slides.conversion import convert_now, requeue
from exchange.slides.ingest import ingest_path
from iain.app import build_store, conversion_config, create_app
from iain.audit_cli import audit_cli
from iain.cases_cli import cases_cli
from iain.cli_settings import settings_or_exit
from iain.embedded_worker import EmbeddedWorker, hub_url
from iain.inference_cli import jobs_cli, models_cli, run_worker, train_model, worker_cli
from iain.sessions_cli import sessions_cli
from iain.settings import Settings
from iain.users_cli import tokens_cli, users_cli
from storage import StorageError
from tiles.errors import TilesError
from tiles.ingest import Inspection

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True)
out = Console()

Host = Annotated[str | None, typer.Option(help="bind address (default IAIN_HOST or 127.0.0.1)")]
Port = Annotated[int | None, typer.Option(help="port (default IAIN_PORT or 8000)")]


def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    try:
        app = create_app(settings)
    except (ValueError, StorageError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    host, port = host or settings.host, port or settings.port
    out.print(f"IAIN serving on http://{host}:{port}/  (storage: {settings.storage_url})")
    worker = None
    if settings.inference_worker:
        worker = EmbeddedWorker(settings, hub_url(host, port))
        worker.start()
        out.print("  with an embedded CPU inference worker (IAIN_INFERENCE_WORKER)")
    # uvicorn believes X-Forwarded-For/-Proto from the trusted proxies only (its default
    # would trust 127.0.0.1): the same list as the login throttle's (IAIN_TRUSTED_PROXIES).
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            forwarded_allow_ips=[str(n) for n in settings.trusted_proxies],
        )
    finally:
        if worker is not None:
            worker.stop()


@cli.command()
def serve(host: Host = None, port: Port = None) -> None:
    """Run the hub and tile server from IAIN_* settings."""
    _serve(settings_or_exit(), host, port)


def ingest_paths(
    settings: Settings, paths: list[Path], centre: str, *, convert: bool = True
) -> int:
    """Ingests each path, printing the new id or the reason for refusal; returns failures.
    With `convert`, builds each slide's normalised pyramid here (in a worker process),
    showing its progress; otherwise a running hub builds it in the background."""
    store = build_store(settings)
    catalogue = Catalogue.open(settings.database_url)
    failures = 0
    for path in paths:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{path.name}: validating", total=None)

            def inspected(ins: Inspection, task: TaskID = task, name: str = path.name) -> None:
                bar.update(task, description=f"{name}: storing", total=ins.total_bytes)

            def advance(n: int, task: TaskID = task) -> None:
                bar.advance(task, n)

            try:
                slide = ingest_path(
                    store, catalogue, path, centre, on_inspected=inspected, progress=advance
                )
            except (TilesError, ExchangeError) as exc:
                failures += 1
                err.print(f"[red]refused[/red] {path}: {exc.message}")
                continue
            except StorageError as exc:
                failures += 1
                err.print(f"[red]storage error[/red] {path}: {exc}")
                continue
        out.print(
            f"{slide.id}  {slide.name}  {slide.vendor} {slide.width}x{slide.height}  "
            f"centre={slide.centre}"
        )
        if convert:
            _convert(settings, catalogue, slide.id, path.name)
    return failures


def _convert(settings: Settings, catalogue: Catalogue, slide_id: str, name: str) -> None:
    """Builds the slide's pyramid with a progress bar; a failure leaves the slide served
    from its original, so it is reported, not counted as a refusal."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{name}: converting", total=100)
        outcome = convert_now(
            catalogue,
            conversion_config(settings),
            slide_id,
            on_progress=lambda percent: bar.update(task, completed=percent),
        )
    if outcome.status == ConversionStatus.READY:
        err.print(f"  {slide_id}: pyramid ready")
    elif outcome.status == ConversionStatus.SKIPPED:
        err.print(f"  {slide_id}: no conversion needed ({outcome.detail})")
    else:
        err.print(
            f"  [yellow]{slide_id}: conversion failed[/yellow] ({outcome.detail}); "
            "served from its original"
        )


@cli.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="slide files or folders (MRXS, DICOM)")],
    centre: Annotated[str, typer.Option(help="owning centre: caen, lille, rouen...")] = "caen",
    background: Annotated[
        bool, typer.Option(help="leave the pyramid to a running hub instead of building it now")
    ] = False,
) -> None:
    """Validate slides, store their originals and build their pyramids; prints each new
    slide id."""
    failures = ingest_paths(settings_or_exit(), paths, centre, convert=not background)
    if failures:
        err.print(f"{failures} of {len(paths)} refused")
        raise typer.Exit(1)


@cli.command()
def convert(
    slide_ids: Annotated[list[str], typer.Argument(help="ids of slides to convert again")],
    background: Annotated[
        bool, typer.Option(help="queue them for a running hub instead of converting now")
    ] = False,
) -> None:
    """Rebuild slides' normalised pyramids (after a failure, say)."""
    settings = settings_or_exit()
    catalogue = Catalogue.open(settings.database_url)
    unknown = [i for i in slide_ids if not requeue(catalogue, i)]
    for slide_id in slide_ids:
        if slide_id not in unknown and not background:
            _convert(settings, catalogue, slide_id, slide_id)
    if unknown:
        err.print(f"[red]no such slide:[/red] {', '.join(unknown)}")
        raise typer.Exit(1)


@cli.command()
def slides() -> None:
    """List the catalogue."""
    settings = settings_or_exit()
    for s in Catalogue.open(settings.database_url).list_slides():
        out.print(f"{s.id}  {s.status:8} {s.centre:6} {s.vendor:12} {s.width}x{s.height}  {s.name}")


@cli.command()
def demo(host: Host = None, port: Port = None) -> None:
    """Start the hub on embedded defaults with sample slides ingested."""
    from iain.demo import prepare_demo

    settings = settings_or_exit().model_copy(update={"inference_worker": True})
    prepare_demo(settings, out)
    _serve(settings, host, port)


@cli.command()
def upload(
    path: Annotated[Path, typer.Argument(help="a slide file, an MRXS file or a DICOM folder")],
    hub: Annotated[str, typer.Option(help="the hub's URL")] = "http://127.0.0.1:8000",
    centre: Annotated[str, typer.Option(help="owning centre: caen, lille, rouen...")] = "caen",
    name: Annotated[str, typer.Option(help="slide name (default: the file name)")] = "",
    jobs: Annotated[int, typer.Option(help="parts sent at the same time")] = 4,
    token: Annotated[
        str, typer.Option(envvar="IAIN_TOKEN", help="API token (iain tokens create USER)")
    ] = "",
) -> None:
    """Send a slide to a hub in parts; run it again after an interruption to resume."""
    from iain.upload_client import UploadFailed
    from iain.upload_client import upload as send

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{path.name}: checksums", total=None)

        def started(upload_id: str, total: int, already: int, left: int) -> None:
            resumed = f", resuming: {already} already stored" if already else ""
            err.print(f"upload {upload_id}: {total} parts{resumed}")
            bar.update(task, description=f"{path.name}: sending", total=left, completed=0)

        def advance(n: int) -> None:
            bar.advance(task, n)

        try:
            report = send(
                hub,
                path,
                centre,
                name=name,
                on_start=started,
                on_bytes=advance,
                on_hashing=advance,
                jobs=jobs,
                token=token or None,
            )
        except UploadFailed as exc:
            err.print(f"[red]upload failed[/red] {path}: {exc}")
            raise typer.Exit(1) from exc
    s = report.slide
    out.print(f"{s['id']}  {s['name']}  {s['vendor']} {s['width']}x{s['height']}  centre={centre}")


@cli.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="the drop folder scanners write into")],
    centre: Annotated[str, typer.Option(help="owning centre of what is dropped")] = "caen",
    settle: Annotated[float, typer.Option(help="seconds a file must stay unchanged")] = 5.0,
    interval: Annotated[float, typer.Option(help="seconds between two looks")] = 2.0,
    once: Annotated[bool, typer.Option(help="ingest what is complete now, then exit")] = False,
) -> None:
    """Ingest every slide dropped into FOLDER once; failures go to FOLDER/failed/."""
    from exchange.slides.watch import FolderBusy, Watcher

    settings = settings_or_exit()
    try:
        watcher = Watcher(
            build_store(settings),
            Catalogue.open(settings.database_url),
            folder,
            centre,
            settle_s=settle,
            log=out.print,
        )
    except ExchangeError as exc:
        err.print(f"[red]cannot watch:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    if not once:
        out.print(f"watching {folder} (centre {centre}); Ctrl-C stops")
    try:
        outcomes = watcher.run(interval_s=interval, once=once)
    except KeyboardInterrupt:
        return
    except FolderBusy as exc:
        err.print(f"[red]cannot watch:[/red] {exc}")
        raise typer.Exit(2) from exc
    if any(o.slide_id is None for o in outcomes):
        raise typer.Exit(1)


@cli.command("prune-uploads")
def prune_uploads(
    days: Annotated[float, typer.Option(help="abort unfinished uploads older than this")] = 7,
) -> None:
    """Abort unfinished uploads and free the storage their parts take."""
    from datetime import timedelta

    from exchange.slides.uploads import Uploads

    settings = settings_or_exit()
    uploads = Uploads(
        build_store(settings),
        Catalogue.open(settings.database_url),
        part_size=settings.upload_part_size,
        max_bytes=settings.upload_max_gb * 1024**3,
        work_dir=settings.cache_dir / "uploads",
    )
    pruned = uploads.prune(timedelta(days=days))
    out.print(f"{len(pruned)} unfinished upload(s) aborted")


cli.command("worker")(run_worker)
cli.command("train")(train_model)
cli.add_typer(worker_cli, name="workers")
cli.add_typer(models_cli, name="models")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(cases_cli, name="cases")
cli.add_typer(users_cli, name="users")
cli.add_typer(tokens_cli, name="tokens")
cli.add_typer(sessions_cli, name="sessions")


def main() -> None:
    try:
        cli(prog_name="iain")
    except DatabaseProblem as exc:  # unreachable, or a schema this version cannot use
        err.print(f"[red]database:[/red] {exc}")
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
