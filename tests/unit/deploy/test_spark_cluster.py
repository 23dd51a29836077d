"""The standalone cluster's service definition: loopback, small memory, ports from Settings."""

from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from deploy.spark_cluster import DAEMON_MEMORY, MASTER, WORKER, ports, spark_cluster_service


class _Places:
    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings, self.root = settings, root

    def data_dir(self, name: str) -> Path:
        return self.root / name


def test_master_and_worker_on_loopback_with_small_memory(tmp_path):
    settings = Settings(environment="test", spark={"cluster_port": 30077, "cluster_worker_memory": "768m"})
    service = spark_cluster_service(_Places(settings, tmp_path), None)
    script = service.argv[-1]
    assert service.name == "spark-cluster" and service.ports == (30077, 30078, 30079, 30080)
    assert ports(30077)["worker"] == 30080
    assert f"{MASTER} --host 127.0.0.1 --port 30077 --webui-port 30078" in script
    assert f"{WORKER} --host 127.0.0.1 --port 30080 --webui-port 30079 --cores 1 --memory 768m" in script
    assert script.endswith("spark://127.0.0.1:30077 & wait")
    assert settings.spark.cluster_master_url == "spark://127.0.0.1:30077"
    assert service.env["SPARK_DAEMON_MEMORY"] == DAEMON_MEMORY == "256m"
    assert service.env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert service.env["PYTHONPATH"] == str(PROJECT_ROOT)  # executors' Python workers import the project
