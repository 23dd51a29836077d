"""Incremental reads of the shards for the warehouse load (read only; the writers are the other
modules of ``records/``).

Each export is one shard's rows changed at or after a time, oldest first, in batches read
through a server-side cursor, with the time each row changed (``changed_at``) so the caller can
keep a high-water mark per shard and table. Rows come back as plain values (ids as text).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from core.db import ShardedPostgres

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

ExportName = Literal["courses", "documents", "jobs", "quiz_attempts", "card_reviews"]

# Each query takes the lower bound twice at most (named %(since)s) and yields ``changed_at``.
_QUERIES: dict[ExportName, str] = {
    "courses": (
        "SELECT id::text AS course_id, title, owner_id::text AS owner_id, created_at, updated_at,"
        " updated_at AS changed_at FROM courses WHERE updated_at >= %(since)s ORDER BY updated_at"
    ),
    "documents": (
        "SELECT id::text AS document_id, version, course_id::text AS course_id, filename, size_bytes, status,"
        " pages, chunks, error, uploaded_by::text AS uploaded_by, created_at, updated_at,"
        " updated_at AS changed_at FROM documents WHERE updated_at >= %(since)s ORDER BY updated_at"
    ),
    # A job and the document version it processed: the newest version created by the time the job
    # was (an upload writes both in one transaction; a retry's job comes later than its version).
    "jobs": (
        "SELECT j.id::text AS job_id, j.kind, j.user_id::text AS user_id, j.course_id::text AS course_id,"
        " j.document_id::text AS document_id, j.status, j.error, j.pages_total, j.created_at, j.updated_at,"
        " j.started_at, j.searchable_at,"
        " d.version, d.pages, d.chunks, j.updated_at AS changed_at"
        " FROM jobs j LEFT JOIN LATERAL (SELECT version, pages, chunks FROM documents"
        "   WHERE documents.id = j.document_id AND documents.created_at <= j.created_at + interval '5 seconds'"
        "   ORDER BY version DESC LIMIT 1) d ON true"
        " WHERE j.updated_at >= %(since)s ORDER BY j.updated_at"
    ),
    "quiz_attempts": (
        "SELECT id::text AS attempt_id, user_id::text AS user_id, course_id::text AS course_id, quiz_id,"
        " document_id::text AS document_id, version, score::float8 AS score, max_score::float8 AS max_score,"
        " answers, created_at, created_at AS changed_at"
        " FROM quiz_attempts WHERE created_at >= %(since)s ORDER BY created_at"
    ),
    "card_reviews": (
        "SELECT r.id::text AS review_id, r.user_id::text AS user_id, r.card_id, r.course_id::text AS course_id,"
        " r.rating, r.reviewed_at, r.due_before, r.due_after, s.state, s.reviews AS card_reviews,"
        " s.updated_at AS state_updated_at, r.reviewed_at AS changed_at"
        " FROM card_reviews r LEFT JOIN card_states s ON s.user_id = r.user_id AND s.card_id = r.card_id"
        " WHERE r.reviewed_at >= %(since)s ORDER BY r.reviewed_at"
    ),
}
EXPORTS: tuple[ExportName, ...] = tuple(_QUERIES)


class ShardExports:
    """The warehouse's reads of every shard."""

    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    @property
    def shards(self) -> int:
        return self.db.shards

    def changed(
        self, name: ExportName, *, shard: int, since: datetime, batch_rows: int = 50_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Batches of ``name``'s rows on ``shard`` changed at or after ``since`` (timezone-aware),
        oldest first. One repeatable-read snapshot per call, so the batches agree with each other."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        query = _QUERIES[name]
        pool = cast("ConnectionPool[Connection[DictRow]]", self.db.pools[shard])
        with pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            with conn.cursor(name=f"warehouse_{name}") as cursor:
                cursor.itersize = batch_rows
                cursor.execute(query, {"since": since})
                while rows := cursor.fetchmany(batch_rows):
                    yield rows
