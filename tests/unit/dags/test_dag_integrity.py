"""Every DAG file imports without error and follows the project's DAG rules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[3] / "dags"


@pytest.fixture(scope="module")
def dag_bag(tmp_path_factory):
    import os

    # Airflow reads its home at import: point it at a throwaway folder, never ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_dag_files_import_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    dag_files = sorted(p.name for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
    assert dag_files, "no DAG files found"
    assert len(dag_bag.dags) >= len(dag_files)


def test_every_dag_follows_the_rules(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.catchup is False, dag_id
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, f"{dag_id}: naive start date"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries}"
            assert task.retry_delay >= timedelta(seconds=30), f"{dag_id}.{task.task_id} retries too fast"
