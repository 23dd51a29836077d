"""``lakehouse quality check [--table T]``: the Great Expectations suites of ``quality/`` on the
configured lake, LanceDB and PostgreSQL; a table of results, exit 1 when an expectation fails."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings

quality_app = typer.Typer(help="Data quality: Great Expectations suites on every lake table", no_args_is_help=True)
_out = Console(width=None if sys.stdout.isatty() else 200)


@quality_app.command("check")
def check(
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="Only this suite (repeatable), e.g. silver/chunks")
    ] = None,
) -> None:
    """Runs the suites; prints one line per suite and each failed expectation with its rows."""
    from quality.runner import check as run_check
    from quality.suites import SUITES

    unknown = sorted(set(table or []) - set(SUITES))
    if unknown:
        _out.print(f"[red]no suite for {', '.join(unknown)}[/red]; suites: {', '.join(SUITES)}")
        raise typer.Exit(2)
    report = run_check(Settings(), table or None)
    summary = Table(title="Quality suites")
    for column in ("suite", "status", "rows", "expectations", "failed"):
        summary.add_column(column)
    for result in report.results:
        colour = {"passed": "green", "failed": "red"}.get(result.status, "yellow")
        failed = result.note if result.status == "skipped" else str(len(result.failures))
        status = f"[{colour}]{result.status}[/{colour}]"
        summary.add_row(result.suite, status, str(result.rows), str(result.expectations), failed)
    _out.print(summary)
    for line in report.failures():
        _out.print(f"[red]FAILED[/red] {line}", markup=True, highlight=False)
    if report.data_docs is not None:
        _out.print(f"Data Docs: {report.data_docs}")
    if not report.success:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app, name="quality")
