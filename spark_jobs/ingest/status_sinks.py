"""Where a document's progress and outcome go: the ``DocumentStatusSink`` protocol, the Redis job
status + Kafka outcome events sink, and a fan-out to several sinks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from core.events import (
    TOPIC_DOCUMENTS_FAILED,
    TOPIC_DOCUMENTS_INDEXED,
    DocumentFailed,
    DocumentIndexed,
    DocumentUploaded,
)
from core.settings import Settings
from spark_jobs.ingest.events import outcome_event_id


class DocumentStatusSink(Protocol):
    """Where a document's progress and outcome go. The default writes Redis job status and
    publishes Kafka events; the PostgreSQL ``documents`` update plugs in beside it."""

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None: ...

    def searchable(self, doc: DocumentUploaded, *, chunks: int) -> None:
        """The document's chunks are searchable by full text; embedding comes next."""

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None: ...

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None: ...

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None: ...

    def flush(self) -> None:
        """Called at the end of each micro-batch, before its offsets are committed."""

    def close(self) -> None:
        """Releases the sink's clients (once the stream is done)."""


class RedisKafkaStatusSink:
    """Job status in Redis (``JobReporter``: hash + pub/sub to the uploader) and outcome events
    on ``documents.indexed`` / ``documents.failed``."""

    def __init__(self, settings: Settings, *, redis: Any = None, producer: Any = None) -> None:
        self.settings = settings
        self._redis = redis
        self._producer = producer

    @property
    def reporter(self):  # type: ignore[no-untyped-def]
        from core.jobs import JobReporter
        from core.redis import redis_client

        if self._redis is None:
            self._redis = redis_client(self.settings.redis)
        return JobReporter(self._redis)

    @property
    def producer(self):  # type: ignore[no-untyped-def]
        from streaming.kafka import json_producer

        if self._producer is None:
            self._producer = json_producer(self.settings.kafka, client_id="ingest-documents")
        return self._producer

    def _update(self, doc: DocumentUploaded, **changes: Any) -> None:
        from core.jobs import JobState

        reporter = self.reporter
        if reporter.update(doc.job_id, **changes) is None:
            # The job was created by the API; a backfill (or a test) may come without one.
            now = time.time()
            state = JobState(
                job_id=doc.job_id,
                kind="ingest_document",
                user_id=doc.uploaded_by,
                course_id=doc.course_id,
                document_id=doc.document_id,
                created_at=now,
                updated_at=now,
            )
            reporter.save(state.model_copy(update=changes))

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        self._update(
            doc, status="running", stage="extracting", pages_done=0, pages_total=pages_total, eta_s=None, error=None
        )

    def searchable(self, doc: DocumentUploaded, *, chunks: int) -> None:
        self._update(doc, status="running", stage="searchable_text")

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        self._update(
            doc, status="running", stage="embedding", pages_done=pages_done, pages_total=pages_total, eta_s=eta_s
        )

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        self._update(
            doc, status="succeeded", stage="indexed", pages_done=pages, pages_total=pages, eta_s=0.0, error=None
        )
        event = DocumentIndexed(
            event_id=outcome_event_id("indexed", doc),
            occurred_at=datetime.now(UTC),
            document_id=doc.document_id,
            course_id=doc.course_id,
            version=doc.version,
            job_id=doc.job_id,
            pages=pages,
            chunks=chunks,
            seconds=round(seconds, 3),
        )
        topic = self.settings.kafka.topic(TOPIC_DOCUMENTS_INDEXED)
        self.producer.send(topic, key=doc.document_id, value=event.model_dump(mode="json"))

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        if doc is not None:
            self._update(doc, status="failed", stage="failed", eta_s=None, error=reason)
        event = DocumentFailed(
            event_id=outcome_event_id("failed", doc, raw),
            occurred_at=datetime.now(UTC),
            document_id=doc.document_id if doc else None,
            course_id=doc.course_id if doc else None,
            version=doc.version if doc else None,
            job_id=doc.job_id if doc else None,
            reason=reason,
            raw=raw,
        )
        topic = self.settings.kafka.topic(TOPIC_DOCUMENTS_FAILED)
        self.producer.send(topic, key=doc.document_id if doc else None, value=event.model_dump(mode="json"))

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=30)

    def close(self) -> None:
        from streaming.kafka import close_producer

        close_producer(self._producer, timeout_s=10)
        self._producer = None


class FanOutSink:
    """Reports to several sinks in order (e.g. PostgreSQL, then Redis/Kafka)."""

    def __init__(self, *sinks: DocumentStatusSink) -> None:
        self.sinks = sinks

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        for sink in self.sinks:
            sink.started(doc, pages_total=pages_total)

    def searchable(self, doc: DocumentUploaded, *, chunks: int) -> None:
        for sink in self.sinks:
            sink.searchable(doc, chunks=chunks)

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        for sink in self.sinks:
            sink.progress(doc, pages_done=pages_done, pages_total=pages_total, eta_s=eta_s)

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        for sink in self.sinks:
            sink.indexed(doc, pages=pages, chunks=chunks, seconds=seconds)

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        for sink in self.sinks:
            sink.failed(doc, reason=reason, raw=raw)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
