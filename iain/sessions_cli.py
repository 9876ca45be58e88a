"""`iain sessions`: who is logged in, ending a user's sessions (a lost laptop), pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.models import User
from exchange.identity.sessions import LoginThrottle, Sessions, end_sessions_of
from iain.cli_settings import settings_or_exit
from iain.settings import Settings

sessions_cli = typer.Typer(no_args_is_help=True, help="Browser login sessions.")
err = Console(stderr=True)
out = Console()


def _sessions(settings: Settings) -> Sessions:
    lifetime = timedelta(hours=settings.session_hours)
    return Sessions(Database.open(settings.database_url), lifetime=lifetime)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@sessions_cli.command("list")
def list_sessions(
    username: Annotated[str | None, typer.Argument(help="only this user's sessions")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="also the expired and ended ones not yet pruned")
    ] = False,
) -> None:
    """List the live login sessions (never their secrets)."""
    sessions = _sessions(settings_or_exit())
    rows = sessions.listing(username, ended=all_)
    now = datetime.now(UTC)
    for row in rows:
        out.print(
            f"{row.id:14} {row.username:30} {row.centre:8} {_when(row.created_at)} -> "
            f"{_when(row.expires_at)} UTC  {row.state(now)}",
            highlight=False,
            soft_wrap=True,
        )
    err.print(f"{len(rows)} session{'' if len(rows) == 1 else 's'}")


@sessions_cli.command("end")
def end_sessions(
    username: Annotated[str, typer.Argument(help="whose sessions to end")],
) -> None:
    """End every live session of a user: their browsers are logged out within a second."""
    sessions = _sessions(settings_or_exit())
    catalogue = sessions.db
    with catalogue.session() as session, session.begin():
        user = session.query(User).filter_by(username=username.strip().lower()).one_or_none()
        if user is None:
            err.print(f"[red]error:[/red] no user {username!r}")
            raise typer.Exit(1)
        ended = end_sessions_of(session, user.id)
        audit.record(
            session,
            AuditAction.SESSIONS_ENDED,
            target_type="user",
            target_id=user.id,
            detail={"via": "cli", "sessions": ended},
        )
    out.print(f"ended {len(ended)} session{'' if len(ended) == 1 else 's'} of {user.username}")


@sessions_cli.command("prune")
def prune_sessions() -> None:
    """Delete expired and ended sessions and old failed logins (the hub also does it)."""
    settings = settings_or_exit()
    sessions = _sessions(settings)
    removed = sessions.prune()
    throttle = LoginThrottle(
        sessions.db,
        settings.login_max_failures,
        settings.login_window_s,
        secret=settings.secret_key.get_secret_value().encode(),
    )
    failures = throttle.prune()
    out.print(f"pruned {removed} sessions and {failures} old failed logins")
