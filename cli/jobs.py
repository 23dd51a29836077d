"""``lakehouse jobs retry``: put failed document versions back on the ingestion queue.

Each failed version gets a new job (recorded with the version's move back to ``queued`` in one
transaction), its live state in Redis, and a new ``document.uploaded`` event whose ``attempt``
is one more than the jobs the document had, so the stream processes it again instead of
re-reporting the old failure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.ids import uuid7
from core.jobs import JobReporter, JobState
from lake.store import ObjectStore
from records.documents import DocumentRecords
from streaming.kafka import EventPublisher

JOB_KIND = "ingest_document"


@dataclass(frozen=True)
class Requeued:
    course_id: str
    document_id: str
    version: int
    filename: str
    job_id: str
    attempt: int
    previous_error: str | None


def retry_failed(
    records: DocumentRecords,
    *,
    store: ObjectStore,
    publisher: EventPublisher,
    reporter: JobReporter | None,
    invalidate: Callable[[str, str], None] = lambda _course, _document: None,
    course_id: str | None = None,
    progress: Callable[[Requeued], None] = lambda _r: None,
) -> list[Requeued]:
    """Re-queues the latest failed version of every document (of one course, or all);
    ``invalidate(course_id, document_id)`` drops the API's cached copy of each one."""
    done: list[Requeued] = []
    for row in records.failed_versions(course_id=course_id):
        requeued = _requeue(records, row, store=store, publisher=publisher, reporter=reporter)
        if requeued is not None:
            invalidate(requeued.course_id, requeued.document_id)
            progress(requeued)
            done.append(requeued)
    return done


def _requeue(
    records: DocumentRecords,
    row: dict[str, Any],
    *,
    store: ObjectStore,
    publisher: EventPublisher,
    reporter: JobReporter | None,
) -> Requeued | None:
    course_id, document_id, version = str(row["course_id"]), str(row["id"]), int(row["version"])
    now = time.time()
    job = JobState(
        job_id=str(uuid7()),
        kind=JOB_KIND,
        user_id=str(row["job_user_id"] or row["uploaded_by"]),
        course_id=course_id,
        document_id=document_id,
        created_at=now,
        updated_at=now,
    )
    if not records.requeue(course_id=course_id, document_id=document_id, version=version, job=job):
        return None  # someone else moved it meanwhile
    if reporter is not None:
        reporter.save(job)
    attempt = int(row["attempts"] or 1) + 1
    event = DocumentUploaded(
        event_id=str(uuid7()),
        occurred_at=datetime.fromtimestamp(now, UTC),
        document_id=document_id,
        course_id=course_id,
        version=version,
        job_id=job.job_id,
        uploaded_by=str(uuid.UUID(str(row["uploaded_by"]))),
        object_uri=store.uri(row["object_key"]),
        filename=row["filename"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        attempt=attempt,
    )
    try:
        publisher.publish(TOPIC_DOCUMENTS_UPLOADED, key=document_id, value=event.model_dump(mode="json"))
    except Exception as exc:
        reason = f"could not queue the retry: {type(exc).__name__}: {exc}"
        records.transition(
            course_id=course_id, document_id=document_id, version=version, job_id=job.job_id,
            status="failed", at=time.time(), error=reason,
        )  # fmt: skip
        raise
    return Requeued(course_id, document_id, version, row["filename"], job.job_id, attempt, row["error"])
