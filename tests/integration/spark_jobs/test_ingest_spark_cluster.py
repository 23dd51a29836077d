"""The ingestion job on a Spark standalone cluster (a master and one 1-core worker from the
pyspark install, on loopback) instead of ``local[N]``: the job runs as its own process with
``spark.master=spark://...`` and the same jars and settings; extraction and embedding tasks run
in the worker's executor, and the chunks in Delta and LanceDB are the PDF's own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings
from lake.tables import SILVER_CHUNKS, SILVER_DOCUMENTS
from processing import samples
from tests.integration.spark_jobs.ingest_testkit import (
    delta_rows,
    expected_chunk_ids,
    isolated_env,
    isolated_settings,
    lance_rows,
    upload,
)

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.kafka]


def _free_port_block(size: int = 4) -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + size > 65535:
            continue
        free = True
        for port in range(base, base + size):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no block of free loopback ports")


@pytest.fixture
def spark_cluster(tmp_path, settings):
    """A private standalone cluster (own state dir and ports), stopped by PID afterwards."""
    from deploy.spark_cluster import spark_cluster_service
    from deploy.stack import Stack

    private = Settings(
        environment="test",
        stack={"state_dir": tmp_path / "cluster", "services": ("spark-cluster",), "install_missing": False},
        spark={"cluster_port": _free_port_block()},
    )
    cluster = Stack(private)
    started = time.perf_counter()
    cluster.start(spark_cluster_service(cluster, None))
    print(f"spark cluster up in {time.perf_counter() - started:.1f} s")
    yield cluster
    assert cluster.stop("spark-cluster")
    assert cluster.running_pid("spark-cluster") is None


def test_ingest_flow_on_a_standalone_spark_cluster(spark_cluster, stack, tmp_path, run_id):
    from deploy.spark_cluster import master_state
    from streaming.kafka import json_producer

    master_url = spark_cluster.settings.spark.cluster_master_url
    settings = isolated_settings(tmp_path, run_id, spark={"master": master_url})
    producer = json_producer(settings.kafka)
    data = samples.short_pdf("Standalone clusters ship closures to executors, not to the driver's disk.", pages=4)
    doc = upload(settings, producer, data, course_id=f"course-sc-{run_id}", filename="cluster.pdf")
    producer.close()

    env = {**os.environ, **isolated_env(settings), "LAKEHOUSE_SPARK__MASTER": master_url}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    started = time.perf_counter()
    job = subprocess.run(
        [sys.executable, "-m", "spark_jobs.ingest_documents", "--available-now"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    print(f"available-now run on the cluster: {time.perf_counter() - started:.1f} s")
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]

    expected = expected_chunk_ids(settings, data, document_id=doc.document_id)
    delta_ids = [r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["document_id"] == doc.document_id]
    lance_ids = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == doc.document_id]
    assert expected and sorted(delta_ids) == sorted(lance_ids) == sorted(expected)
    documents = [r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] == doc.document_id]
    assert len(documents) == 1 and documents[0]["status"] == "indexed"

    # The work ran on the cluster: the master saw the application finish, and the worker's
    # executor (a separate JVM with its own Python workers) ran its tasks.
    state = master_state(spark_cluster.settings.spark.cluster_port + 1)
    apps = [app for app in state["completedapps"] if app["name"] == "ingest_documents"]
    assert len(apps) == 1, state["completedapps"]
    executor_logs = list((spark_cluster.data_dir("spark-cluster") / "work" / apps[0]["id"]).glob("*/stderr"))
    assert executor_logs, "no executor ran for the application"
    finished = sum(Path(log).read_text(errors="replace").count("Finished task") for log in executor_logs)
    assert finished > 0, "the executor ran no task"
    print(f"executor finished {finished} tasks")
