"""Shared DAG arguments of the study DAGs (a helper of the DAG files, not a DAG itself)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param

from core.events import INDEXED_DOCUMENTS_ASSET

START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
# Runs when the ingestion stream marks the asset (documents indexed), and every 6 hours as a
# safety net that picks up anything an event missed.
SCHEDULE = AssetOrTimeSchedule(
    timetable=CronTriggerTimetable("0 */6 * * *", timezone="UTC"), assets=[Asset(INDEXED_DOCUMENTS_ASSET)]
)
PARAMS = {
    "course_id": Param(None, type=["null", "string"], description="Only this course's documents"),
    "document_id": Param(None, type=["null", "string"], description="Only this document"),
    "job_id": Param(None, type=["null", "string"], description="The student's job to report progress on"),
    "force": Param(False, type="boolean", description="Regenerate even when material of this generator exists"),
}
