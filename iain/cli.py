"""The `iain` command: serve, demo, ingest, slides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

from exchange.catalogue import Catalogue
from exchange.errors import ExchangeError
from exchange.ingest import ingest_path
from iain.app import build_store, create_app
from iain.settings import Settings
from storage import StorageError
from tiles.errors import TilesError
from tiles.ingest import Inspection

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True)
out = Console()

Host = Annotated[str | None, typer.Option(help="bind address (default IAIN_HOST or 127.0.0.1)")]
Port = Annotated[int | None, typer.Option(help="port (default IAIN_PORT or 8000)")]


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _serve(settings: Settings, host: str | None, port: int | None) -> None:
    try:
        app = create_app(settings)
    except (ValueError, StorageError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    host, port = host or settings.host, port or settings.port
    out.print(f"IAIN serving on http://{host}:{port}/  (storage: {settings.storage_url})")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@cli.command()
def serve(host: Host = None, port: Port = None) -> None:
    """Run the hub and tile server from IAIN_* settings."""
    _serve(_settings(), host, port)


def ingest_paths(settings: Settings, paths: list[Path], centre: str) -> int:
    """Ingests each path, printing the new id or the reason for refusal; returns failures."""
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
    return failures


@cli.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="slide files or folders (MRXS, DICOM)")],
    centre: Annotated[str, typer.Option(help="owning centre: caen, lille, rouen...")] = "caen",
) -> None:
    """Validate slides and store their originals; prints each new slide id."""
    failures = ingest_paths(_settings(), paths, centre)
    if failures:
        err.print(f"{failures} of {len(paths)} refused")
        raise typer.Exit(1)


@cli.command()
def slides() -> None:
    """List the catalogue."""
    settings = _settings()
    for s in Catalogue.open(settings.database_url).list_slides():
        out.print(f"{s.id}  {s.status:8} {s.centre:6} {s.vendor:12} {s.width}x{s.height}  {s.name}")


@cli.command()
def demo(host: Host = None, port: Port = None) -> None:
    """Start the hub on embedded defaults with sample slides ingested."""
    from iain.demo import prepare_demo

    settings = _settings()
    prepare_demo(settings, out)
    _serve(settings, host, port)


def main() -> None:
    cli(prog_name="iain")


if __name__ == "__main__":
    main()
