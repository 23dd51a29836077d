"""The ``users`` and ``email_index`` rows: the only module that writes them.

Sign-up writes email_index first (it reserves the email, on the email's shard), then the user
row (on the user's shard). An index row whose user row never appeared (a crash in between) is
reclaimed by a later sign-up after a minute. Values are always bound parameters.
"""

from __future__ import annotations

import uuid
from typing import Any

from core.db import ShardedPostgres
from core.ids import uuid7
from records.rows import pool_for, returned

ORPHAN_EMAIL_RECLAIM = "1 minute"


class EmailTaken(Exception):
    pass


class UserRecords:
    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    def create(self, *, email: str, password_hash: str, role: str, display_name: str) -> dict[str, Any]:
        email = email.lower()
        user_id = uuid7()
        with pool_for(self.db, email).connection() as conn:
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
        with pool_for(self.db, user_id).connection() as conn:
            row = conn.execute(
                "INSERT INTO users (id, email, password_hash, role, display_name) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, email, role, display_name, created_at",
                (user_id, email, password_hash, role, display_name),
            ).fetchone()
        return returned(row)

    def get(self, user_id: uuid.UUID | str) -> dict[str, Any] | None:
        with pool_for(self.db, str(user_id)).connection() as conn:
            return conn.execute(
                "SELECT id, email, role, display_name, created_at FROM users WHERE id = %s", (user_id,)
            ).fetchone()

    def credentials_by_email(self, email: str) -> dict[str, Any] | None:
        """The user (with password hash) owning ``email``: the email shard, then the user shard."""
        email = email.lower()
        with pool_for(self.db, email).connection() as conn:
            entry = conn.execute("SELECT user_id FROM email_index WHERE email = %s", (email,)).fetchone()
        if entry is None:
            return None
        with pool_for(self.db, str(entry["user_id"])).connection() as conn:
            return conn.execute(
                "SELECT id, email, role, display_name, password_hash FROM users WHERE id = %s AND email = %s",
                (entry["user_id"], email),
            ).fetchone()
