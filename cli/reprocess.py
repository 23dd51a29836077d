"""`lakehouse reprocess` and `lakehouse lake versions|status`: rebuild a scope into a new index
version (``lake.reprocess``), list the versions, drop the expired ones."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.config import load_settings as _settings

console = Console(stderr=False, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def reprocess_command(
    course: Annotated[str | None, typer.Option("--course", help="Every current document of this course")] = None,
    document: Annotated[str | None, typer.Option("--document", help="This document's current version")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every current document of the lake")] = False,
    chunk_size: Annotated[int | None, typer.Option(min=100, help="Characters per chunk (default: live's)")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(min=0, help="Characters shared by consecutive chunks")] = None,
    embedding_model: Annotated[str | None, typer.Option(help="Embedding model package (needs --all)")] = None,
    precision: Annotated[str | None, typer.Option(help="auto|fp32|bf16|int8 (needs --all)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Switch even if recall is lower")] = False,
    gold: Annotated[
        bool, typer.Option("--gold/--no-gold", help="Regenerate the scope's notes, quizzes and cards after the switch")
    ] = True,
) -> None:
    """Rebuild silver and LanceDB for a scope from the raw uploads into a new index version,
    check it, switch search to it atomically, then regenerate the scope's study material (gold)
    from the new chunks. Rerun the same command to resume after a crash."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lake.reprocess import ReprocessCheckFailed, ReprocessError, Scope, reprocess
    from lake.spark import build_spark_session

    if precision is not None and precision not in ("auto", "fp32", "bf16", "int8"):
        err.print(f"[red]--precision must be auto, fp32, bf16 or int8, got {precision!r}[/red]")
        raise typer.Exit(2)
    try:
        scope = Scope.of(course=course, document=document, everything=everything)
    except ReprocessError as exc:
        err.print(f"[red]reprocess:[/red] {exc}")
        raise typer.Exit(2) from exc
    settings = _settings()
    spark = build_spark_session(settings, "reprocess")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("pages"),
               TimeRemainingColumn())  # fmt: skip
    try:
        with Progress(*columns, console=err, transient=False) as bar:
            tasks: dict[str, Any] = {}

            def show(p: Any) -> None:
                if p.stage in ("document", "skip") and p.document_id:
                    if p.document_id not in tasks:
                        label = (
                            f"[{p.document_index}/{p.documents}] {p.document_id[:8]}"
                            if p.documents
                            else p.document_id[:8]
                        )
                        tasks[p.document_id] = bar.add_task(label, total=max(p.pages_total, 1))
                    bar.update(tasks[p.document_id], completed=p.pages_done, total=max(p.pages_total, 1))
                elif p.message:
                    bar.console.print(f"[dim]{p.stage}:[/dim] {p.message}", highlight=False)

            result = reprocess(
                spark, settings, scope, chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                embedding_model=embedding_model, precision=precision, force=force, progress=show,
            )  # fmt: skip
    except ReprocessError as exc:
        err.print(f"[red]reprocess:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ReprocessCheckFailed as exc:
        err.print(f"[red]reprocess: the new index version failed its checks; search stays on the live one:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        spark.stop()
    _update_postgres(settings, result)
    v = result.version
    console.print(
        f"index version {v.version} ({v.table_name}, chunk size {v.chunk_size}, {v.embedding_model} {v.precision}) "
        f"is live (was {result.previous.version}): {result.documents} document(s), {result.built} built, "
        f"{result.resumed} resumed, {sum(result.chunks.values())} chunks in scope, {result.seconds:.1f} s",
        highlight=False,
    )
    for line in result.checks:
        console.print(f"  check: {line}", highlight=False)
    if gold:
        _regenerate_gold(settings, scope)
    else:
        console.print("  gold (study material) left as it was (--no-gold): it cites the retired version's chunks")


def _regenerate_gold(settings: Any, scope: Any) -> None:
    """The scope's notes, quizzes and flashcards made anew from the switched index (the old ones
    cite chunks of the retired version). A failure leaves the index switched and names the rerun."""
    from datetime import UTC, datetime

    from study.batch import regenerate_scope

    def report(kind: str, summary: dict[str, Any]) -> None:
        detail = ", ".join(
            f"{k} {v}" for k, v in summary.items() if k in ("items", "flashcards", "sections", "skipped")
        )
        console.print(f"  gold {kind}: {summary.get('document_id', '')[:8]} v{summary.get('version')} {detail}",
                      highlight=False)  # fmt: skip

    try:
        made = regenerate_scope(
            settings,
            course_id=scope.id if scope.kind == "course" else None,
            document_id=scope.id if scope.kind == "document" else None,
            run_at=datetime.now(UTC),
            report=report,
        )
    except Exception as exc:
        err.print(f"[red]gold not regenerated ({type(exc).__name__}: {exc}); the index is switched: rerun the study"
                  " DAGs with force, or this command[/red]")  # fmt: skip
        raise typer.Exit(1) from exc
    console.print(f"  gold regenerated: notes of {made['notes']}, quizzes and cards of {made['quiz']} version(s)",
                  highlight=False)  # fmt: skip


def _update_postgres(settings: Any, result: Any) -> None:
    """PostgreSQL's chunk counts of the reprocessed versions (the index already switched: a
    failure here is a warning naming the fix, not an error)."""
    from core.db import ShardedPostgres
    from lake.reprocess import counts_by_course
    from records.documents import DocumentRecords

    try:
        db = ShardedPostgres(settings.postgres)
        try:
            records = DocumentRecords(db)
            changed = sum(
                records.set_chunk_counts(course, counts) for course, counts in counts_by_course(result).items()
            )
        finally:
            db.close()
    except Exception as exc:  # noqa: BLE001 - reported, the reprocess itself succeeded
        err.print(f"[yellow]warning:[/yellow] PostgreSQL chunk counts not updated ({exc}); rerun the reprocess")
        return
    console.print(f"PostgreSQL: chunk counts of {changed} document version(s) updated", highlight=False)


def versions_table(settings: Any) -> Table:
    from lake import index_versions
    from lake.vectors import connect

    db = connect(settings.lancedb)
    versions = index_versions.list_versions(db) or [index_versions.first_version(settings)]
    table = Table(title=f"Index versions (retired ones kept {settings.lancedb.index_version_keep_hours:g} h)")
    for column in ("version", "table", "state", "chunk size", "overlap", "embedding", "scope", "created", "live since",
                   "retired"):  # fmt: skip
        table.add_column(column)

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"

    for v in versions:
        table.add_row(str(v.version), v.table_name, v.state, str(v.chunk_size), str(v.chunk_overlap),
                      f"{v.embedding_model} {v.precision}", v.scope, when(v.created_at if v.version > 1 else None),
                      when(v.live_at), when(v.retired_at))  # fmt: skip
    return table


def lake_versions(
    drop_expired: Annotated[bool, typer.Option("--drop-expired", help="Drop retired versions past keep time")] = False,
    abandon: Annotated[int | None, typer.Option("--abandon", help="Mark an unfinished version failed")] = None,
) -> None:
    """List the index versions (LanceDB chunks tables); drop expired ones; abandon a build."""
    from lake import index_versions
    from lake.vectors import connect

    settings = _settings()
    db = connect(settings.lancedb)
    if abandon is not None:
        found = [v for v in index_versions.list_versions(db) if v.version == abandon]
        if not found or found[0].state not in ("building", "checked"):
            err.print(f"[red]no unfinished index version {abandon}[/red]")
            raise typer.Exit(2)
        index_versions.mark(db, found[0], "failed", note="abandoned")
    if drop_expired:
        for v in index_versions.drop_expired(db, settings):
            console.print(f"dropped index version {v.version} ({v.table_name})")
    console.print(versions_table(settings))


def lake_status() -> None:
    """The index version search serves, and its settings beside the configured ones."""
    from lake import index_versions
    from lake.vectors import connect

    settings = _settings()
    live = index_versions.live_version(connect(settings.lancedb), settings)
    console.print(
        f"index version {live.version} is live: table {live.table_name}, chunk size {live.chunk_size}/"
        f"{live.chunk_overlap}, {live.embedding_model} {live.precision}, scope {live.scope}",
        highlight=False,
    )
    configured = (settings.embedding.model_package, settings.embedding.precision)
    if configured != (live.embedding_model, live.precision):
        console.print(
            f"[yellow]warning:[/yellow] uploads and queries are embedded with the configured {configured}, not the "
            f"live version's {(live.embedding_model, live.precision)}: set embedding.model_package/precision to "
            "match and restart the stream and the API"
        )


def register(app: typer.Typer, lake_app: typer.Typer) -> None:
    app.command("reprocess")(reprocess_command)
    lake_app.command("versions")(lake_versions)
    lake_app.command("status")(lake_status)
