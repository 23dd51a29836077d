"""``lakehouse lake maintain | history | show | restore | migrate``: operating the lake's tables.

Tables are named as in the lake: ``bronze/document_events``, ``silver/documents|pages|chunks``,
``gold/notes|quizzes|quiz_items|flashcards`` (Delta) and ``lancedb/chunks``
(LanceDB; ``chunks`` also works).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.config import load_settings as _settings

_out = Console(stderr=False, width=None if sys.stdout.isatty() else 150)
_err = Console(stderr=True)


def _when(value: str) -> datetime:
    """An ISO time (``2026-12-01T15:00``, ``2026-12-01 15:00:00+01:00``); UTC when it has no zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO date-time such as 2026-12-01T15:00:00Z") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def register(lake_app: typer.Typer) -> None:
    """Adds the lake's operations to ``lakehouse lake``."""

    @lake_app.command("maintain")
    def maintain(
        table_names: Annotated[
            list[str] | None, typer.Option("--table", help="Only this table (repeatable), e.g. silver/chunks")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    ) -> None:
        """Z-ORDER/compact, checkpoint and VACUUM the Delta tables; compact and re-index LanceDB.

        Safe while the stream runs: a conflicting commit is retried. Each step's files and bytes
        before/after are printed and recorded in the warehouse's fact_lake_maintenance if it exists."""
        from lake.maintenance import maintain_lake
        from warehouse.load import record_lake_maintenance

        settings = _settings()
        started = time.perf_counter()
        try:
            report = maintain_lake(settings, only=table_names, progress=lambda m: _err.print(f"[dim]{m}[/dim]"))
        except ValueError as exc:
            _err.print(f"[red]lake maintain:[/red] {exc}")
            raise typer.Exit(2) from exc
        recorded = record_lake_maintenance(settings, report.warehouse_rows()) if report.steps else False
        if json_out:
            _out.print_json(json.dumps({**report.as_dict(), "recorded_in_warehouse": recorded}))
            return
        table = Table(title=f"Lake maintenance ({time.perf_counter() - started:.1f} s)")
        for column in ("table", "step", "files before", "files after", "bytes before", "bytes after", "rows",
                       "version", "seconds", "detail"):  # fmt: skip
            table.add_column(column)
        for s in report.steps:
            table.add_row(s.table, s.step, str(s.files_before), str(s.files_after), f"{s.bytes_before:,}",
                          f"{s.bytes_after:,}", f"{s.rows:,}", str(s.version), f"{s.seconds:.2f}",
                          _cell(s.detail, 80))  # fmt: skip
        _out.print(table)
        if report.missing:
            _out.print("not created yet: " + ", ".join(report.missing))
        _out.print("recorded in the warehouse (fact_lake_maintenance)" if recorded else "no warehouse to record in")

    @lake_app.command("history")
    def history(
        table_name: Annotated[str, typer.Argument(help="e.g. silver/pages, gold/quizzes, lancedb/chunks")],
        limit: Annotated[int | None, typer.Option("--limit", min=1, help="Newest N versions only")] = None,
    ) -> None:
        """The table's versions, newest first: time, operation, engine and what it wrote."""
        from lake.history import UnknownTable, VersionUnavailable, table_history

        try:
            versions = table_history(_settings(), table_name, limit=limit)
        except (UnknownTable, VersionUnavailable) as exc:
            _err.print(f"[red]lake history:[/red] {exc}")
            raise typer.Exit(2) from exc
        table = Table(title=f"History of {table_name}")
        for column in ("version", "time (UTC)", "operation", "engine", "summary"):
            table.add_column(column)
        for v in versions:
            table.add_row(str(v.version), f"{v.timestamp:%Y-%m-%d %H:%M:%S}", v.operation, v.engine, v.summary)
        _out.print(table)

    @lake_app.command("show")
    def show(
        table_name: Annotated[str, typer.Argument(help="e.g. silver/pages, gold/quizzes, lancedb/chunks")],
        version: Annotated[int | None, typer.Option("--version", min=0, help="Read this version")] = None,
        as_of: Annotated[str | None, typer.Option("--as-of", help="Read the version current at this ISO time")] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, help="Rows to print")] = 20,
        json_out: Annotated[bool, typer.Option("--json", help="Rows as JSON lines")] = False,
    ) -> None:
        """Rows of a table now, at --version N or --as-of TS (time travel)."""
        from lake.history import UnknownTable, VersionUnavailable, read_version

        if version is not None and as_of is not None:
            _err.print("[red]lake show:[/red] give --version or --as-of, not both")
            raise typer.Exit(2)
        try:
            read, rows = read_version(
                _settings(), table_name, version=version, as_of=_when(as_of) if as_of else None, limit=limit
            )
        except (UnknownTable, VersionUnavailable) as exc:
            _err.print(f"[red]lake show:[/red] {exc}")
            raise typer.Exit(2) from exc
        records = rows.to_pylist()
        if json_out:
            for record in records:
                print(json.dumps(record, default=str))
            return
        table = Table(title=f"{table_name} at version {read} (first {len(records)} rows)")
        for column in rows.column_names:
            table.add_column(column, overflow="fold")
        for record in records:
            table.add_row(*(_cell(record[c], 40) for c in rows.column_names))
        _out.print(table)

    @lake_app.command("restore")
    def restore(
        table_name: Annotated[str, typer.Argument(help="e.g. silver/pages, gold/quizzes, lancedb/chunks")],
        version: Annotated[int, typer.Option("--version", min=0, help="The version to restore")],
    ) -> None:
        """Make an earlier version current again (as a new version: the restore can be undone)."""
        from lake.history import UnknownTable, VersionUnavailable, restore_version

        try:
            result = restore_version(_settings(), table_name, version)
        except (UnknownTable, VersionUnavailable) as exc:
            _err.print(f"[red]lake restore:[/red] {exc}")
            raise typer.Exit(2) from exc
        metrics = ", ".join(f"{k} {v}" for k, v in result["metrics"].items())
        _out.print(f"{result['table']}: restored version {version} as version {result['version']}"
                   + (f" ({metrics})" if metrics else ""))  # fmt: skip

    @lake_app.command("migrate")
    def migrate() -> None:
        """Apply the lake's schema migrations (nullable columns added in code) to existing tables."""
        from lake.migrations import MIGRATIONS, LakeMigrationError, apply_migrations

        try:
            applied = apply_migrations(_settings(), progress=lambda m: _err.print(f"[dim]{m}[/dim]"))
        except LakeMigrationError as exc:
            _err.print(f"[red]lake migrate:[/red] {exc}")
            raise typer.Exit(2) from exc
        _out.print(f"{len(applied)} applied now, {len(MIGRATIONS)} known: " + (", ".join(applied) or "up to date"))
