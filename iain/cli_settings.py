"""The settings every CLI command starts from: a bad IAIN_* variable is a message, not a
traceback."""

from __future__ import annotations

import typer
from rich.console import Console

from iain.settings import Settings

_err = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        _err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc
