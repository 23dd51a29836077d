"""A Spark standalone cluster on loopback from the pyspark install: one master and one worker
(``lakehouse stack up --spark-cluster``), so the streaming job can run with
``spark.master=spark://127.0.0.1:<spark.cluster_port>`` instead of ``local[N]``.

Both daemons run through pyspark's own ``bin/spark-class`` under one shell, so the stack records
and stops them as one process group like any other service. Daemon heaps are 256 MB; the worker
offers ``spark.cluster_worker_cores`` cores and ``spark.cluster_worker_memory`` to executors.
The worker's environment carries the project on ``PYTHONPATH`` and this venv's Python (what a
cluster image with the project installed provides), so executors' Python workers import it.
"""

from __future__ import annotations

import json
import shlex
import sys
import urllib.request
from pathlib import Path

from core.settings import PROJECT_ROOT
from deploy.installers import Tools
from deploy.service import LOOPBACK, Service, ServiceStartError, StackPlaces

NAME = "spark-cluster"
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "256m"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def ports(cluster_port: int) -> dict[str, int]:
    """Master RPC, master UI, worker UI and worker RPC: four consecutive loopback ports."""
    return {"master": cluster_port, "master_ui": cluster_port + 1, "worker_ui": cluster_port + 2,
            "worker": cluster_port + 3}  # fmt: skip


def master_state(ui_port: int) -> dict:
    """The master's JSON status page: workers, alive workers, cores, running applications."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{ui_port}/json/", timeout=2) as resp:
        return json.loads(resp.read())


def spark_cluster_service(stack: StackPlaces, tools: Tools | None) -> Service:
    sp = stack.settings.spark
    p = ports(sp.cluster_port)
    home = stack.data_dir(NAME)
    spark_class = str(spark_home() / "bin" / "spark-class")
    master_url = sp.cluster_master_url
    master = [spark_class, MASTER, "--host", LOOPBACK, "--port", str(p["master"]), "--webui-port", str(p["master_ui"])]
    worker = [
        spark_class, WORKER, "--host", LOOPBACK, "--port", str(p["worker"]), "--webui-port", str(p["worker_ui"]),
        "--cores", str(sp.cluster_worker_cores), "--memory", sp.cluster_worker_memory,
        "--work-dir", str(home / "work"), master_url,
    ]  # fmt: skip
    script = f"{shlex.join(master)} & sleep 1; {shlex.join(worker)} & wait"

    def health() -> None:
        state = master_state(p["master_ui"])
        if state.get("status") != "ALIVE" or int(state.get("aliveworkers", 0)) < 1:
            raise ServiceStartError(f"{NAME}: master {state.get('status')}, {state.get('aliveworkers')} alive workers")

    return Service(
        name=NAME,
        ports=tuple(p.values()),
        argv=["/bin/sh", "-c", script],
        prepare=lambda: (home / "work").mkdir(parents=True, exist_ok=True),
        health=health,
        env={
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": LOOPBACK,
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "SPARK_WORKER_DIR": str(home / "work"),
            "SPARK_NO_DAEMONIZE": "1",
            "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": str(PROJECT_ROOT),
            **({"JAVA_HOME": str(tools.java.resolve().parent.parent)} if tools else {}),
        },
    )
