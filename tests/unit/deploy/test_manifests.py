"""The deployment manifests validate offline (deploy/manifests.py says what each check covers),
and the validators reject a broken manifest."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from core.settings import Settings
from deploy import manifests
from deploy.manifests import ManifestError

STACK_SERVICES = {
    "postgres", "redis", "kafka", "minio", "api", "nginx", "spark-master", "spark-worker", "ingest",
    "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "clickhouse",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    return manifests.validate_compose()


def test_compose_file_matches_the_compose_schema_and_docker_compose_loads_it(compose):
    assert STACK_SERVICES <= set(compose["services"])
    assert compose["services"]["ingest"]["environment"]["LAKEHOUSE_SPARK__MASTER"] == "spark://spark-master:7077"
    assert compose["services"]["clickhouse"]["profiles"] == ["clickhouse"]  # optional: chdb is embedded


def test_every_services_lakehouse_variables_build_valid_settings(compose, monkeypatch):
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items() if k.startswith("LAKEHOUSE_")}
        if not env:
            continue
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings()
        assert settings.environment == "production", name
        assert settings.kafka.servers == "kafka:9092", name


def test_kubernetes_configmap_variables_build_valid_settings(monkeypatch):
    docs = list(yaml.safe_load_all((manifests.K8S_DIR / "api.yaml").read_text()))
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # What the Secret `lakehouse-secrets` holds (made outside git):
    secrets = {"API__JWT_SECRET": "j" * 32, "POSTGRES__PASSWORD": "pg", "OBJECT_STORE__SECRET_KEY": "s3"}
    for key, value in secrets.items():
        monkeypatch.setenv(f"LAKEHOUSE_{key}", value)
    settings = Settings()
    assert settings.object_store.mode == "s3" and settings.lake.root.startswith("s3a://")


def test_a_compose_schema_violation_is_reported(tmp_path):
    document = yaml.safe_load(manifests.COMPOSE_FILE.read_text())
    document["services"]["api"]["replicas_typo"] = 3
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(document))
    errors = manifests.compose_schema_errors(broken)
    assert any("replicas_typo" in e for e in errors), errors


def test_docker_compose_refuses_a_missing_secret():
    env = dict(manifests.COMPOSE_TEST_ENV)
    del env["JWT_SECRET"]
    with pytest.raises(ManifestError, match="JWT_SECRET"):
        manifests.compose_config(env=env)


def test_kubernetes_manifests_validate_and_say_how():
    checked = manifests.validate_kubernetes()
    by_kind = {(c.kind, c.how.split(" ")[0]) for c in checked}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet", "Job"):
        assert (kind, "kubernetes") in by_kind
    for kind in ("Kafka", "KafkaNodePool", "Cluster", "SparkApplication"):
        assert (kind, "custom") in by_kind
    assert ("HelmValues", "required") in by_kind


def _copy_k8s(tmp_path: Path, mutate) -> Path:
    target = tmp_path / "k8s"
    target.mkdir()
    for path in manifests.K8S_DIR.glob("*.yaml"):
        docs = [copy.deepcopy(d) for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            mutate(doc)
        (target / path.name).write_text(yaml.safe_dump_all(docs))
    return target


def test_a_bad_deployment_field_fails_the_kubernetes_schema(tmp_path, monkeypatch):
    def mutate(doc):
        if doc.get("kind") == "Deployment":
            doc["spec"]["replicas"] = "three"
            doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"

    directory = _copy_k8s(tmp_path, mutate)
    monkeypatch.setattr(manifests, "AIRFLOW_VALUES", directory / "airflow-values.yaml")
    with pytest.raises(ManifestError) as excinfo:
        manifests.validate_kubernetes(directory)
    assert "Deployment api" in str(excinfo.value)


def test_a_custom_resource_without_a_required_field_fails(tmp_path, monkeypatch):
    def mutate(doc):
        if doc.get("kind") == "SparkApplication":
            del doc["spec"]["mainApplicationFile"]

    directory = _copy_k8s(tmp_path, mutate)
    monkeypatch.setattr(manifests, "AIRFLOW_VALUES", directory / "airflow-values.yaml")
    with pytest.raises(ManifestError, match=r"SparkApplication ingest-documents: missing spec\.mainApplicationFile"):
        manifests.validate_kubernetes(directory)


def _workers(command: list[str]) -> int:
    return int(command[command.index("--workers") + 1]) if "--workers" in command else 1


def test_an_api_container_or_pod_is_the_instance_docs_capacity_measured(compose):
    # docs/capacity.md: `lakehouse api --workers 2` on 2 cores, nofile >= connections per worker + ~1,000.
    api = compose["services"]["api"]
    assert _workers(api["command"]) == 2 and float(api["deploy"]["resources"]["limits"]["cpus"]) == 2
    assert api["ulimits"]["nofile"]["soft"] >= 11_000
    docs = list(yaml.safe_load_all((manifests.K8S_DIR / "api.yaml").read_text()))
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert _workers(container["args"]) == 2 and container["resources"]["requests"]["cpu"] == "2"
