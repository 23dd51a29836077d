"""Daily lake maintenance: OPTIMIZE + VACUUM of the Delta tables and LanceDB compaction.

Orchestration only: the task builds Settings and a Spark session at run time and calls
``lake.maintenance.maintain_lake``; nothing runs at import.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

DOC = """\
### Lake maintenance
Compacts small files of every Delta table (OPTIMIZE), removes files older than the retention
(VACUUM, at least 7 days) and compacts LanceDB's `chunks` table. Safe beside the running
ingestion stream: a Delta commit that loses a race is retried (writes are keyed).
The task log lists files before/after per table.
"""


@dag(
    dag_id="maintain_lake",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["lake", "maintenance"],
    doc_md=DOC,
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
)
def maintain_lake() -> None:
    @task
    def compact_and_vacuum() -> dict:
        from core.settings import Settings
        from lake.maintenance import maintain_lake as run_maintenance
        from lake.spark import build_spark_session

        settings = Settings()
        spark = build_spark_session(settings, "maintain-lake-dag")
        try:
            report = run_maintenance(spark, settings, progress=print)
        finally:
            spark.stop()
        return report.as_dict()

    compact_and_vacuum()


maintain_lake()
