"""`lakehouse` command line: the local stack, the demo, ingestion, migrations, users, jobs and the lake."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.config import load_settings as _settings
from cli.kafka import register as register_kafka
from cli.lake import register as register_lake
from cli.quality import register as register_quality
from cli.reprocess import register as register_reprocess
from cli.reshard import register as register_reshard
from cli.trace import register as register_trace
from cli.warehouse import register as register_warehouse

if TYPE_CHECKING:
    from deploy.airflow import AirflowStatus

app = typer.Typer(help="Lakehouse for Learning", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack: PostgreSQL, Redis, Kafka, MinIO", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
db_app = typer.Typer(help="PostgreSQL shards: schema migrations, the shard map, resharding", no_args_is_help=True)
app.add_typer(db_app, name="db")
lake_app = typer.Typer(help="The lake: Delta tables and LanceDB", no_args_is_help=True)
app.add_typer(lake_app, name="lake")
users_app = typer.Typer(help="Accounts that cannot be made through the API", no_args_is_help=True)
app.add_typer(users_app, name="users")
jobs_app = typer.Typer(help="Ingestion jobs", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
airflow_app = typer.Typer(help="The local Airflow: api-server, scheduler, dag-processor", no_args_is_help=True)
app.add_typer(airflow_app, name="airflow")
register_quality(app)  # lakehouse quality check (cli/quality.py)
register_warehouse(app)  # lakehouse sql / report / warehouse load|migrate (cli/warehouse.py)
register_reshard(db_app)  # lakehouse db reshard / shard-map (cli/reshard.py)
register_kafka(app)  # lakehouse kafka topics|consume|groups (cli/kafka.py)
register_trace(app)  # lakehouse trace DOCUMENT_ID (cli/trace.py)
register_reprocess(app, lake_app)  # lakehouse reprocess, lake versions|status (cli/reprocess.py)
register_lake(lake_app)  # lakehouse lake maintain|history|show|restore|migrate (cli/lake.py)
# Piped output (CI logs, `| tee`) gets a wide console so tables do not wrap into columns of words.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def _report(phase: str, seconds: float, note: str) -> None:
    console.print(f"[setup] {phase:<28} {seconds:6.1f} s  {note}", markup=False, highlight=False)


@stack_app.command("up")
def stack_up(
    api_instances: Annotated[
        int, typer.Option("--api-instances", min=0, help="Also start N API processes behind nginx (edge.port)")
    ] = 0,
    spark_cluster: Annotated[
        bool,
        typer.Option("--spark-cluster", help="Also start a Spark standalone master and worker (spark.cluster_port)"),
    ] = False,
) -> None:
    """Install what is missing and start every service (idempotent)."""
    from deploy.edge import Edge
    from deploy.installers import InstallError
    from deploy.stack import ServiceStartError, Stack

    settings = _settings()
    started = time.perf_counter()
    try:
        stack = Stack(settings, report=_report)
        statuses = stack.up()
        edge = Edge(stack).up(instances=api_instances) if api_instances else None
        if spark_cluster:
            from deploy.spark_cluster import spark_cluster_service

            stack.start(spark_cluster_service(stack, None))
    except (ServiceStartError, InstallError) as exc:
        err.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    _print_status(statuses)
    if edge is not None:
        console.print(f"web page and API through nginx: {edge.url} (API instances on ports {edge.api_ports})")
    if spark_cluster:
        console.print(
            f"Spark standalone cluster: {settings.spark.cluster_master_url} (master UI on port "
            f"{settings.spark.cluster_port + 1}); run the job on it with LAKEHOUSE_SPARK__MASTER set to that URL"
        )
    console.print(f"[setup] {'stack up total':<28} {time.perf_counter() - started:6.1f} s", markup=False)


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` and `airflow up` started (by PID)."""
    from deploy.airflow import LocalAirflow
    from deploy.stack import Stack

    settings = _settings()
    # Airflow first: its processes hold connections to the stack's PostgreSQL.
    stopped = [*LocalAirflow(settings).down(), *Stack(settings).down()]
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status() -> None:
    """Health and latency of each service."""
    from deploy.stack import Stack

    statuses = Stack(_settings()).status()
    _print_status(statuses)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    service: Annotated[str, typer.Argument(help="postgres | redis | kafka | objectstore | redis-(spark-)cluster")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50,
) -> None:
    """The last lines of a service's log."""
    from deploy.stack import Stack

    stack = Stack(_settings())
    if service not in {"postgres", "redis", "kafka", "objectstore", "redis-cluster", "spark-cluster"}:
        err.print(f"[red]unknown service {service!r}[/red]: choose postgres, redis, kafka, objectstore, redis-cluster")
        raise typer.Exit(2)
    console.print(f"[dim]{stack.log_file(service)}[/dim]")
    console.print(stack.tail(service, lines), markup=False, highlight=False)


