"""The ``documents`` and ``jobs`` rows: the only module that writes them.

The API (uploads) and the ingestion stream (status) both change these rows; both go through
here, so both follow the same rules:

* every write is keyed (document id + version, job id) and idempotent;
* a job row is monotonic: an update carries its own time and never overwrites a newer one
  (``WHERE jobs.updated_at <= EXCLUDED.updated_at``), so a replayed batch or a late worker
  cannot move a finished job back;
* a document's status moves forward only (see ``_DOCUMENT_STATUS_FROM``): an indexed version is
  never set back to processing, a superseded one never reappears;
* a document change and its job change commit in one transaction (same course shard).

Placement: both tables live on the course's shard (a course-less job on its user's shard).
"""

from __future__ import annotations

import uuid
from typing import Any

from core.db import ShardedPostgres
from core.documents import DocumentStatus
from core.jobs import JobState, JobStatus
from records.rows import pool_for, returned

DOCUMENT_COLUMNS = (
    "id, course_id, version, filename, sha256, size_bytes, object_key, status, pages, chunks, error,"
    " uploaded_by, created_at, updated_at"
)
_JOB_COLUMNS = (
    "id, kind, user_id, course_id, document_id, status, pages_done, pages_total, error,"
    " extract(epoch FROM created_at)::float8 AS created_at, extract(epoch FROM updated_at)::float8 AS updated_at"
)
# Which statuses a document may move to a status from: the rule of "forward only".
_DOCUMENT_STATUS_FROM: dict[str, tuple[str, ...]] = {
    "processing": ("queued", "processing", "failed"),
    "indexed": ("queued", "processing", "failed", "indexed"),
    "failed": ("queued", "processing", "failed"),
}


