"""SQL of the course service, each statement on the shard its key hashes to.

Placement (see deploy/migrations/0001_init.sql): users, enrolments on the user shard;
email_index on the shard of the lowercased email; courses, course_members, documents and
course jobs on the course shard; join_codes on the shard of the code.

Writes that touch two shards cannot be one transaction. The order is fixed and every step is
idempotent (upserts / ON CONFLICT DO NOTHING), so a retry of a half-done operation finishes it:
* sign-up: email_index first (it reserves the email), then the user row. An index row whose
  user row never appeared (a crash in between) is reclaimed by a later sign-up after a minute.
* course create / join: the course-shard rows first (course, membership: the source of truth
  for access), then the user-shard enrolment (the index for "my courses"). A crash in between
  leaves a member whose course is missing from "my courses" until the join is retried.
Values are always bound parameters: no SQL text is ever built from input.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast, overload

from core.db import ShardedPostgres
from core.ids import uuid7
from core.jobs import JobState

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

JOIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ORPHAN_EMAIL_RECLAIM = "1 minute"


def _pool_for(db: ShardedPostgres, key: uuid.UUID | str) -> ConnectionPool[Connection[DictRow]]:
    """The pool of ``key``'s shard, typed as ``ShardedPostgres`` builds it: its connections have
    ``row_factory=dict_row``, which the declared ``ConnectionPool`` (tuple rows by default) does not say."""
    return cast("ConnectionPool[Connection[DictRow]]", db.for_key(key))


def _returned(row: DictRow | None) -> DictRow:
    """The row of a statement that always yields one (``... RETURNING`` of an insert or upsert,
    a read of the row just written on the same connection): ``None`` there is a broken invariant."""
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


@overload
def jsonable(row: dict[str, Any]) -> dict[str, Any]: ...
@overload
def jsonable(row: None) -> None: ...
@overload
def jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None: ...
def jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as JSON-ready values, the same shape whether it came from PostgreSQL or the cache."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, uuid.UUID):
            out[key] = str(value)
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


class EmailTaken(Exception):
    pass


class UserRepository:
    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    def create(self, *, email: str, password_hash: str, role: str, display_name: str) -> dict[str, Any]:
        email = email.lower()
        user_id = uuid7()
        with _pool_for(self.db, email).connection() as conn:
            reserved = conn.execute(
                "INSERT INTO email_index (email, user_id) VALUES (%s, %s) ON CONFLICT (email) DO NOTHING RETURNING 1",
                (email, user_id),
            ).fetchone()
            if reserved is None:
                holder = conn.execute(
                    "SELECT user_id, created_at < now() - %s::interval AS stale FROM email_index WHERE email = %s",
                    (ORPHAN_EMAIL_RECLAIM, email),
                ).fetchone()
                if holder is None or not holder["stale"] or self.get(holder["user_id"]) is not None:
                    raise EmailTaken(email)
                claimed = conn.execute(
                    "UPDATE email_index SET user_id = %s, created_at = now() WHERE email = %s AND user_id = %s",
                    (user_id, email, holder["user_id"]),
                ).rowcount
                if claimed != 1:
                    raise EmailTaken(email)
        with _pool_for(self.db, user_id).connection() as conn:
            row = conn.execute(
                "INSERT INTO users (id, email, password_hash, role, display_name) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, email, role, display_name, created_at",
                (user_id, email, password_hash, role, display_name),
            ).fetchone()
        return _returned(row)

    def get(self, user_id: uuid.UUID | str) -> dict[str, Any] | None:
        with _pool_for(self.db, str(user_id)).connection() as conn:
            return conn.execute(
                "SELECT id, email, role, display_name, created_at FROM users WHERE id = %s", (user_id,)
            ).fetchone()

    def credentials_by_email(self, email: str) -> dict[str, Any] | None:
        """The user (with password hash) owning ``email``: the email shard, then the user shard."""
        email = email.lower()
        with _pool_for(self.db, email).connection() as conn:
            entry = conn.execute("SELECT user_id FROM email_index WHERE email = %s", (email,)).fetchone()
        if entry is None:
            return None
        with _pool_for(self.db, str(entry["user_id"])).connection() as conn:
            return conn.execute(
                "SELECT id, email, role, display_name, password_hash FROM users WHERE id = %s AND email = %s",
                (entry["user_id"], email),
            ).fetchone()


_COURSE_COLUMNS = "id, title, description, owner_id, join_code, created_at, updated_at"


class CourseRepository:
    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    def create(self, *, owner_id: uuid.UUID, title: str, description: str) -> dict[str, Any]:
        course_id = uuid7()
        code = self._reserve_join_code(course_id)
        with _pool_for(self.db, course_id).connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO courses (id, title, description, owner_id, join_code) VALUES (%s, %s, %s, %s, %s)"
                f" RETURNING {_COURSE_COLUMNS}",
                (course_id, title, description, owner_id, code),
            ).fetchone()
            conn.execute(
                "INSERT INTO course_members (course_id, user_id, role) VALUES (%s, %s, 'instructor')"
                " ON CONFLICT DO NOTHING",
                (course_id, owner_id),
            )
        self._enrol(user_id=owner_id, course_id=course_id, role="instructor")
        return _returned(row)

    def _reserve_join_code(self, course_id: uuid.UUID) -> str:
        for _ in range(8):
            code = "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(8))
            with _pool_for(self.db, code).connection() as conn:
                inserted = conn.execute(
                    "INSERT INTO join_codes (code, course_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (code, course_id),
                ).fetchone()
            if inserted:
                return code
        raise RuntimeError("could not find a free join code")  # 32^8 codes: effectively unreachable

    def get(self, course_id: uuid.UUID | str) -> dict[str, Any] | None:
        with _pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(f"SELECT {_COURSE_COLUMNS} FROM courses WHERE id = %s", (course_id,)).fetchone()

    def update(self, course_id: uuid.UUID, *, changes: dict[str, Any]) -> dict[str, Any] | None:
        allowed = {name: value for name, value in changes.items() if name in ("title", "description")}
        if not allowed:
            return self.get(course_id)
        assignments = ", ".join(f"{name} = %({name})s" for name in allowed)  # names from the allow-list above
        with _pool_for(self.db, course_id).connection() as conn:
            return conn.execute(
                f"UPDATE courses SET {assignments}, updated_at = now() WHERE id = %(id)s RETURNING {_COURSE_COLUMNS}",
                {**allowed, "id": course_id},
            ).fetchone()

    def member_role(self, course_id: uuid.UUID | str, user_id: uuid.UUID | str) -> str | None:
        with _pool_for(self.db, str(course_id)).connection() as conn:
            row = conn.execute(
                "SELECT role FROM course_members WHERE course_id = %s AND user_id = %s", (course_id, user_id)
            ).fetchone()
        return row["role"] if row else None

    def members(self, course_id: uuid.UUID | str) -> list[str]:
        with _pool_for(self.db, str(course_id)).connection() as conn:
            rows = conn.execute("SELECT user_id FROM course_members WHERE course_id = %s", (course_id,)).fetchall()
        return [str(row["user_id"]) for row in rows]

    def course_for_code(self, code: str) -> uuid.UUID | None:
        with _pool_for(self.db, code).connection() as conn:
            row = conn.execute("SELECT course_id FROM join_codes WHERE code = %s", (code,)).fetchone()
        return row["course_id"] if row else None

    def join(self, *, course_id: uuid.UUID, user_id: uuid.UUID, role: str = "student") -> str:
        """Adds a member (course shard first, then the user's enrolment); returns the member's role."""
        with _pool_for(self.db, course_id).connection() as conn:
            conn.execute(
                "INSERT INTO course_members (course_id, user_id, role) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (course_id, user_id, role),
            )
            current = _returned(
                conn.execute(
                    "SELECT role FROM course_members WHERE course_id = %s AND user_id = %s", (course_id, user_id)
                ).fetchone()
            )
        self._enrol(user_id=user_id, course_id=course_id, role=current["role"])
        return current["role"]

    def _enrol(self, *, user_id: uuid.UUID, course_id: uuid.UUID, role: str) -> None:
        with _pool_for(self.db, user_id).connection() as conn:
            conn.execute(
                "INSERT INTO enrolments (user_id, course_id, role) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (user_id, course_id, role),
            )

    def enrolments(self, user_id: uuid.UUID | str) -> list[dict[str, Any]]:
        with _pool_for(self.db, str(user_id)).connection() as conn:
            return conn.execute(
                "SELECT course_id, role FROM enrolments WHERE user_id = %s ORDER BY joined_at, course_id", (user_id,)
            ).fetchall()

    def get_many(self, course_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Courses by id, read as a bounded fan-out: one query per shard that holds any of them."""
        groups = self.db.group_by_shard(course_ids)
        if not groups:
            return {}

        def read(shard: int, conn) -> list[dict[str, Any]]:
            ids = [str(k) for k in groups[shard]]
            return conn.execute(f"SELECT {_COURSE_COLUMNS} FROM courses WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()

        rows = [row for part in self.db.fan_out(read, shards=groups) for row in part]
        return {str(row["id"]): row for row in rows}


_DOCUMENT_COLUMNS = (
    "id, course_id, version, filename, sha256, size_bytes, object_key, status, pages, chunks, error,"
    " uploaded_by, created_at, updated_at"
)
DOCUMENT_MUTABLE = ("status", "pages", "chunks", "error", "object_key", "filename")


class DocumentRepository:
    """Document metadata on the course shard; generic so the ingestion service writes through it."""

    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    def list(self, course_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """The latest version of each document of a course."""
        with _pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT DISTINCT ON (id) {_DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s"
                " ORDER BY id, version DESC",
                (course_id,),
            ).fetchall()

    def get(self, course_id: uuid.UUID | str, document_id: uuid.UUID | str) -> dict[str, Any] | None:
        with _pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s AND id = %s"
                " ORDER BY version DESC LIMIT 1",
                (course_id, document_id),
            ).fetchone()

    def find_by_sha256(self, course_id: uuid.UUID | str, sha256: str) -> dict[str, Any] | None:
        with _pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE course_id = %s AND sha256 = %s"
                " ORDER BY version DESC LIMIT 1",
                (course_id, sha256),
            ).fetchone()

    def upsert(self, document: dict[str, Any]) -> dict[str, Any]:
        """Inserts a document version or updates its mutable fields (keyed by id + version)."""
        columns = [c.strip() for c in _DOCUMENT_COLUMNS.split(",") if c.strip() not in ("created_at", "updated_at")]
        values = {c: document.get(c) for c in columns}
        values["version"] = values["version"] or 1
        values["status"] = values["status"] or "uploaded"
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in DOCUMENT_MUTABLE)
        placeholders = ", ".join(f"%({c})s" for c in columns)
        with _pool_for(self.db, str(values["course_id"])).connection() as conn:
            row = conn.execute(
                f"INSERT INTO documents ({', '.join(columns)}) VALUES ({placeholders})"
                f" ON CONFLICT (id, version) DO UPDATE SET {updates}, updated_at = now()"
                f" RETURNING {_DOCUMENT_COLUMNS}",
                values,
            ).fetchone()
        return _returned(row)