def _print_status(statuses: list) -> None:
    table = Table(title="Local stack")
    for column in ("service", "pid", "ports", "healthy", "latency", "detail"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.name,
            str(s.pid or "-"),
            ",".join(map(str, s.ports)),
            "[green]yes[/green]" if s.healthy else "[red]no[/red]",
            f"{s.latency_ms:.1f} ms" if s.latency_ms is not None else "-",
            s.detail,
        )
    console.print(table)


@airflow_app.command("up")
def airflow_up() -> None:
    """Start Airflow on loopback (idempotent), wait for health, print the address and login."""
    from deploy.airflow import AirflowStartError, LocalAirflow

    settings = _settings()
    airflow = LocalAirflow(settings, report=_report)
    started = time.perf_counter()
    try:
        status = airflow.up()
    except AirflowStartError as exc:
        err.print("[red]airflow up failed:[/red]")
        err.print(str(exc), markup=False, highlight=False)  # log lines hold brackets rich would parse
        raise typer.Exit(1) from exc
    _print_airflow_status(status)
    login = airflow.login()
    console.print(f"[setup] {'airflow up total':<28} {time.perf_counter() - started:6.1f} s", markup=False)
    console.print(f"Airflow UI: {login.url}  user: {login.user}  password: {login.password}", markup=False)


@airflow_app.command("down")
def airflow_down() -> None:
    """Stop exactly the Airflow processes `airflow up` started."""
    from deploy.airflow import LocalAirflow

    stopped = LocalAirflow(_settings()).down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@airflow_app.command("status")
def airflow_status() -> None:
    """Each Airflow process and the api-server's health."""
    from deploy.airflow import LocalAirflow

    status = LocalAirflow(_settings()).status()
    _print_airflow_status(status)
    if not status.healthy:
        raise typer.Exit(1)


def _print_airflow_status(status: AirflowStatus) -> None:
    table = Table(title=f"Airflow {status.url}")
    for column in ("process", "pid", "processes", "RSS", "health", "log"):
        table.add_column(column)
    health = status.health or {}
    keys = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
    for p in status.processes:
        state = (health.get(keys[p.role]) or {}).get("status") if p.role in keys else ("up" if health else None)
        table.add_row(p.role, str(p.pid or "-"), str(p.members), f"{p.rss_mb:.0f} MB", state or "-", str(p.log))
    console.print(table)
    console.print(f"health: {status.detail}   total RSS: {status.rss_mb:.0f} MB", markup=False)