def _job_state(row: dict[str, Any]) -> JobState:
    return JobState(
        job_id=str(row["id"]),
        kind=row["kind"],
        user_id=str(row["user_id"]),
        course_id=str(row["course_id"]) if row["course_id"] else None,
        document_id=str(row["document_id"]) if row["document_id"] else None,
        status=row["status"],
        pages_done=row["pages_done"],
        pages_total=row["pages_total"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_UPSERT_JOB = (
    "INSERT INTO jobs (id, kind, user_id, course_id, document_id, status, pages_done, pages_total,"
    " error, created_at, updated_at)"
    " VALUES (%(id)s, %(kind)s, %(user_id)s, %(course_id)s, %(document_id)s, %(status)s, %(pages_done)s,"
    " %(pages_total)s, %(error)s, to_timestamp(%(created_at)s), to_timestamp(%(updated_at)s))"
    " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, pages_done = EXCLUDED.pages_done,"
    " pages_total = EXCLUDED.pages_total, error = EXCLUDED.error, updated_at = EXCLUDED.updated_at"
    " WHERE jobs.updated_at <= EXCLUDED.updated_at"
)


def _job_params(state: JobState) -> dict[str, Any]:
    return {
        "id": state.job_id,
        "kind": state.kind,
        "user_id": state.user_id,
        "course_id": state.course_id,
        "document_id": state.document_id,
        "status": state.status,
        "pages_done": state.pages_done,
        "pages_total": state.pages_total,
        "error": state.error,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }


class DocumentRecords:
    """Document versions and their ingestion jobs on the course shard."""

    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    # ---- reads ------------------------------------------------------------------------------
    def latest_versions(self, course_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """The latest version of each document of a course."""
        with pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT DISTINCT ON (id) {DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s"
                " ORDER BY id, version DESC",
                (course_id,),
            ).fetchall()

    def get(
        self, course_id: uuid.UUID | str, document_id: uuid.UUID | str, *, version: int | None = None
    ) -> dict[str, Any] | None:
        """One version, or the latest when ``version`` is None."""
        with pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s AND id = %s"
                " AND (%s::int IS NULL OR version = %s::int) ORDER BY version DESC LIMIT 1",
                (course_id, document_id, version, version),
            ).fetchone()

    def find(self, document_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The latest version of a document known by id alone: the shard is unknown, so a
        bounded fan-out (the API caches the answer)."""

        def read(_shard: int, conn: Any) -> dict[str, Any] | None:
            return conn.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = %s ORDER BY version DESC LIMIT 1",
                (document_id,),
            ).fetchone()

        return next((row for row in self.db.fan_out(read) if row is not None), None)

    def latest_indexed(self, course_id: str, document_id: str) -> dict[str, Any] | None:
        """The newest version of a document whose processing finished (the one study material is for)."""
        with pool_for(self.db, course_id).connection() as conn:
            return conn.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s AND id = %s AND status = 'indexed'"
                " ORDER BY version DESC LIMIT 1",
                (course_id, document_id),
            ).fetchone()

    def find_by_sha256(self, course_id: uuid.UUID | str, sha256: str) -> dict[str, Any] | None:
        with pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s AND sha256 = %s"
                " ORDER BY version DESC LIMIT 1",
                (course_id, sha256),
            ).fetchone()

    def failed_versions(self, *, course_id: str | None = None) -> list[dict[str, Any]]:
        """Latest versions whose processing failed (for ``lakehouse jobs retry --failed``), with
        the job that last processed them."""

        def read(_shard: int, conn: Any) -> list[dict[str, Any]]:
            return conn.execute(
                f"SELECT DISTINCT ON (d.id) {', '.join('d.' + c.strip() for c in DOCUMENT_COLUMNS.split(','))},"
                " j.id AS job_id, j.user_id AS job_user_id, j.attempts FROM documents d"
                " LEFT JOIN LATERAL (SELECT id, user_id, count(*) OVER () AS attempts FROM jobs"
                "   WHERE jobs.document_id = d.id ORDER BY created_at DESC LIMIT 1) j ON true"
                " WHERE (%s::uuid IS NULL OR d.course_id = %s::uuid)"
                " ORDER BY d.id, d.version DESC",
                (course_id, course_id),
            ).fetchall()

        shards = [self.db.shard_of(course_id)] if course_id else None
        rows = [row for part in self.db.fan_out(read, shards=shards) for row in part]
        return [row for row in rows if row["status"] == "failed"]

    def job(self, job_id: str) -> JobState | None:
        """By id alone the shard is unknown: a fan-out (the rare path; Redis answers first)."""

        def read(_shard: int, conn: Any) -> dict[str, Any] | None:
            return conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()

        for row in self.db.fan_out(read):
            if row is not None:
                return _job_state(row)
        return None

    # ---- writes by the API --------------------------------------------------------------------
    def insert_version(self, document: dict[str, Any], *, job: JobState) -> dict[str, Any]:
        """A new document version (status ``queued``) and its job, in one transaction.

        Raises ``psycopg.errors.UniqueViolation`` when the same bytes (course, sha256, version)
        were recorded by a concurrent upload first."""
        columns = ["id", "course_id", "version", "filename", "original_filename", "sha256", "size_bytes"]
        columns += ["object_key", "uploaded_by"]
        values = {c: document.get(c) for c in columns}
        with pool_for(self.db, str(values["course_id"])).connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO documents ({', '.join(columns)}, status)"
                f" VALUES ({', '.join(f'%({c})s' for c in columns)}, 'queued') RETURNING {DOCUMENT_COLUMNS}",
                values,
            ).fetchone()
            conn.execute(_UPSERT_JOB, _job_params(job))
        return returned(row)

    def save_job(self, state: JobState) -> None:
        """Records a job state (idempotent, monotonic); a course-less job lives on its user's shard."""
        with pool_for(self.db, state.course_id or state.user_id).connection() as conn:
            conn.execute(_UPSERT_JOB, _job_params(state))

    # ---- status transitions (API on publish failure, the ingestion stream) ---------------------
    def transition(
        self,
        *,
        course_id: str,
        document_id: str,
        version: int,
        job_id: str | None,
        status: DocumentStatus,
        at: float,
        pages: int | None = None,
        chunks: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Moves a document version (and its job) forward; returns False when the version was
        already past ``status`` (a replay or a late worker), leaving both rows as they were.

        ``at`` is the caller's event time (epoch seconds): the job's monotonic guard compares it."""
        job_status: JobStatus = {"processing": "running", "indexed": "succeeded"}.get(status, "failed")  # type: ignore[assignment]
        with pool_for(self.db, course_id).connection() as conn, conn.transaction():
            moved = conn.execute(
                "UPDATE documents SET status = %(status)s, pages = COALESCE(%(pages)s, pages),"
                " chunks = CASE WHEN %(status)s = 'indexed' THEN %(chunks)s ELSE chunks END,"
                " error = %(error)s, updated_at = to_timestamp(%(at)s)"
                " WHERE id = %(id)s AND version = %(version)s AND status = ANY(%(allowed)s)",
                {
                    "status": status,
                    "pages": pages,
                    "chunks": chunks,
                    "error": error,
                    "at": at,
                    "id": document_id,
                    "version": version,
                    "allowed": list(_DOCUMENT_STATUS_FROM[status]),
                },
            ).rowcount
            if job_id is not None:
                done = pages if status == "indexed" else 0
                conn.execute(
                    "UPDATE jobs SET status = %(status)s, pages_done = COALESCE(%(done)s, pages_done),"
                    " pages_total = COALESCE(%(pages)s, pages_total), error = %(error)s,"
                    # The first time a worker took the job up; a retry keeps it (queued vs processing time).
                    " started_at = CASE WHEN %(status)s = 'running' THEN COALESCE(started_at, to_timestamp(%(at)s))"
                    " ELSE started_at END,"
                    " updated_at = to_timestamp(%(at)s) WHERE id = %(id)s AND updated_at <= to_timestamp(%(at)s)",
                    {"status": job_status, "done": done, "pages": pages, "error": error, "at": at, "id": job_id},
                )
            if status == "indexed" and moved:
                # The older indexed versions of a replaced document stop being served.
                conn.execute(
                    "UPDATE documents SET status = 'superseded', updated_at = to_timestamp(%s)"
                    " WHERE id = %s AND version < %s AND status = 'indexed'",
                    (at, document_id, version),
                )
        return bool(moved)

    def set_chunk_counts(self, course_id: str, counts: dict[tuple[str, int], int]) -> int:
        """The chunk counts of a course's indexed versions after a reprocess built them anew
        (``lake.reprocess``); returns the rows changed. Status and job rows are left alone."""
        changed = 0
        with pool_for(self.db, course_id).connection() as conn, conn.transaction():
            for (document_id, version), chunks in sorted(counts.items()):
                changed += conn.execute(
                    "UPDATE documents SET chunks = %s, updated_at = now() WHERE course_id = %s AND id = %s"
                    " AND version = %s AND status = 'indexed' AND chunks IS DISTINCT FROM %s",
                    (chunks, course_id, document_id, version, chunks),
                ).rowcount
        return changed

    def mark_searchable(self, *, course_id: str, job_id: str, at: float) -> bool:
        """Records when a running job's document became searchable (text first: chunks and the
        full-text index written, embeddings pending). Once: a replay, or a job already past
        ``running`` or newer than ``at``, changes nothing. ``at`` is the caller's event time."""
        with pool_for(self.db, course_id).connection() as conn:
            return bool(
                conn.execute(
                    "UPDATE jobs SET searchable_at = to_timestamp(%(at)s), updated_at = to_timestamp(%(at)s)"
                    " WHERE id = %(id)s AND status = 'running' AND searchable_at IS NULL"
                    " AND updated_at <= to_timestamp(%(at)s)",
                    {"at": at, "id": job_id},
                ).rowcount
            )

    def requeue(self, *, course_id: str, document_id: str, version: int, job: JobState) -> bool:
        """A failed version back to ``queued`` with a new job (``lakehouse jobs retry``)."""
        with pool_for(self.db, course_id).connection() as conn, conn.transaction():
            moved = conn.execute(
                "UPDATE documents SET status = 'queued', error = NULL, updated_at = to_timestamp(%s)"
                " WHERE id = %s AND version = %s AND status = 'failed'",
                (job.created_at, document_id, version),
            ).rowcount
            if moved:
                conn.execute(_UPSERT_JOB, _job_params(job))
        return bool(moved)
