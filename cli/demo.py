"""`lakehouse demo`: the real flow on local defaults, as a student would see it.

Migrates the shards, generates a multi-hundred-page course PDF, starts the course service and
the streaming ingestion job as processes of their own, then over HTTP: signs up, creates a
course, uploads the PDF (202 + job), follows its progress on the notifications WebSocket,
and searches for phrases known to be on given pages, printing the hits with page numbers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.settings import PROJECT_ROOT, Settings

DEMO_PAGES = 300
PASSWORD = "demo-password-1234"  # noqa: S105 - a throwaway account of the local demo


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class DemoReport:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _process(argv: list[str], *, log_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A child process with its output in ``log_path``; terminated (then killed) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class _Notifications(threading.Thread):
    """Collects the WebSocket's job events for one job into a list (the progress bar reads it)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=10) as ws:
                while not self.stop.is_set():
                    try:
                        message = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    if message.get("type") == "snapshot":
                        self.ready.set()
                    elif message.get("type") == "job":
                        self.events.append(message["job"])
        except Exception as exc:  # noqa: BLE001 - reported in the summary, the demo polls instead
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()


def run_demo(settings: Settings, *, console: Console, pages: int = DEMO_PAGES) -> DemoReport:
    from deploy.migrate import migrate
    from processing.samples import course_book
    from spark_jobs.ingest.heartbeat import stream_is_ready

    report = DemoReport()
    state = settings.stack.state_dir
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}

    def step(name: str, action: Callable[[], str]) -> bool:
        console.print(f"[bold]demo:[/bold] {name} ...")
        started = time.perf_counter()
        try:
            detail, ok = action(), True
        except Exception as exc:  # noqa: BLE001 - every failure becomes a FAIL row with its reason
            detail, ok = f"{type(exc).__name__}: {exc}", False
        report.steps.append(Step(name, ok, time.perf_counter() - started, detail))
        return ok

    if not step(
        "migrate the PostgreSQL shards", lambda: f"{len(migrate(settings.postgres))} shard(s) at the latest schema"
    ):
        return report

    pdf_path = state / "demo" / f"course-{pages}-pages.pdf"
    book_holder: dict = {}

    def make_pdf() -> str:
        book = course_book(pages)
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        pdf_path.write_bytes(book.pdf)
        book_holder["book"] = book
        return f"{pdf_path.name}: {pages} pages, {len(book.pdf) / 1e6:.1f} MB"

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    api_log, job_log = state / "logs" / "demo-api.log", state / "logs" / "demo-ingest.log"
    api_argv = [sys.executable, "-m", "cli", "api", "--port", str(port)]
    job_argv = [sys.executable, "-m", "spark_jobs.ingest_documents", "--trigger-seconds", "1"]
    launched_at = time.time()
    with _process(job_argv, log_path=job_log, env=env) as job, _process(api_argv, log_path=api_log, env=env) as api:

        def wait_api() -> str:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if api.poll() is not None:
                    raise RuntimeError(f"the API exited with {api.returncode}:\n{_tail(api_log)}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        return f"{base} ready (logs: {api_log})"
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            raise TimeoutError(f"the API did not become ready in 60 s:\n{_tail(api_log)}")

        if not step("start the course service", wait_api):
            return report
        # The PDF is made while the ingestion job's JVM and model start up.
        if not step("generate a course PDF", make_pdf):
            return report

        def wait_job() -> str:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if job.poll() is not None:
                    raise RuntimeError(f"the ingestion job exited with {job.returncode}:\n{_tail(job_log)}")
                if stream_is_ready(settings, since=launched_at):  # its heartbeat, not a log line
                    return f"Spark Structured Streaming on Kafka (logs: {job_log})"
                time.sleep(0.5)
            raise TimeoutError(f"the ingestion stream did not start in 180 s:\n{_tail(job_log)}")

        if not step("start the streaming ingestion job", wait_job):
            return report
        client = httpx.Client(base_url=base, timeout=httpx.Timeout(30.0, write=120.0))
        session: dict = {}

        def sign_up_and_create_course() -> str:
            email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
            signed = client.post(
                "/v1/auth/signup",
                json={"email": email, "password": PASSWORD, "display_name": "Demo Instructor", "role": "instructor"},
            )
            signed.raise_for_status()
            tokens = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            tokens.raise_for_status()
            session["token"] = tokens.json()["access_token"]
            client.headers["Authorization"] = f"Bearer {session['token']}"
            course = client.post("/v1/courses", json={"title": "Streaming Lakehouses 101", "description": "demo"})
            course.raise_for_status()
            session["course"] = course.json()["id"]
            return f"{email} owns course {session['course']}"

        if not step("sign up and create a course", sign_up_and_create_course):
            return report

        notifications = _Notifications(f"ws://127.0.0.1:{port}/v1/notifications?access_token={session['token']}")
        notifications.start()
        notifications.ready.wait(10)

        def upload() -> str:
            started = time.perf_counter()
            with pdf_path.open("rb") as handle:
                response = client.post(
                    f"/v1/courses/{session['course']}/documents",
                    files={"files": (pdf_path.name, handle, "application/pdf")},
                )
            if response.status_code != 202:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
            [job_info] = response.json()["jobs"]
            session["job"], session["document"] = job_info["job_id"], job_info["document_id"]
            session["uploaded_at"] = time.perf_counter()
            return (
                f"202 Accepted in {time.perf_counter() - started:.2f} s; "
                f"job {job_info['job_id']} at {response.headers['Location']}"
            )

        if not step("upload the PDF", upload):
            return report

        def follow_progress() -> str:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, TextColumn("{task.fields[eta]}"), console=console) as progress:
                task = progress.add_task("indexing pages", total=pages, eta="")
                deadline = time.monotonic() + 900
                while time.monotonic() < deadline:
                    if job.poll() is not None:
                        raise RuntimeError(f"the ingestion job exited with {job.returncode}:\n{_tail(job_log)}")
                    mine = [e for e in notifications.events if e["job_id"] == session["job"]]
                    latest = mine[-1] if mine else client.get(f"/v1/jobs/{session['job']}").json()
                    eta = f"ETA {latest['eta_s']:.0f} s" if latest.get("eta_s") else ""
                    progress.update(task, completed=latest.get("pages_done") or 0, eta=eta)
                    if latest["status"] == "succeeded":
                        progress.update(task, completed=pages)
                        break
                    if latest["status"] == "failed":
                        raise RuntimeError(f"the job failed: {latest.get('error')}")
                    time.sleep(0.3)
                else:
                    raise TimeoutError(f"not indexed within 900 s; ingestion log:\n{_tail(job_log)}")
            seconds = time.perf_counter() - session["uploaded_at"]
            document = client.get(f"/v1/courses/{session['course']}/documents/{session['document']}").json()
            source = "WebSocket" if mine else "polling (WebSocket: " + (notifications.error or "no events") + ")"
            return (
                f"indexed in {seconds:.1f} s from upload: {document['pages']} pages, {document['chunks']} chunks; "
                f"{len(mine)} progress events via {source}"
            )

        if not step("follow indexing progress", follow_progress):
            notifications.stop.set()
            return report
        notifications.stop.set()

        def search() -> str:
            book = book_holder["book"]
            table = Table(title="Search: top hits with page numbers")
            for column in ("query", "rank", "pages", "score", "text"):
                table.add_column(column)
            found = 0
            for page, phrase in list(book.phrases.items())[:3]:
                query = phrase.rstrip(".")
                hits = client.get(f"/v1/courses/{session['course']}/search", params={"q": query, "k": 3}).json()["hits"]
                for rank, hit in enumerate(hits, start=1):
                    span = f"{hit['page_start']}" + (
                        f"-{hit['page_end']}" if hit["page_end"] != hit["page_start"] else ""
                    )
                    table.add_row(
                        query if rank == 1 else "", str(rank), span, f"{hit['score']:.4f}", _snippet(hit["text"], query)
                    )
                if hits and hits[0]["page_start"] <= page <= hits[0]["page_end"]:
                    found += 1
            console.print(table)
            if found < 3:
                raise AssertionError(f"only {found} of 3 phrases were found on their page as the top hit")
            return "3 of 3 phrases found on the right page as the top hit"

        if step("search with page citations", search):
            from cli.demo_study import run_study_steps

            run_study_steps(settings, step, client, session["document"], console)
            from cli.demo_warehouse import run_warehouse_steps

            run_warehouse_steps(
                settings, step, client, course_id=session["course"], document_id=session["document"], console=console
            )
        client.close()
    return report


def _snippet(text: str, query: str, width: int = 70) -> str:
    """The part of a passage around the query's words (its start when they are not in it)."""
    at = text.lower().find(" ".join(query.lower().split()[:2]))
    start = max(0, at - 10) if at >= 0 else 0
    return " ".join(text[start : start + width].split())


def print_report(report: DemoReport, console: Console) -> None:
    table = Table(title="Demo")
    for column in ("step", "result", "seconds", "detail"):
        table.add_column(column)
    for s in report.steps:
        table.add_row(s.name, "[green]OK[/green]" if s.ok else "[red]FAIL[/red]", f"{s.seconds:.1f}", s.detail[:400])
    console.print(table)
