"""Offline checks of the deployment manifests (deploy/compose, deploy/k8s).

* compose.yaml: validated against the Compose Specification's JSON schema as shipped by
  Debian's ``docker-compose`` package (``compose/config/compose_spec.json``), then loaded by
  ``docker-compose config`` itself (interpolation, anchors, depends_on, volumes); the
  ``LAKEHOUSE_*`` variables of every service must build a valid ``Settings``.
* Kubernetes objects of the core API groups (Deployment, Service, HPA, PDB, StatefulSet, Job,
  RBAC, ConfigMap, ...): validated with ``kubernetes-validate`` (strict: unknown fields fail)
  against the Kubernetes version's OpenAPI schemas the package ships.
* Custom resources (Strimzi Kafka/KafkaNodePool/KafkaTopic, CloudNativePG Cluster,
  SparkApplication): their CRD schemas are not shipped by any package here, so only their
  apiVersion/kind, metadata and the required spec fields listed in ``CUSTOM_RESOURCES`` are
  checked; field types and unknown fields are NOT validated.
* Airflow's Helm values: the chart's ``values.schema.json`` is not in any package registry
  reachable here, so only the keys in ``AIRFLOW_VALUES_REQUIRED`` are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
K8S_DIR = DEPLOY / "k8s"
AIRFLOW_VALUES = K8S_DIR / "airflow-values.yaml"
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
KUBERNETES_VERSION = "1.33.0"
# Variables compose.yaml requires from the environment of `docker compose` (never in git).
COMPOSE_TEST_ENV = {"POSTGRES_PASSWORD": "pg-secret", "MINIO_ROOT_PASSWORD": "minio-secret", "JWT_SECRET": "j" * 32}

# (apiVersion, kind) -> dotted paths that must be present (from each operator's CRD "required").
CUSTOM_RESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): ("spec.kafka.listeners",),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): ("spec.replicas", "spec.roles", "spec.storage"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): ("metadata.labels.strimzi.io/cluster",),
    ("postgresql.cnpg.io/v1", "Cluster"): ("spec.instances", "spec.storage.size"),
    ("sparkoperator.k8s.io/v1beta2", "SparkApplication"): (
        "spec.type",
        "spec.mode",
        "spec.mainApplicationFile",
        "spec.sparkVersion",
        "spec.driver",
        "spec.executor",
    ),
}
AIRFLOW_VALUES_REQUIRED = {"executor": "KubernetesExecutor"}


class ManifestError(ValueError):
    """A manifest does not validate; the message lists every problem with its file and object."""


@dataclass(frozen=True)
class Checked:
    file: str
    kind: str
    name: str
    how: str  # "kubernetes schema" | "custom resource: required fields" | ...


def _get(obj: Any, dotted: str) -> Any:
    """``spec.kafka.listeners``; a label key with dots is matched whole (``metadata.labels.a.b/c``)."""
    parts = dotted.split(".")
    node = obj
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return None
    return node


def compose_schema_errors(path: Path = COMPOSE_FILE) -> list[str]:
    import jsonschema

    if not COMPOSE_SCHEMA.exists():
        raise ManifestError(f"{COMPOSE_SCHEMA} is missing: install Debian's docker-compose (`lakehouse stack up` does)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = yaml.safe_load(path.read_text())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]


def compose_config(path: Path = COMPOSE_FILE, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``docker-compose config``: the file as Compose resolves it (no engine needed)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        raise ManifestError("docker-compose is not installed: `lakehouse stack up` installs Debian's package")
    proc = subprocess.run(
        [binary, "-f", str(path), "config"],
        env={**os.environ, **(env if env is not None else COMPOSE_TEST_ENV)},
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise ManifestError(f"docker-compose config rejected {path.name}:\n{proc.stderr.strip()}")
    return yaml.safe_load(proc.stdout)


def validate_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    errors = compose_schema_errors(path)
    if errors:
        raise ManifestError(f"{path.name} does not match the Compose schema:\n" + "\n".join(errors))
    return compose_config(path)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate_kubernetes(directory: Path = K8S_DIR, *, version: str = KUBERNETES_VERSION) -> list[Checked]:
    import kubernetes_validate

    checked: list[Checked] = []
    errors: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        if path == AIRFLOW_VALUES:
            continue
        for doc in _documents(path):
            kind, api = doc.get("kind", "?"), doc.get("apiVersion", "?")
            name = (doc.get("metadata") or {}).get("name", "?")
            where = f"{path.name}: {kind} {name}"
            if (api, kind) in CUSTOM_RESOURCES:
                missing = [p for p in ("metadata.name", *CUSTOM_RESOURCES[(api, kind)]) if _get(doc, p) is None]
                if missing:
                    errors.append(f"{where}: missing {', '.join(missing)}")
                checked.append(Checked(path.name, kind, name, "custom resource: required fields"))
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{where}: {api} {kind} is neither a Kubernetes type nor a known custom resource")
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
            else:
                checked.append(Checked(path.name, kind, name, f"kubernetes {version} schema (strict)"))
    values = yaml.safe_load(AIRFLOW_VALUES.read_text())
    for key, wanted in AIRFLOW_VALUES_REQUIRED.items():
        if values.get(key) != wanted:
            errors.append(f"{AIRFLOW_VALUES.name}: {key} is {values.get(key)!r}, expected {wanted!r}")
    checked.append(Checked(AIRFLOW_VALUES.name, "HelmValues", "airflow", "required keys only"))
    if errors:
        raise ManifestError("Kubernetes manifests do not validate:\n" + "\n".join(errors))
    return checked
