"""The ``courses``, ``course_members``, ``enrolments`` and ``join_codes`` rows: their one writer.

Course create / join write the course-shard rows first (course, membership: the source of
truth for access), then the user-shard enrolment (the index for "my courses"); every step is
idempotent, so a retry of a half-done operation finishes it. A crash in between leaves a member
whose course is missing from "my courses" until the join is retried.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from core.db import ShardedPostgres
from core.db_async import AsyncShards
from core.ids import uuid7
from records.rows import pool_for, returned

JOIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
COURSE_FIELDS_EDITABLE = ("title", "description")


_COURSE_COLUMNS = "id, title, description, owner_id, join_code, created_at, updated_at"
_WITH_MEMBER_ROLE = (
    f"SELECT {_COURSE_COLUMNS}, (SELECT role FROM course_members m WHERE m.course_id = c.id"
    " AND m.user_id = %s) AS member_role FROM courses c WHERE c.id = %s"
)
_MEMBER_ROLE = "SELECT role FROM course_members WHERE course_id = %s AND user_id = %s"


class CourseRecords:
    def __init__(self, db: ShardedPostgres, adb: AsyncShards | None = None) -> None:
        self.db = db
        # The event loop's pools (the API's hot reads); None outside the API.
        self.adb = adb

    def create(self, *, owner_id: uuid.UUID, title: str, description: str) -> dict[str, Any]:
        course_id = uuid7()
        code = self._reserve_join_code(course_id)
        with pool_for(self.db, course_id).connection() as conn, conn.transaction():
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
        return returned(row)

    def _reserve_join_code(self, course_id: uuid.UUID) -> str:
        for _ in range(8):
            code = "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(8))
            with pool_for(self.db, code).connection() as conn:
                inserted = conn.execute(
                    "INSERT INTO join_codes (code, course_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (code, course_id),
                ).fetchone()
            if inserted:
                return code
        raise RuntimeError("could not find a free join code")  # 32^8 codes: effectively unreachable

    def get(self, course_id: uuid.UUID | str) -> dict[str, Any] | None:
        with pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(f"SELECT {_COURSE_COLUMNS} FROM courses WHERE id = %s", (course_id,)).fetchone()

    def update(self, course_id: uuid.UUID, *, changes: dict[str, Any]) -> dict[str, Any] | None:
        # null means "keep the current value" (the columns are NOT NULL)
        allowed = {k: v for k, v in changes.items() if k in COURSE_FIELDS_EDITABLE and v is not None}
        if not allowed:
            return self.get(course_id)
        assignments = ", ".join(f"{name} = %({name})s" for name in allowed)  # names from the allow-list above
        with pool_for(self.db, course_id).connection() as conn:
            return conn.execute(
                f"UPDATE courses SET {assignments}, updated_at = now() WHERE id = %(id)s RETURNING {_COURSE_COLUMNS}",
                {**allowed, "id": course_id},
            ).fetchone()

    def with_member_role(self, course_id: uuid.UUID | str, user_id: uuid.UUID | str) -> dict[str, Any] | None:
        """The course row plus ``member_role`` (the user's role, None if not a member) in one
        query (both rows live on the course's shard): the uncached course read."""
        with pool_for(self.db, str(course_id)).connection() as conn:
            return conn.execute(_WITH_MEMBER_ROLE, (user_id, course_id)).fetchone()

    async def awith_member_role(self, course_id: uuid.UUID | str, user_id: uuid.UUID | str) -> dict[str, Any] | None:
        """``with_member_role`` on the event loop (the async pools; no thread-pool hop)."""
        if self.adb is None:
            raise RuntimeError("CourseRecords was built without async pools")
        async with self.adb.connection(str(course_id)) as conn:
            cursor = await conn.execute(_WITH_MEMBER_ROLE, (user_id, course_id))
            return await cursor.fetchone()

    async def amember_role(self, course_id: uuid.UUID | str, user_id: uuid.UUID | str) -> str | None:
        """``member_role`` on the event loop."""
        if self.adb is None:
            raise RuntimeError("CourseRecords was built without async pools")
        async with self.adb.connection(str(course_id)) as conn:
            cursor = await conn.execute(_MEMBER_ROLE, (course_id, user_id))
            row = await cursor.fetchone()
        return row["role"] if row else None

    async def aget(self, course_id: uuid.UUID | str) -> dict[str, Any] | None:
        """``get`` on the event loop."""
        if self.adb is None:
            raise RuntimeError("CourseRecords was built without async pools")
        async with self.adb.connection(str(course_id)) as conn:
            cursor = await conn.execute(f"SELECT {_COURSE_COLUMNS} FROM courses WHERE id = %s", (course_id,))
            return await cursor.fetchone()

    def member_role(self, course_id: uuid.UUID | str, user_id: uuid.UUID | str) -> str | None:
        with pool_for(self.db, str(course_id)).connection() as conn:
            row = conn.execute(_MEMBER_ROLE, (course_id, user_id)).fetchone()
        return row["role"] if row else None

    def members(self, course_id: uuid.UUID | str) -> list[str]:
        with pool_for(self.db, str(course_id)).connection() as conn:
            rows = conn.execute("SELECT user_id FROM course_members WHERE course_id = %s", (course_id,)).fetchall()
        return [str(row["user_id"]) for row in rows]

    def course_for_code(self, code: str) -> uuid.UUID | None:
        with pool_for(self.db, code).connection() as conn:
            row = conn.execute("SELECT course_id FROM join_codes WHERE code = %s", (code,)).fetchone()
        return row["course_id"] if row else None

    def join(self, *, course_id: uuid.UUID, user_id: uuid.UUID, role: str = "student") -> str:
        """Adds a member (course shard first, then the user's enrolment); returns the member's role."""
        with pool_for(self.db, course_id).connection() as conn:
            conn.execute(
                "INSERT INTO course_members (course_id, user_id, role) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (course_id, user_id, role),
            )
            current = returned(
                conn.execute(
                    "SELECT role FROM course_members WHERE course_id = %s AND user_id = %s", (course_id, user_id)
                ).fetchone()
            )
        self._enrol(user_id=user_id, course_id=course_id, role=current["role"])
        return current["role"]

    def _enrol(self, *, user_id: uuid.UUID, course_id: uuid.UUID, role: str) -> None:
        with pool_for(self.db, user_id).connection() as conn:
            conn.execute(
                "INSERT INTO enrolments (user_id, course_id, role) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (user_id, course_id, role),
            )

    def enrolments(self, user_id: uuid.UUID | str) -> list[dict[str, Any]]:
        with pool_for(self.db, str(user_id)).connection() as conn:
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
