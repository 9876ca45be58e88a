"""`iain users` and `iain tokens`: local accounts and API tokens for scripts and GPU workers."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.errors import ExchangeError
from exchange.core.models import User
from exchange.identity.accounts import Identities, parse_roles, revoke_tokens_of, weak_password
from exchange.identity.sessions import end_sessions_of
from iain.cli_settings import settings_or_exit

users_cli = typer.Typer(no_args_is_help=True, help="Local accounts.")
tokens_cli = typer.Typer(no_args_is_help=True, help="API tokens (Authorization: Bearer …).")
err = Console(stderr=True)
out = Console()


def _identities() -> Identities:
    settings = settings_or_exit()
    return Identities(Database.open(settings.database_url))


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _read_password(username: str, from_stdin: bool) -> str | None:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        return None  # a scripted account without a password: OpenID Connect or tokens only
    why = weak_password(password, username)
    if why is not None:
        raise _fail(why)
    return password


@users_cli.command("add")
def add_user(
    username: Annotated[str, typer.Argument(help="lower-case login name, e.g. lille.pathologist")],
    centre: Annotated[str, typer.Option(help="the user's centre: caen, lille, rouen...")],
    role: Annotated[
        list[str], typer.Option(help="pathologist, resident, technician, ... (repeatable)")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    rpps: Annotated[str | None, typer.Option(help="RPPS number (11 digits)")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
) -> None:
    """Add a local account (asks for its password unless --password-stdin)."""
    identities = _identities()
    try:
        parse_roles(role)
        identities.db.check_centre(centre)
        password = _read_password(username, password_stdin)
        user = identities.add_user(
            username, centre, role, password=password, display_name=name, rpps=rpps
        )
    except ExchangeError as exc:
        raise _fail(exc.message) from None
    note = "" if password is not None else " (no password: OpenID Connect or API tokens only)"
    out.print(f"added {user.username} ({user.centre}: {', '.join(user.roles)}){note}")


@users_cli.command("list")
def list_users() -> None:
    """List the accounts."""
    identities = _identities()
    with identities.db.session() as session:
        users = session.query(User).order_by(User.centre, User.username).all()
    for user in users:
        how = "password" if user.password_hash else ("oidc" if user.oidc_subject else "-")
        state = "" if user.active else "  (inactive)"
        out.print(
            f"{user.username:30} {user.centre:8} {','.join(user.roles):28} {how:8} "
            f"{user.display_name}{state}",
            highlight=False,
        )


def _set_active(username: str, active: bool) -> None:
    """Disabling refuses the account's logins, ends its sessions and revokes its tokens, in
    one transaction with its audit row; every hub process sees it within a second."""
    db = _identities().db
    with db.session() as session, session.begin():
        user = session.query(User).filter_by(username=username.strip().lower()).one_or_none()
        if user is None:
            raise _fail(f"no user {username!r}")
        if user.active == active:
            out.print(f"{user.username} is already {'enabled' if active else 'disabled'}")
            return
        user.active = active
        ended = [] if active else end_sessions_of(session, user.id)
        revoked = [] if active else revoke_tokens_of(session, user.id)
        audit.record(
            session,
            AuditAction.USER_ENABLED if active else AuditAction.USER_DISABLED,
            target_type="user",
            target_id=user.id,
            detail={"via": "cli", "sessions_ended": ended, "tokens_revoked": revoked},
        )
    if active:
        out.print(f"enabled {user.username}: logins accepted again (old tokens stay revoked)")
    else:
        out.print(
            f"disabled {user.username}: logins refused, {len(ended)} sessions ended, "
            f"{len(revoked)} tokens revoked"
        )


@users_cli.command("disable")
def disable_user(
    username: Annotated[str, typer.Argument(help="the account to disable")],
) -> None:
    """Disable an account (someone who left, a lost laptop): refuses its logins, ends its
    sessions and revokes its API tokens."""
    _set_active(username, False)


@users_cli.command("enable")
def enable_user(
    username: Annotated[str, typer.Argument(help="the account to enable again")],
) -> None:
    """Enable a disabled account again (its revoked tokens stay revoked)."""
    _set_active(username, True)


@tokens_cli.command("create")
def create_token(
    username: Annotated[str, typer.Argument(help="whose token")],
    name: Annotated[str, typer.Option(help="what it is for, e.g. 'gpu-worker-1'")] = "",
    scope: Annotated[list[str] | None, typer.Option(help="restrict it (repeatable)")] = None,
) -> None:
    """Create an API token; its secret is printed once and never stored."""
    identities = _identities()
    try:
        token, secret = identities.create_token(username, name=name, scopes=scope or ())
    except ExchangeError as exc:
        raise _fail(exc.message) from None
    err.print(f"token {token.id} for {username}: keep it now, it is not shown again")
    # The secret alone on stdout, so `TOKEN=$(iain tokens create …)` works.
    print(secret)


@tokens_cli.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="the id `tokens create` gave")],
) -> None:
    """Revoke an API token (every hub process refuses it within a second)."""
    if not _identities().revoke_token(token_id):
        raise _fail(f"no live token {token_id!r}")
    out.print(f"revoked {token_id}")
