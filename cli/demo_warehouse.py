"""The demo's warehouse steps: a student answers the quiz and reviews a few cards through the API,
the warehouse is loaded (``warehouse.load``, what the ``load_warehouse`` DAG runs), one analyst
view is printed and the HTML report is written under the state dir."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from rich.console import Console
from rich.table import Table

from core.settings import Settings

Step = Callable[[str, Callable[[], str]], bool]


def run_warehouse_steps(
    settings: Settings, step: Step, client: httpx.Client, *, course_id: str, document_id: str, console: Console
) -> str | None:
    """Adds the warehouse steps to the demo's report; returns the report's path when written."""
    from cli.warehouse import run_query, write_report
    from warehouse.load import load_warehouse

    def study() -> str:
        quiz = client.get(f"/v1/documents/{document_id}/quiz")
        if quiz.status_code != 200:
            return "no quiz yet: nothing to answer"
        items = quiz.json()["items"]
        scores = []
        for attempt in range(2):  # a first try, then the same student again with other choices
            answers = []
            for i, item in enumerate(items):
                option = item["options"][(i + attempt) % len(item["options"])]
                answers.append({"item_id": item["item_id"], "option_id": option["option_id"]})
            graded = client.post(f"/v1/quizzes/{quiz.json()['quiz_id']}/attempts", json={"answers": answers})
            graded.raise_for_status()
            scores.append(f"{graded.json()['score']:.0f}/{graded.json()['max_score']:.0f}")
        reviewed = 0
        due = client.get(f"/v1/courses/{course_id}/reviews/due", params={"limit": 5}).json()
        for card in due.get("cards", []):
            body = {"rating": "good", "review_id": str(uuid.uuid4())}
            reviewed += client.post(f"/v1/cards/{card['card_id']}/reviews", json=body).status_code == 201
        return f"quiz answered twice ({', '.join(scores)}), {reviewed} flashcards reviewed"

    step("answer the quiz and review flashcards", study)
    loaded: dict[str, int] = {}

    def load() -> str:
        report = load_warehouse(settings)
        loaded.update({part.source: part.rows for part in report.sources})
        return ", ".join(f"{part.source} {part.rows} rows" for part in report.sources) + f" (run {report.run_id[:8]})"

    if not step("load the warehouse (PostgreSQL shards, Delta gold, analytics.events)", load):
        return None

    def view() -> str:
        columns, rows = run_query(settings, "SELECT * FROM v_ingestion_latency")
        table = Table(title='lakehouse sql "SELECT * FROM v_ingestion_latency" (seconds, upload -> searchable)')
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
        return f"{len(rows)} day(s) of ingestion latency percentiles"

    step("print an analyst view", view)
    written: dict[str, str] = {}

    def report() -> str:
        written["path"] = str(write_report(settings))
        console.print(f"[bold]warehouse report:[/bold] {written['path']}")
        return f"report: {written['path']}"

    step("render the warehouse report (HTML with plots)", report)
    return written.get("path")
