"""The durable side of a document's outcome: its row and its job on the course's PostgreSQL shard.

Runs beside the Redis/Kafka sink of the ingestion job and writes only through
``records.documents`` (the one writer of those tables): keyed, forward-only for the document,
monotonic for the job, so a replayed batch changes nothing. After each write the API's cache
entries for the document are deleted, so students see the new status at once instead of after
the cache TTL.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core.db import ShardedPostgres, open_checked
from core.documents import DocumentStatus
from core.events import DocumentUploaded
from core.redis import invalidate_document_cache, redis_client
from core.settings import Settings
from records.documents import DocumentRecords

log = logging.getLogger("spark_jobs.status_postgres")


class PostgresStatusSink:
    def __init__(self, settings: Settings, *, db: ShardedPostgres | None = None, redis: Any = None) -> None:
        self.settings = settings
        self._db = db
        self._records: DocumentRecords | None = None
        self._redis = redis

    @property
    def records(self) -> DocumentRecords:
        if self._records is None:
            if self._db is None:
                self._db = open_checked(self.settings.postgres)
            self._records = DocumentRecords(self._db)
        return self._records

    def _move(self, doc: DocumentUploaded, status: DocumentStatus, **values: Any) -> None:
        self.records.transition(
            course_id=doc.course_id,
            document_id=doc.document_id,
            version=doc.version,
            job_id=doc.job_id,
            status=status,
            at=time.time(),
            **values,
        )
        self._invalidate(doc)

    def _invalidate(self, doc: DocumentUploaded) -> None:
        try:
            if self._redis is None:
                self._redis = redis_client(self.settings.redis)
            invalidate_document_cache(
                self._redis,
                key_prefix=self.settings.redis.key_prefix,
                course_id=doc.course_id,
                document_id=doc.document_id,
            )
        except Exception as exc:  # noqa: BLE001 - a stale cache entry expires by TTL; never fail the batch
            log.warning("could not invalidate the cache of document %s: %s", doc.document_id, exc)

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        self._move(doc, "processing", pages=pages_total)

    def searchable(self, doc: DocumentUploaded, *, chunks: int) -> None:
        """The job's searchable moment (the document row itself moves at indexed / failed). An
        analytics fact only: a failed write is logged, never fails the batch (the outcome's write,
        which the student needs, comes next and reports a real outage)."""
        try:
            self.records.mark_searchable(course_id=doc.course_id, job_id=doc.job_id, at=time.time())
        except Exception as exc:  # noqa: BLE001 - e.g. a shard not migrated to jobs.searchable_at yet
            log.warning("searchable time of job %s not recorded: %s", doc.job_id, exc)

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        """Live progress lives in Redis only; PostgreSQL keeps the start, the searchable moment and the outcome."""

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        self._move(doc, "indexed", pages=pages, chunks=chunks)

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        if doc is None:
            return  # an unparseable event names no document: the dead letter is its only record
        self._move(doc, "failed", error=reason)

    def flush(self) -> None:
        """Each write above commits on its own."""

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._records = None
