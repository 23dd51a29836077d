"""Hourly (and on the indexed-documents asset) load of the analysts' warehouse.

Orchestration only: each task builds Settings at run time and calls ``warehouse.load`` for one
source, then ``quality.runner`` checks the result; nothing runs at import. The tasks run one
after the other: an embedded (chdb) warehouse takes one process at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from core.events import INDEXED_DOCUMENTS_ASSET

DOC = """\
### Warehouse load
Loads ClickHouse (embedded chdb by default) incrementally: the PostgreSQL shards by `updated_at`
watermark per shard and table, the Delta gold tables by version (only files added since the
last load), and `analytics.events` with the `lakehouse-warehouse` consumer group (malformed
events go to `analytics.events.dlq` with their reason). Every table is keyed
(ReplacingMergeTree), so a retry or a rerun leaves the same rows; `full` ignores the watermarks.
Each task returns its rows, dead letters and watermark; `warehouse_operations` keeps them too.
`check_quality` then runs the Great Expectations suites of the warehouse tables (keys, ranges,
references between facts and dimensions) and the loads' freshness: a failed expectation fails
the run and names its rows.
"""


@dag(
    dag_id="load_warehouse",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 * * * *", timezone="UTC"), assets=[Asset(INDEXED_DOCUMENTS_ASSET)]
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["warehouse", "analytics"],
    doc_md=DOC,
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    params={"full": Param(False, type="boolean", description="Ignore the watermarks (PostgreSQL and Delta)")},
)
def load_warehouse() -> None:
    @task
    def load_postgres() -> dict:
        return _load("postgres")

    @task
    def load_lake() -> dict:
        return _load("lake")

    @task
    def load_analytics() -> dict:
        return _load("analytics")

    @task
    def check_quality() -> dict:
        """Great Expectations suites of the warehouse tables and its loads' freshness; a failed
        expectation fails the run and names the rows."""
        from core.settings import Settings
        from quality.runner import check_warehouse_outputs

        return check_warehouse_outputs(Settings())

    load_postgres() >> load_lake() >> load_analytics() >> check_quality()


def _load(source: str) -> dict:
    from core.settings import Settings
    from warehouse.load import load_warehouse as run_load

    full = bool(get_current_context()["params"].get("full"))
    return run_load(Settings(), sources=[source], full=full, progress=print).as_dict()  # type: ignore[list-item]


load_warehouse()
