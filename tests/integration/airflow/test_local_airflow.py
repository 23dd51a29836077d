"""The local Airflow end to end, started once for this module: a private state dir, port, metadata
database and DAGs folder (the project's DAG files plus a trivial one); the REST client lists,
triggers (idempotently, on a chosen run id), polls and records an asset event; `down` leaves no
process behind. `up`'s duration and the processes' memory are printed (`pytest -s`)."""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from core.settings import PROJECT_ROOT, Settings
from deploy.airflow import AirflowStartError, LocalAirflow, pss_mb, session_members
from deploy.stack import port_in_use
from orchestration.airflow_api import AirflowClient, Dag, DagRun

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.postgres]

ASSET_URI = "lakehouse-test://airflow/marker"
TEST_DAG = f'''\
"""A trivial DAG of the Airflow integration test: one task writes the file named in its run's conf."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import Asset, dag, task

MARKER = Asset(name="marker", uri="{ASSET_URI}")


@dag(dag_id="write_marker", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False, tags=["test"])
def write_marker() -> None:
    @task(outlets=[MARKER])
    def write(**context) -> str:
        from core.settings import Settings  # the project is importable, LAKEHOUSE_* arrive

        out = Path(context["dag_run"].conf["out"])
        out.write_text(f"{{context['run_id']}} {{Settings().stack.state_dir}}")
        return str(out)

    write()


@dag(dag_id="on_marker", schedule=[MARKER], start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False, tags=["test"])
def on_marker() -> None:
    @task
    def noop() -> None:
        return None

    noop()


write_marker()
on_marker()
'''


@dataclass
class Running:
    airflow: LocalAirflow
    client: AirflowClient
    up_seconds: float
    out_dir: Path


