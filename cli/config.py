"""The one place the command line builds Settings: a bad configuration (pydantic names the field
and the bad value) is a red message on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import typer
from rich.console import Console

from core.settings import Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:
        Console(stderr=True).print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