class JobRepository:
    """The durable record of jobs: on the course shard, or the user's shard for course-less jobs."""

    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    def _shard_key(self, state: JobState) -> str:
        return state.course_id or state.user_id

    def upsert(self, state: JobState) -> None:
        """Idempotent and monotonic: an older update never overwrites a newer one."""
        with _pool_for(self.db, self._shard_key(state)).connection() as conn:
            conn.execute(
                "INSERT INTO jobs (id, kind, user_id, course_id, document_id, status, pages_done, pages_total,"
                " error, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))"
                " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, pages_done = EXCLUDED.pages_done,"
                " pages_total = EXCLUDED.pages_total, error = EXCLUDED.error, updated_at = EXCLUDED.updated_at"
                " WHERE jobs.updated_at <= EXCLUDED.updated_at",
                (
                    state.job_id,
                    state.kind,
                    state.user_id,
                    state.course_id,
                    state.document_id,
                    state.status,
                    state.pages_done,
                    state.pages_total,
                    state.error,
                    state.created_at,
                    state.updated_at,
                ),
            )

    def get(self, job_id: str) -> JobState | None:
        """By id alone the shard is unknown: a fan-out (the rare path; Redis answers first)."""

        def read(_shard: int, conn) -> dict[str, Any] | None:
            return conn.execute(
                "SELECT id, kind, user_id, course_id, document_id, status, pages_done, pages_total, error,"
                " extract(epoch FROM created_at)::float8 AS created_at,"
                " extract(epoch FROM updated_at)::float8 AS updated_at FROM jobs WHERE id = %s",
                (job_id,),
            ).fetchone()

        for row in self.db.fan_out(read):
            if row is not None:
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
        return None


__all__ = [
    "CourseRepository",
    "DocumentRepository",
    "EmailTaken",
    "JobRepository",
    "UserRepository",
    "jsonable",
]
