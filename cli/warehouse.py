"""``lakehouse sql``, ``lakehouse report`` and ``lakehouse warehouse load|migrate``: the analysts'
commands on the configured warehouse (embedded chdb by default, a ClickHouse server by DSN)."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from cli.config import load_settings as _settings
from core.settings import Settings

warehouse_app = typer.Typer(help="The analysts' warehouse (ClickHouse / chdb)", no_args_is_help=True)
_out = Console(width=None if sys.stdout.isatty() else 200)
_err = Console(stderr=True)
Format = Literal["table", "csv", "json"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def format_rows(columns: list[str], rows: list[list[Any]], fmt: Format) -> str | Table:
    """Query results as CSV or JSON text, or a rich table."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, map(_plain, row), strict=True)) for row in rows], indent=1, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
        return buffer.getvalue()
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*("" if v is None else str(_plain(v)) for v in row))
    return table


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[list[Any]]]:
    """Runs one statement in a short warehouse session (migrated first, so the views exist)."""
    from warehouse.client import warehouse_session
    from warehouse.schema import migrate

    with warehouse_session(settings.warehouse) as client:
        migrate(client)
        result = client.query(sql)
        return list(result.column_names), [list(r) for r in result.result_rows]


def _fail(exc: Exception) -> typer.Exit:
    from warehouse.client import WarehouseBusy

    if isinstance(exc, WarehouseBusy):
        _err.print(f"[yellow]{exc}[/yellow]")
        return typer.Exit(3)
    _err.print(f"[red]query failed:[/red] {str(exc).strip()[:2000]}")
    return typer.Exit(1)


def sql(
    statement: Annotated[str, typer.Argument(help='A query, e.g. "SELECT * FROM v_item_analysis"')],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
) -> None:
    """Run a query against the configured warehouse and print the result."""
    if fmt not in ("table", "csv", "json"):
        _err.print(f"[red]--format must be table, csv or json, not {fmt!r}[/red]")
        raise typer.Exit(2)
    settings = _settings()  # a bad configuration exits 2 with its own message, not "query failed"
    try:
        columns, rows = run_query(settings, statement)
    except Exception as exc:
        raise _fail(exc) from exc
    shown = format_rows(columns, rows, fmt)  # type: ignore[arg-type]
    if isinstance(shown, str):
        sys.stdout.write(shown if shown.endswith("\n") else shown + "\n")
    elif rows:
        _out.print(shown)
        _out.print(f"({len(rows)} rows)")
    else:
        _out.print("(0 rows)")  # chdb returns no column names with an empty result


def default_report_path(settings: Settings) -> Path:
    return settings.stack.state_dir / "reports" / "warehouse.html"


def write_report(settings: Settings, path: Path | None = None) -> Path:
    """Renders every analyst view to one HTML file (default under the state dir)."""
    from warehouse.client import warehouse_session
    from warehouse.report import render_report
    from warehouse.schema import migrate

    target = path or default_report_path(settings)
    with warehouse_session(settings.warehouse) as client:
        migrate(client)
        return render_report(client, target)


def report(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write")] = None,
) -> None:
    """Render the analyst views (with plots) to one static HTML file."""
    settings = _settings()
    try:
        path = write_report(settings, output)
    except Exception as exc:
        raise _fail(exc) from exc
    _out.print(f"report: {path}")


@warehouse_app.command("load")
def load(
    full: Annotated[bool, typer.Option(help="Ignore the watermarks and read PostgreSQL and Delta again")] = False,
) -> None:
    """Load the warehouse once from the shards, the lake and the analytics topic (what the DAG runs)."""
    from warehouse.load import load_warehouse

    settings = _settings()
    try:
        result = load_warehouse(settings, full=full, progress=lambda m: _err.print(m))
    except Exception as exc:
        raise _fail(exc) from exc
    table = Table("source", "rows", "dead letters", "seconds", "watermark")
    for part in result.sources:
        table.add_row(part.source, str(part.rows), str(part.dead_letters), f"{part.seconds:.2f}", part.watermark)
    _out.print(table)


@warehouse_app.command("migrate")
def migrate_command() -> None:
    """Apply the warehouse's SQL migrations that are not applied yet."""
    from warehouse.client import warehouse_session
    from warehouse.schema import migrate

    settings = _settings()
    try:
        with warehouse_session(settings.warehouse) as client:
            applied = migrate(client)
    except Exception as exc:
        raise _fail(exc) from exc
    _out.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


def register(app: typer.Typer) -> None:
    """Adds ``sql``, ``report`` and the ``warehouse`` group to the ``lakehouse`` command."""
    app.command("sql")(sql)
    app.command("report")(report)
    app.add_typer(warehouse_app, name="warehouse")
