"""Daily lake maintenance: schema migrations, then Z-ORDER/compaction, checkpoints and VACUUM of the
Delta tables and LanceDB compaction and re-indexing, recorded in the warehouse when it exists.

Orchestration only: each task builds Settings at run time and calls ``lake.migrations``,
``lake.maintenance`` and ``warehouse.load.record_lake_maintenance``; nothing runs at import.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

DOC = """\
### Lake maintenance
1. `migrate_schemas`: the lake's pending schema migrations (nullable columns added in code).
2. `maintain`: per Delta table, Z-ORDER on (course_id, document_id) (bronze: compaction), a
   checkpoint with log clean-up, and VACUUM of files older than `lake.vacuum_retention_hours`
   (at least 7 days: time travel reads that far back); LanceDB's `chunks` table is compacted and
   its full-text, vector and course indexes are brought up to date. The task log has one line per
   table and step with files and bytes before/after.
   The same lines become rows of the warehouse's `fact_lake_maintenance` (skipped when no
   warehouse exists).
3. `drop_expired_index_versions`: index versions retired more than
   `lancedb.index_version_keep_hours` ago (after a reprocess) have their LanceDB tables dropped;
   never the live one.

Safe beside the running ingestion stream: a Delta commit that loses a race is retried.
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
    def migrate_schemas() -> list[str]:
        from core.settings import Settings
        from lake.migrations import apply_migrations

        return apply_migrations(Settings(), progress=print)

    @task
    def maintain(run_id: str | None = None) -> dict:
        from core.settings import Settings
        from lake.maintenance import maintain_lake as run_maintenance
        from warehouse.load import record_lake_maintenance

        settings = Settings()
        report = run_maintenance(settings, progress=print, run_id=run_id)
        recorded = record_lake_maintenance(settings, report.warehouse_rows())
        print(f"fact_lake_maintenance: {len(report.steps) if recorded else 0} rows recorded")
        return report.as_dict()

    @task
    def drop_expired_index_versions() -> list[int]:
        from core.settings import Settings
        from lake.index_versions import drop_expired
        from lake.vectors import connect

        settings = Settings()
        dropped = drop_expired(connect(settings.lancedb), settings)
        for version in dropped:
            print(f"dropped index version {version.version} ({version.table_name}), retired {version.retired_at}")
        print(f"{len(dropped)} expired index version(s) dropped")
        return [version.version for version in dropped]

    migrate_schemas() >> maintain(run_id="{{ run_id }}") >> drop_expired_index_versions()


maintain_lake()