@app.command("smoke")
def smoke() -> None:
    """Exercise every part of the stack once and print a summary table."""
    from cli.smoke import run_smoke

    results = run_smoke(_settings(), console=console)
    table = Table(title="Smoke test")
    for column in ("check", "result", "seconds", "detail"):
        table.add_column(column)
    for r in results:
        table.add_row(r.name, "[green]OK[/green]" if r.ok else "[red]FAIL[/red]", f"{r.seconds:.1f}", r.detail)
    console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDF files and/or folders (searched recursively)")],
    course: Annotated[str, typer.Option("--course", "-c", help="Course id to upload into")],
    token: Annotated[str, typer.Option(envvar="LAKEHOUSE_API_TOKEN", help="Access token (or LAKEHOUSE_API_TOKEN)")],
    api_url: Annotated[str, typer.Option("--api", help="Base URL of the course service")] = "http://127.0.0.1:8000",
    replace: Annotated[bool, typer.Option(help="Upload identical files again as a new version")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every document is indexed or failed")] = True,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for indexing")] = 1800.0,
) -> None:
    """Upload a file or whole folders of PDFs to a course, with a progress bar."""
    import httpx

    from cli.ingest import IngestError, collect_pdfs, upload_all, wait_for_jobs

    try:
        files = collect_pdfs(paths)
    except IngestError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if not files:
        err.print("[red]no PDF files found[/red]")
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=httpx.Timeout(30.0, write=300.0)) as client:
        uploaded, failed = upload_all(client, course, files, replace=replace, console=console)
        for path, reason in failed:
            err.print(f"[red]refused[/red] {path}: {reason}")
        duplicates = sum(u.duplicate for u in uploaded)
        console.print(f"{len(uploaded)} accepted ({duplicates} already present), {len(failed)} refused")
        if wait and uploaded:
            final = wait_for_jobs(
                client, [u for u in uploaded if not u.duplicate], console=console, timeout_s=timeout_s
            )
            table = Table(title="Indexing")
            for column in ("file", "status", "pages", "detail"):
                table.add_column(column)
            by_job = {u.job_id: u for u in uploaded}
            for job_id, job in final.items():
                table.add_row(
                    by_job[job_id].path.name, job["status"], str(job.get("pages_total") or "-"), job.get("error") or ""
                )
            console.print(table)
            if any(job["status"] != "succeeded" for job in final.values()):
                raise typer.Exit(1)
    if failed:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    pages: Annotated[int, typer.Option(min=10, help="Pages of the generated course PDF")] = 300,
) -> None:
    """The platform end to end on local defaults: upload a generated course PDF through the API,
    index it with the streaming job, follow progress live, search with page numbers."""
    from cli.demo import print_report, run_demo

    report = run_demo(_settings(), console=console, pages=pages)
    print_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(
    create: Annotated[bool, typer.Option(help="Create shard databases that do not exist first")] = True,
) -> None:
    """Apply deploy/migrations/*.sql to every shard database (idempotent)."""
    from deploy.migrate import MigrationError, create_databases, migrate

    settings = _settings()
    try:
        created = create_databases(settings.postgres) if create else []
        results = migrate(settings.postgres)
    except MigrationError as exc:
        err.print(f"[red]migration failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title="Schema migrations")
    for column in ("shard database", "created", "applied", "already applied"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.database, "yes" if r.database in created else "-", ", ".join(r.applied) or "-", str(len(r.skipped))
        )
    console.print(table)


@users_app.command("create-admin")
def users_create_admin(
    email: Annotated[str, typer.Argument(help="The admin's email (login name)")],
    display_name: Annotated[str, typer.Option("--name", help="Display name")] = "Administrator",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts)")
    ] = False,
) -> None:
    """Create an admin account. The password comes from a prompt or stdin, never the command line."""
    from cli.users import EmailTaken, WeakPassword, create_admin
    from core.db import ShardedPostgres
    from records.users import UserRecords

    settings = _settings()
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = ShardedPostgres(settings.postgres)
    try:
        user = create_admin(UserRecords(db), email=email, password=password, display_name=display_name)
    except WeakPassword as exc:
        err.print(f"[red]password refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    except EmailTaken as exc:
        err.print(f"[red]an account with {email} already exists[/red]")
        raise typer.Exit(1) from exc
    finally:
        db.close()
    console.print(f"admin created: {user['email']} (id {user['id']})")


@jobs_app.command("retry")
def jobs_retry(
    failed: Annotated[bool, typer.Option("--failed", help="Re-queue every failed document version")] = False,
    course: Annotated[str | None, typer.Option("--course", help="Only this course's documents")] = None,
) -> None:
    """Re-queue failed documents for ingestion (e.g. after an object-store outage)."""
    from rich.progress import Progress

    from cli.jobs import retry_failed
    from core.db import ShardedPostgres
    from core.jobs import JobReporter
    from core.redis import invalidate_document_cache, redis_client
    from lake.store import object_store
    from records.documents import DocumentRecords
    from streaming.kafka import EventPublisher

    if not failed:
        err.print("[red]say which jobs to retry:[/red] --failed (optionally with --course ID)")
        raise typer.Exit(2)
    if course is not None:
        try:
            course = str(uuid.UUID(course))
        except ValueError as exc:
            err.print(f"[red]--course must be a course id (UUID), got {course!r}[/red]")
            raise typer.Exit(2) from exc
    settings = _settings()
    db = ShardedPostgres(settings.postgres)
    publisher = EventPublisher(settings.kafka, client_id="lakehouse-cli")
    redis = redis_client(settings.redis)
    try:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("re-queueing failed documents", total=None)
            requeued = retry_failed(
                DocumentRecords(db),
                store=object_store(settings.object_store),
                publisher=publisher,
                reporter=JobReporter(redis),
                invalidate=lambda course_id, document_id: invalidate_document_cache(
                    redis, key_prefix=settings.redis.key_prefix, course_id=course_id, document_id=document_id
                ),
                course_id=course,
                progress=lambda _r: bar.advance(task),
            )
    finally:
        publisher.close()
        db.close()
    table = Table(title=f"Re-queued {len(requeued)} document(s)")
    for column in ("course", "document", "version", "file", "attempt", "job", "last error"):
        table.add_column(column)
    for r in requeued:
        error = (r.previous_error or "")[:80]
        table.add_row(r.course_id, r.document_id, str(r.version), r.filename, str(r.attempt), r.job_id, error)
    console.print(table)


@app.command("api")
def serve_api(
    host: Annotated[str | None, typer.Option(help="Bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: api.port)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the course service with uvicorn (settings from LAKEHOUSE_* variables)."""
    import uvicorn

    from api.main import uvicorn_proxy_options
    from deploy.web_build import build_web

    settings = _settings()
    build_web(settings)  # the page the API serves at /
    uvicorn.run(
        "api.main:app_from_env",
        factory=True,
        host=host or settings.api.host,
        port=port or settings.api.port,
        workers=workers,
        access_log=False,  # the app logs one line per request, with its request id
        **uvicorn_proxy_options(settings.api),
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