def _free_port_below_32768() -> int:
    for port in range(28100, 28200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not port_in_use(port):
            return port
    raise RuntimeError("no free port in 28100-28199")


def _create_database(settings: Settings, name: str, *, drop: bool = False) -> None:
    with psycopg.connect(settings.postgres.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
        statement = "DROP DATABASE IF EXISTS {} WITH (FORCE)" if drop else "CREATE DATABASE {}"
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


def _memory(airflow: LocalAirflow) -> tuple[float, float, int]:
    members = [pid for sid in airflow.recorded_sessions() for pid in session_members(sid)]
    return airflow.status().rss_mb, pss_mb(members), len(members)


@pytest.fixture(scope="module")
def running(settings: Settings, stack, tmp_path_factory) -> Iterator[Running]:
    run = uuid.uuid4().hex[:8]
    dags = tmp_path_factory.mktemp("dags")
    for dag_file in (PROJECT_ROOT / "dags").glob("*.py"):
        if dag_file.name != "__init__.py":
            shutil.copy(dag_file, dags / dag_file.name)
    (dags / "write_marker.py").write_text(TEST_DAG)
    overrides = settings.model_dump()
    overrides["stack"]["state_dir"] = tmp_path_factory.mktemp("airflow-state")
    overrides["airflow"].update(port=_free_port_below_32768(), dags_folder=dags)
    overrides["postgres"]["airflow_db"] = f"airflow_test_{run}"
    private = Settings(**overrides)
    _create_database(private, private.postgres.airflow_db)
    airflow = LocalAirflow(private)
    try:
        started = time.perf_counter()
        airflow.up()
        up_seconds = time.perf_counter() - started
        rss, pss, count = _memory(airflow)
        print(f"\n[airflow] up (fresh db) {up_seconds:.1f} s; {count} processes, RSS {rss:.0f} MB, PSS {pss:.0f} MB")
        login = airflow.login()
        with AirflowClient(login.url, username=login.user, password=login.password) as client:
            yield Running(airflow, client, up_seconds, tmp_path_factory.mktemp("out"))
    finally:
        airflow.down()
        _create_database(private, private.postgres.airflow_db, drop=True)


def _wait_for_dags(client: AirflowClient, wanted: set[str], timeout_s: float = 120.0) -> dict[str, Dag]:
    deadline = time.monotonic() + timeout_s
    while True:
        dags = {d.dag_id: d for d in client.list_dags()}
        if wanted <= dags.keys() or time.monotonic() > deadline:
            return dags
        time.sleep(2)


def test_up_again_is_a_no_op_on_the_same_processes(running: Running):
    before = running.airflow.recorded_sessions()
    started = time.perf_counter()
    status = running.airflow.up()
    assert time.perf_counter() - started < 10
    assert status.healthy, status.detail
    assert running.airflow.recorded_sessions() == before
    assert {p.role for p in status.processes} == {"api-server", "scheduler", "dag-processor"}


def test_project_dag_is_listed_without_import_errors(running: Running):
    dags = _wait_for_dags(running.client, {"maintain_lake", "write_marker", "on_marker"})
    assert {"maintain_lake", "write_marker", "on_marker"} <= dags.keys()
    assert running.client.import_errors() == []


def test_trigger_with_a_chosen_run_id_runs_once(running: Running):
    client = running.client
    _wait_for_dags(client, {"write_marker"})
    client.unpause("write_marker")
    run_id = f"test-{uuid.uuid4().hex[:8]}"
    out = running.out_dir / f"{run_id}.txt"

    first = client.trigger("write_marker", run_id=run_id, conf={"out": str(out)})
    again = client.trigger("write_marker", run_id=run_id, conf={"out": "/elsewhere"})

    raced = _trigger_as_if_raced(client, "write_marker", run_id=run_id)

    assert first.created and first.run_id == run_id and first.conf == {"out": str(out)}
    assert not again.created and again.run_id == run_id and again.conf == {"out": str(out)}
    assert not raced.created and raced.run_id == run_id
    started = time.perf_counter()
    final = client.wait_for_run("write_marker", run_id, timeout_s=240, poll_s=1)
    print(f"\n[airflow] trivial run queued -> {final.state} in {time.perf_counter() - started:.1f} s")
    assert final.state == "success"
    assert out.read_text() == f"{run_id} {running.airflow.stack.state_dir}"
    assert [r.run_id for r in client.list_dag_runs("write_marker")] == [run_id]
    tasks = client.task_instances("write_marker", run_id)
    assert [(t.task_id, t.state) for t in tasks] == [("write", "success")]
    rss, pss, count = _memory(running.airflow)
    print(f"[airflow] after a run: {count} processes, RSS {rss:.0f} MB, PSS {pss:.0f} MB")


def _trigger_as_if_raced(client: AirflowClient, dag_id: str, *, run_id: str) -> DagRun:
    """Triggers as if another caller created the run between the client's look-up and its POST:
    the look-up is made to miss, so the real server answers the POST with 409."""
    real = client._authorized
    missed = []

    def lookup_misses_once(method: str, path: str, **kwargs):
        if method == "GET" and path.endswith(f"/dagRuns/{run_id}") and not missed:
            missed.append(path)
            return httpx.Response(404, json={"detail": "simulated miss"})
        response = real(method, path, **kwargs)
        if method == "POST":
            assert response.status_code == 409, response.text
        return response

    client._authorized = lookup_misses_once  # type: ignore[method-assign]
    try:
        run = client.trigger(dag_id, run_id=run_id, conf={"out": "/raced"})
    finally:
        del client._authorized
    assert missed, "the look-up was not made"
    return run


def test_asset_event_is_recorded_by_uri(running: Running):
    client = running.client
    _wait_for_dags(client, {"on_marker"})
    asset_id = client.asset_id(ASSET_URI)

    event = client.create_asset_event(uri=ASSET_URI, extra={"source": "integration-test"})

    assert event.asset_id == asset_id and event.uri == ASSET_URI
    assert event.extra.get("source") == "integration-test"


def test_up_names_an_unreachable_metadata_database(settings: Settings, tmp_path):
    overrides = settings.model_dump()
    overrides["stack"]["state_dir"] = tmp_path
    overrides["airflow"]["port"] = _free_port_below_32768()
    overrides["postgres"]["airflow_db"] = f"airflow_missing_{uuid.uuid4().hex[:8]}"
    airflow = LocalAirflow(Settings(**overrides))
    with pytest.raises(AirflowStartError, match=r"cannot reach its metadata database .*airflow_missing_"):
        airflow.up()
    assert airflow.recorded_sessions() == []


def test_up_refuses_a_port_taken_by_another_process(settings: Settings, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        overrides = settings.model_dump()
        overrides["stack"]["state_dir"] = tmp_path
        overrides["airflow"]["port"] = port
        airflow = LocalAirflow(Settings(**overrides))
        with pytest.raises(AirflowStartError, match=f"port {port} .* already in use"):
            airflow.up()
    assert airflow.recorded_sessions() == []


def test_stack_down_stops_every_airflow_process_it_started(running: Running):
    from typer.testing import CliRunner

    from cli.main import app

    airflow = running.airflow
    sessions = airflow.recorded_sessions()
    assert len(sessions) == 3 and all(session_members(sid) for sid in sessions)

    started = time.perf_counter()
    # `lakehouse stack down` on this private state dir: it holds Airflow's PID files and no service's.
    result = CliRunner().invoke(
        app, ["stack", "down"], env={"LAKEHOUSE_STACK__STATE_DIR": str(airflow.stack.state_dir)}
    )
    print(f"\n[airflow] down {time.perf_counter() - started:.1f} s")

    assert result.exit_code == 0, result.output
    assert "stopped: airflow-scheduler, airflow-dag-processor, airflow-api-server" in result.output
    assert {sid: session_members(sid) for sid in sessions} == {sid: [] for sid in sessions}
    assert _processes_with_home(airflow.home) == []
    assert airflow.recorded_sessions() == []
    assert not port_in_use(airflow.settings.airflow.port)


def _processes_with_home(home: Path) -> list[int]:
    """Any process (of ours) whose environment names this AIRFLOW_HOME: catches one that left its session."""
    needle = f"AIRFLOW_HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
