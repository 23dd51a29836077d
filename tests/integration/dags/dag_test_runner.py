"""``python -m tests.integration.dags.dag_test_runner DAG_ID [CONF_JSON]``: one ``dag.test()`` run
in a fresh process (Airflow reads its configuration once per process, at import: a test that
has imported Airflow with other settings cannot point it elsewhere). Exit code 0 on success."""

from __future__ import annotations

import json
import os
import sys


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
