"""``lakehouse quality check [--table T]``: the Great Expectations suites of ``quality/`` on the
configured lake, LanceDB, PostgreSQL and warehouse, and the freshness of the lake and the
warehouse loads; a table of results, exit 1 when an expectation fails."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings

quality_app = typer.Typer(
    help="Data quality: Great Expectations suites on every lake and warehouse table, and freshness",
    no_args_is_help=True,
)
_out = Console(width=None if sys.stdout.isatty() else 200)


@quality_app.command("check")
def check(
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            "-t",
            help="Only this suite (repeatable), e.g. silver/chunks, warehouse/fact_reviews, freshness/lake",
        ),
    ] = None,
) -> None:
    """Runs the suites; prints one line per suite and each failed expectation with its rows."""
    from quality.runner import all_suites
    from quality.runner import check as run_check

    settings = Settings()
    suites = all_suites(settings)
    unknown = sorted(set(table or []) - set(suites))
    if unknown:
        _out.print(f"[red]no suite for {', '.join(unknown)}[/red]; suites: {', '.join(suites)}")
        raise typer.Exit(2)
    report = run_check(settings, table or None)
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
