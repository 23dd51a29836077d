"""The durable side of a document's outcome: its row (and job) on the course's PostgreSQL shard.

Runs beside the Redis/Kafka sink of the ingestion job. Every write is keyed (document id +
version, job id) and monotonic (a job's ``updated_at`` only moves forward), so a replayed
batch rewrites the same values. After each write the API's cache entries for the document
are deleted, so students see the new status at once instead of after the cache TTL.
"""

from __future__ import annotations

import logging
from typing import Any

from core.cache import document_key, document_list_key
from core.db import ShardedPostgres
from core.events import DocumentUploaded
from core.settings import Settings

log = logging.getLogger("spark_jobs.status_postgres")


def document_cache_keys(prefix: str, course_id: str, document_id: str) -> list[str]:
    """The API's cache keys for a document."""
    return [prefix + document_key(course_id, document_id), prefix + document_list_key(course_id)]


class PostgresStatusSink:
    def __init__(self, settings: Settings, *, db: ShardedPostgres | None = None, redis: Any = None) -> None:
        self.settings = settings
        self._db = db
        self._redis = redis

    @property
    def db(self) -> ShardedPostgres:
        if self._db is None:
            self._db = ShardedPostgres(self.settings.postgres)
        return self._db

    def _write(
        self, doc: DocumentUploaded, *, document_sql: str, params: dict[str, Any], job_status: str | None
    ) -> None:
        params = {**params, "id": doc.document_id, "version": doc.version, "job_id": doc.job_id}
        with self.db.for_key(doc.course_id).connection() as conn:
            conn.execute(document_sql, params)
            if job_status is not None:
                conn.execute(
                    "UPDATE jobs SET status = %(job_status)s, pages_done = COALESCE(%(pages)s, pages_done),"
                    " pages_total = COALESCE(%(pages)s, pages_total), error = %(error)s, updated_at = now()"
                    " WHERE id = %(job_id)s",
                    {**params, "job_status": job_status, "pages": params.get("pages"), "error": params.get("error")},
                )
        self._invalidate(doc)

    def _invalidate(self, doc: DocumentUploaded) -> None:
        try:
            if self._redis is None:
                from core.redis import redis_client

                self._redis = redis_client(self.settings.redis)
            for key in document_cache_keys(self.settings.redis.key_prefix, doc.course_id, doc.document_id):
                self._redis.delete(key)
        except Exception as exc:  # noqa: BLE001 - a stale cache entry expires by TTL; never fail the batch
            log.warning("could not invalidate the cache of document %s: %s", doc.document_id, exc)

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        self._write(
            doc,
            document_sql="UPDATE documents SET status = 'processing', pages = %(pages)s, error = NULL,"
            " updated_at = now() WHERE id = %(id)s AND version = %(version)s AND status <> 'indexed'",
            params={"pages": pages_total},
            job_status="running",
        )

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        """Live progress lives in Redis only; PostgreSQL keeps the start and the outcome."""

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        self._write(
            doc,
            document_sql="UPDATE documents SET status = 'indexed', pages = %(pages)s, chunks = %(chunks)s,"
            " error = NULL, updated_at = now() WHERE id = %(id)s AND version = %(version)s",
            params={"pages": pages, "chunks": chunks, "error": None},
            job_status="succeeded",
        )
        if doc.replaces_version is not None:
            with self.db.for_key(doc.course_id).connection() as conn:
                conn.execute(
                    "UPDATE documents SET status = 'superseded', updated_at = now()"
                    " WHERE id = %s AND version < %s AND status = 'indexed'",
                    (doc.document_id, doc.version),
                )

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        if doc is None:
            return  # an unparseable event names no document: the dead letter is its only record
        self._write(
            doc,
            document_sql="UPDATE documents SET status = 'failed', error = %(error)s, updated_at = now()"
            " WHERE id = %(id)s AND version = %(version)s",
            params={"error": reason, "pages": None},
            job_status="failed",
        )

    def flush(self) -> None:
        """Each write above commits on its own."""

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
