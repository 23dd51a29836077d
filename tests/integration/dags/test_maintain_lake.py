"""``dag.test()`` of ``maintain_lake`` in its own process on a private lake with many small files
and an embedded warehouse: the DAG migrates, maintains, logs files and bytes per step and records
the steps in ``fact_lake_maintenance``."""

from __future__ import annotations

import json
import subprocess
import sys

from core.settings import PROJECT_ROOT
from lake import tables, vectors
from tests.integration.dags.dag_test_runner import airflow_env
from tests.integration.lake.lake_testkit import append_delta, lake_env, lake_settings, lance_rows, page_rows


def test_maintain_lake_dag_compacts_and_records_each_step(tmp_path):
    settings = lake_settings(tmp_path)
    for n in range(3):
        append_delta(settings, tables.SILVER_PAGES, page_rows("course-a", f"doc-{n}", 3))
    chunks = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    for n in range(2):
        vectors.upsert_chunks(chunks, lance_rows("course-a", f"doc-{n}", 3))
    (tmp_path / "warehouse").mkdir()
    env = airflow_env(tmp_path / "airflow_home", lake_env(settings))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip

    done = run("tests.integration.dags.dag_test_runner", "maintain_lake", json.dumps({}))
    assert done.returncode == 0, f"maintain_lake failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    logs = done.stdout + done.stderr
    assert "DAG_TEST_STATE maintain_lake success" in logs
    assert "0 expired index version(s) dropped" in logs, logs[-3000:]  # the last task ran; nothing retired here
    assert "silver/pages optimize: files 3 -> 1" in logs and "lancedb/chunks lancedb: files 2 -> " in logs, logs[-3000:]
    query = "SELECT table_name, step, files_before, files_after FROM fact_lake_maintenance FINAL"
    done = run("cli.main", "sql", query, "-f", "json")
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)
    assert {"table_name": "silver/pages", "step": "optimize", "files_before": 3, "files_after": 1} in recorded
    assert {(r["table_name"], r["step"]) for r in recorded} == {
        ("silver/pages", "optimize"), ("silver/pages", "checkpoint"), ("silver/pages", "vacuum"),
        ("lancedb/chunks", "lancedb"),
    }  # fmt: skip
