"""``lakehouse trace DOCUMENT_ID``: one document's journey from the JSON log lines, by time.

The API's upload logs ``document queued`` with the document, job and trace ids (and its request
id); the ingestion stream logs each stage (received, started, searchable, indexed | failed) with
the same ids. Lines are read from ``<state_dir>/logs/*.log`` (where ``lakehouse stack up
--api-instances`` and the demo write the API's and the stream's output) and any ``--log`` file.
A line belongs to the journey when it names the document, or carries one of the document's
trace ids or the request id of its upload (the access-log line of the POST).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings

_err = Console(stderr=True)


def json_lines(paths: Iterable[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every JSON object line of the files (other lines, such as a JVM's, are skipped)."""
    for path in paths:
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        with handle:
            for raw in handle:
                if not raw.startswith("{"):
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    yield path, line


def journey(document_id: str, paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The log lines of one document's journey, ordered by time, each with its ``source`` file."""
    lines = [{**line, "source": path.name} for path, line in json_lines(paths)]
    own = [line for line in lines if line.get("document_id") == document_id]
    traces = {line["trace_id"] for line in own if line.get("trace_id")}
    requests = {line["request_id"] for line in own if line.get("request_id") not in (None, "-")}
    related = [
        line
        for line in lines
        if line.get("document_id") == document_id
        or (line.get("document_id") is None and line.get("trace_id") in traces and line.get("trace_id"))
        or (line.get("document_id") is None and line.get("request_id") in requests)
    ]
    return sorted(related, key=lambda line: str(line.get("ts", "")))


def register(app: typer.Typer) -> None:
    """Adds ``lakehouse trace`` to the CLI."""

    @app.command("trace")
    def trace(
        document_id: Annotated[str, typer.Argument(help="The document's id (from the upload's 202 answer)")],
        log: Annotated[list[Path] | None, typer.Option("--log", help="Another log file to read (repeatable)")] = None,
    ) -> None:
        """Print one document's journey (API request, queue, stream stages) from the logs, by time."""
        try:
            settings = Settings()
        except Exception as exc:
            _err.print(f"[red]configuration error:[/red] {exc}")
            raise typer.Exit(2) from exc
        log_dir = settings.stack.state_dir.resolve() / "logs"
        paths = sorted(log_dir.glob("*.log")) + list(log or [])
        lines = journey(document_id, paths)
        if not lines:
            _err.print(f"no log line names document {document_id} in {log_dir}/*.log" + (" or --log" if log else ""))
            raise typer.Exit(1)
        table = Table(title=f"Journey of document {document_id}")
        for column in ("time", "source", "stage", "trace id", "request id", "message"):
            table.add_column(column)
        for line in lines:
            stage = line.get("stage") or ("request" if line.get("logger") == "api.access" else "-")
            message = line.get("message", "")
            if line.get("path"):
                message = f"{line.get('method', '')} {line['path']} -> {line.get('status', '')}"
            elif line.get("reason"):
                message = f"{message}: {line['reason']}"
            table.add_row(
                str(line.get("ts", "")),
                line["source"],
                str(stage),
                str(line.get("trace_id") or "-"),
                str(line.get("request_id") or "-"),
                str(message),
            )
        Console(width=None if _err.is_terminal else 200).print(table)
