"""A student's study records on the user's shard — quiz attempts, flashcard states and reviews —
and their one writer.

An attempt is one row (its graded answers in ``answers``); a review is keyed by an id the client
may choose, so a retried POST is recorded once, and the card's FSRS state moves in the same
transaction as the review is recorded.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from core.db import ShardedPostgres
from records.rows import pool_for, returned


class StudyRecords:
    def __init__(self, db: ShardedPostgres) -> None:
        self.db = db

    # ---- quiz attempts -------------------------------------------------------------------------
    def add_attempt(
        self,
        *,
        attempt_id: uuid.UUID,
        user_id: str,
        course_id: str,
        document_id: str,
        version: int,
        quiz_id: str,
        score: float,
        max_score: float,
        answers: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """Records a graded attempt (idempotent on ``attempt_id``); returns the stored row."""
        with pool_for(self.db, user_id).connection() as conn:
            conn.execute(
                "INSERT INTO quiz_attempts (id, user_id, course_id, document_id, version, quiz_id, score, max_score,"
                " answers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (attempt_id, user_id, course_id, document_id, version, quiz_id, score, max_score, Jsonb(answers)),
            )
            row = conn.execute(
                "SELECT id, quiz_id, score::float8 AS score, max_score::float8 AS max_score, answers, created_at"
                " FROM quiz_attempts WHERE id = %s AND user_id = %s",
                (attempt_id, user_id),
            ).fetchone()
        return returned(row)

    def attempts(self, *, user_id: str, quiz_id: str) -> list[dict[str, Any]]:
        with pool_for(self.db, user_id).connection() as conn:
            return conn.execute(
                "SELECT id, quiz_id, score::float8 AS score, max_score::float8 AS max_score, answers, created_at"
                " FROM quiz_attempts WHERE user_id = %s AND quiz_id = %s ORDER BY created_at",
                (user_id, quiz_id),
            ).fetchall()

    # ---- flashcards ----------------------------------------------------------------------------
    def card_states(self, *, user_id: str, course_id: str) -> dict[str, dict[str, Any]]:
        """The student's FSRS state of each card of a course they have reviewed, by card id."""
        with pool_for(self.db, user_id).connection() as conn:
            rows = conn.execute(
                "SELECT card_id, state, due, reviews FROM card_states WHERE user_id = %s AND course_id = %s",
                (user_id, course_id),
            ).fetchall()
        return {row["card_id"]: row for row in rows}

    def card_state(self, *, user_id: str, card_id: str) -> dict[str, Any] | None:
        with pool_for(self.db, user_id).connection() as conn:
            return conn.execute(
                "SELECT card_id, course_id, state, due, reviews FROM card_states WHERE user_id = %s AND card_id = %s",
                (user_id, card_id),
            ).fetchone()

    def record_review(
        self,
        *,
        review_id: uuid.UUID,
        user_id: str,
        card_id: str,
        course_id: str,
        rating: int,
        reviewed_at: datetime,
        due_before: datetime | None,
        state_after: dict[str, Any],
        due_after: datetime,
    ) -> bool:
        """Records a review and the card's new state in one transaction; False (nothing changed)
        when this review id was recorded before."""
        with pool_for(self.db, user_id).connection() as conn, conn.transaction():
            inserted = conn.execute(
                "INSERT INTO card_reviews (id, user_id, card_id, course_id, rating, reviewed_at, due_before, due_after)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING 1",
                (review_id, user_id, card_id, course_id, rating, reviewed_at, due_before, due_after),
            ).fetchone()
            if inserted is None:
                return False
            conn.execute(
                "INSERT INTO card_states (user_id, card_id, course_id, state, due, reviews, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, 1, %s) ON CONFLICT (user_id, card_id) DO UPDATE SET"
                " state = EXCLUDED.state, due = EXCLUDED.due, reviews = card_states.reviews + 1,"
                " updated_at = EXCLUDED.updated_at",
                (user_id, card_id, course_id, Jsonb(state_after), due_after, reviewed_at),
            )
        return True


def state_json(state: dict[str, Any] | str) -> dict[str, Any]:
    """A stored FSRS state as a dict (psycopg returns jsonb already decoded)."""
    return json.loads(state) if isinstance(state, str) else state
