"""`iain audit`: show the newest events, verify the chain, export it for the
data-protection officer, prune events past the retention."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.models import AuditEvent, User
from exchange.slides.catalogue import Catalogue
from iain.cli_settings import settings_or_exit

audit_cli = typer.Typer(no_args_is_help=True, help=__doc__)
err = Console(stderr=True)
out = Console()


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _catalogue() -> Catalogue:
    settings = settings_or_exit()
    return Catalogue.open(settings.database_url)


def _moment(text: str, option: str) -> datetime:
    """A date (2026-01-31) or an ISO time; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        err.print(f"[red]{option}:[/red] {text!r} is not a date (YYYY-MM-DD) nor an ISO time")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@audit_cli.command("verify")
def verify_command() -> None:
    """Checks every event's hash and its link to the previous one: exit 1 at the first
    edited, deleted or reordered event."""
    catalogue = _catalogue()
    with catalogue.session() as session:
        result = audit.verify(session)
    if result.intact:
        out.print(f"chain intact, {result.count} events")
        return
    err.print(
        f"[red]chain broken at seq {result.broken_seq}:[/red] {result.reason} "
        f"({result.count} events verified before it)"
    )
    raise typer.Exit(1)


@audit_cli.command("show")
def show_command(
    last: Annotated[int, typer.Option(help="how many of the newest events", min=1)] = 20,
) -> None:
    """Prints the newest events: who (user name, centre) did what, to which slide or user."""
    catalogue = _catalogue()
    with catalogue.session() as session:
        events = list(
            session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(last))
        )
        ids = {e.actor_id for e in events if e.actor_id}
        found = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
        names = {user_id: username for user_id, username in found}
    table = Table("seq", "at (UTC)", "user", "centre", "action", "target", "detail")
    for event in reversed(events):
        at = event.at
        table.add_row(
            str(event.seq),
            at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            names.get(event.actor_id or "", event.actor_id or "-"),
            event.actor_centre or "-",
            event.action,
            f"{event.target_type} {event.target_id}".strip() or "-",
            json.dumps(event.detail, sort_keys=True, ensure_ascii=False),
        )
    out.print(table)


@audit_cli.command("export")
def export_command(
    since: Annotated[str, typer.Option(help="first day (YYYY-MM-DD) or ISO time, UTC")],
    until: Annotated[
        str | None, typer.Option(help="end (exclusive), YYYY-MM-DD or ISO time")
    ] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json")] = ExportFormat.CSV,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="file to write (default: standard output)")
    ] = None,
) -> None:
    """Writes the events from SINCE (to UNTIL) as CSV or JSON for the data-protection
    officer. The export is itself recorded in the trail."""
    start = _moment(since, "--since")
    end = _moment(until, "--until") if until else None
    if end is not None and end <= start:
        err.print("[red]--until must come after --since[/red]")
        raise typer.Exit(2)
    catalogue = _catalogue()
    writer = audit.write_csv if fmt is ExportFormat.CSV else audit.write_json
    try:
        stream: TextIO = (
            sys.stdout if out_file is None else out_file.open("w", encoding="utf-8", newline="")
        )
    except OSError as exc:
        err.print(f"[red]cannot write {out_file}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        # The export and its own event commit together: an export that fails leaves no trace
        # of having happened, one that succeeds always does.
        with catalogue.session() as session, session.begin():
            count = writer(audit.events_between(session, start, end), stream)
            audit.record(
                session,
                AuditAction.AUDIT_EXPORT,
                target_type="audit",
                detail={
                    "since": start.isoformat(),
                    "until": end.isoformat() if end else None,
                    "format": fmt.value,
                    "count": count,
                    "via": "cli",
                },
            )
    finally:
        if out_file is not None:
            stream.close()
    if out_file is not None:
        err.print(f"{count} events written to {out_file}")


@audit_cli.command("prune")
def prune_command(
    days: Annotated[
        int | None,
        typer.Option(help="keep this many days (default IAIN_AUDIT_RETENTION_DAYS)", min=1),
    ] = None,
) -> None:
    """Removes events older than the retention; the chain still verifies afterwards."""
    settings = settings_or_exit()
    retention = days or settings.audit_retention_days
    catalogue = Catalogue.open(settings.database_url)
    try:
        with catalogue.session() as session, session.begin():
            pruned = audit.prune(session, retention)
    except audit.ChainBroken as exc:
        err.print(f"[red]not pruned:[/red] {exc}; run `iain audit verify`")
        raise typer.Exit(1) from None
    out.print(
        f"{pruned.events} events older than {retention} days removed "
        f"(through seq {pruned.through_seq}); {pruned.views} view records"
    )
