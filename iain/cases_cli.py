"""`iain cases`: the lab system's exports (CSV or JSON) into a centre's cases, and the
centre's rules that link slides to cases at ingest (exchange.slides.linking, lis)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.models import Centre
from exchange.slides import linking, lis
from iain.cli_settings import settings_or_exit

cases_cli = typer.Typer(no_args_is_help=True, help="Cases: the lab system feed, linking rules.")
err = Console(stderr=True)
out = Console()


def _database(centre: str) -> Database:
    db = Database.open(settings_or_exit().database_url)
    try:
        db.check_centre(centre)
    except ExchangeError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc
    return db


@cases_cli.command("import")
def import_records(
    path: Annotated[Path, typer.Argument(help="a .csv or .json export of the lab system")],
    centre: Annotated[str, typer.Option(help="the centre the cases belong to")],
) -> None:
    """Import case records: one CSV row per slide (reference, organ, specimen_type,
    received_on, status, label, part, block, level, stain), or JSON as POST /api/lis/records
    takes it. All or nothing; importing again changes nothing."""
    db = _database(centre)
    try:
        records = lis.records_from_file(path.name, path.read_bytes())
        with db.session() as session, session.begin():
            result = lis.import_records(session, centre, records)
            audit.record(
                session,
                AuditAction.LIS_IMPORT,
                target_type="centre",
                target_id=centre,
                detail={
                    "cases": result.cases,
                    "slides_linked": result.slides_linked,
                    "slides_expected": result.slides_expected,
                    "file": path.name,
                },
            )
    except OSError as exc:
        err.print(f"[red]cannot read {path}: {exc.strerror}[/red]")
        raise typer.Exit(2) from exc
    except ExchangeError as exc:
        err.print(f"[red]{path.name}: {exc.message}[/red] (nothing imported)")
        raise typer.Exit(1) from exc
    out.print(
        f"{result.cases} case(s); {result.slides_linked} scanned slide(s) linked, "
        f"{result.slides_expected} expected"
    )


@cases_cli.command("rules")
def rules(
    centre: Annotated[str, typer.Argument(help="the centre whose rules these are")],
    barcode: Annotated[
        str | None, typer.Option(help="regex over a label barcode's text; '' removes it")
    ] = None,
    file_name: Annotated[
        str | None, typer.Option(help="regex over the file name; '' removes it")
    ] = None,
) -> None:
    """Show or set the rules that find a new slide's case: regular expressions with the
    named groups case (required), part, block, level, stain."""
    db = _database(centre)
    try:
        for rule in (barcode, file_name):
            if rule:
                linking.compile_rule(rule)
    except ExchangeError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc
    with db.session() as session, session.begin():
        row = session.get_one(Centre, centre)
        if barcode is not None:
            row.barcode_rule = barcode or None
        if file_name is not None:
            row.file_name_rule = file_name or None
        if barcode is not None or file_name is not None:
            audit.record(
                session,
                AuditAction.CENTRE_RULES,
                target_type="centre",
                target_id=centre,
                detail={"barcode_rule": row.barcode_rule, "file_name_rule": row.file_name_rule},
            )
        out.print(f"barcode rule:   {row.barcode_rule or '(none)'}", highlight=False)
        out.print(f"file-name rule: {row.file_name_rule or '(none)'}", highlight=False)
