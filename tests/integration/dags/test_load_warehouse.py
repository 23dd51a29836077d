"""``dag.test()`` of ``load_warehouse`` in its own process against private shards, topics, lake and
an embedded warehouse: its three tasks load what the sources hold, and its quality task passes
(the shards are this test's own: the suites check references across every row)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from core.settings import PROJECT_ROOT
from tests.integration.dags.dag_test_runner import airflow_env
from tests.integration.warehouse.warehouse_testkit import build_world, private_shards, send_events, warehouse_settings


def test_load_warehouse_dag_loads_every_source(api_settings, tmp_path):
    with private_shards(api_settings) as private:
        _run_dag(warehouse_settings(private, tmp_path, uuid.uuid4().hex[:10]), tmp_path)


def _run_dag(settings, tmp_path):
    from warehouse.client import warehouse_session

    world = build_world(settings, students=3)
    send_events(world)
    lakehouse = {
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_POSTGRES__SHARDS": str(settings.postgres.shards),
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "LAKEHOUSE_LAKE__ROOT": settings.lake.root,
        "LAKEHOUSE_WAREHOUSE__DSN": settings.warehouse.dsn,
    }
    env = airflow_env(tmp_path / "airflow_home", lakehouse)
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.dags.dag_test_runner", "load_warehouse", json.dumps({})],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    print(done.stdout[-3000:])
    assert done.returncode == 0, f"load_warehouse failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "DAG_TEST_STATE load_warehouse success" in done.stdout
    assert "check_quality" in done.stdout + done.stderr

    with warehouse_session(settings.warehouse) as client:
        sources = dict(client.query("SELECT source, sum(rows) FROM warehouse_operations GROUP BY source").result_rows)
        events = client.query("SELECT count() FROM fact_api_events FINAL").result_rows[0][0]
        items = client.query("SELECT count() FROM dim_quiz_items FINAL").result_rows[0][0]
    assert set(sources) == {"postgres", "lake", "analytics"}
    assert events == len(world.events) and items == len(world.items)
    assert sources["postgres"] > 0
