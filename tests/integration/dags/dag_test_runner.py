"""``python -m tests.integration.dags.dag_test_runner DAG_ID [CONF_JSON]``: one ``dag.test()`` run
in a fresh process (Airflow reads its configuration once per process, at import: a test that
has imported Airflow with other settings cannot point it elsewhere). Exit code 0 on success.
``airflow_env`` builds the environment such a process runs in."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from core.settings import PROJECT_ROOT


def airflow_env(home: Path, lakehouse: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``AIRFLOW*`` and ``LAKEHOUSE_*`` variables, plus Airflow
    on a private ``home`` (created) with an SQLite metadata database and the project's DAGs, and
    ``lakehouse``: the settings the DAG's tasks read."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LAKEHOUSE_"))}
    env.update(
        {
            "PYTHONPATH": str(PROJECT_ROOT),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            **lakehouse,
        }
    )
    return env


def main() -> int:
    dag_id, conf = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    run = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags[dag_id].test(run_conf=conf)
    print(f"DAG_TEST_STATE {dag_id} {run.state}")
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
