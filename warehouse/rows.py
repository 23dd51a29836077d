"""Source rows -> warehouse rows: PostgreSQL exports to facts and dimensions, analytics events
(validated, or refused with a reason for the dead-letter topic). Pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from core.events import (
    EVENT_NOTES_VIEWED,
    EVENT_QUIZ_ATTEMPTED,
    EVENT_QUIZ_STARTED,
    EVENT_REQUEST_SAMPLED,
    EVENT_SEARCH,
    AnalyticsEvent,
)

# Target table and column order of each PostgreSQL export.
COLUMNS: dict[str, tuple[str, list[str]]] = {
    "courses": ("dim_courses", ["course_id", "title", "owner_id", "shard", "created_at", "updated_at"]),
    "documents": (
        "dim_documents",
        ["document_id", "version", "course_id", "filename", "size_bytes", "status", "pages", "chunks", "error",
         "uploaded_by", "created_at", "updated_at"],
    ),
    "jobs": (
        "fact_ingestion_jobs",
        ["job_id", "kind", "course_id", "document_id", "version", "user_id", "outcome", "queued_at", "started_at",
         "searchable_at", "indexed_at", "finished_at", "pages", "chunks", "queued_seconds", "processing_seconds",
         "total_seconds", "failure_reason", "updated_at"],
    ),
    "quiz_attempts": (
        "fact_quiz_attempts",
        ["attempt_id", "item_id", "position", "user_id", "course_id", "quiz_id", "document_id", "version",
         "attempted_at", "chosen_option_id", "correct_option_id", "correct", "seconds", "attempt_score",
         "attempt_max_score"],
    ),
    "card_reviews": (
        "fact_reviews",
        ["review_id", "user_id", "card_id", "course_id", "rating", "reviewed_at", "due_before", "due_after",
         "scheduled_days", "card_state", "card_stability", "card_difficulty", "card_reviews", "state_updated_at"],
    ),
}  # fmt: skip
EVENT_COLUMNS = [
    "event_id", "name", "occurred_at", "user_id", "course_id", "result_count", "top_score", "latency_ms",
    "properties", "kafka_partition", "kafka_offset",
]  # fmt: skip
# The partition key of each partitioned table (OPTIMIZE ... PARTITION after a load touches it).
PARTITION_COLUMN = {
    "fact_ingestion_jobs": "queued_at",
    "fact_quiz_attempts": "attempted_at",
    "fact_reviews": "reviewed_at",
    "fact_api_events": "occurred_at",
}
_FSRS_STATES = {1: "learning", 2: "review", 3: "relearning"}


def course_rows(row: dict[str, Any], shard: int) -> list[list[Any]]:
    return [[row["course_id"], row["title"], row["owner_id"], shard, row["created_at"], row["updated_at"]]]


def document_rows(row: dict[str, Any], shard: int) -> list[list[Any]]:
    return [[row[c] for c in COLUMNS["documents"][1]]]


def job_rows(row: dict[str, Any], shard: int) -> list[list[Any]]:
    """searchable_at is the stream's text-first moment (``jobs.searchable_at``); a succeeded job
    without one (finished before the column existed) takes its indexed time, an upper bound.
    started_at (``jobs.started_at``, the stream's first take-up) splits the job's time into queued
    and processing seconds; both stay NULL for jobs that started before that column existed."""
    status = row["status"]
    finished = row["updated_at"] if status in ("succeeded", "failed") else None
    indexed = row["updated_at"] if status == "succeeded" else None
    searchable = row.get("searchable_at") or indexed
    started = row.get("started_at")
    total = (finished - row["created_at"]).total_seconds() if finished is not None else None
    queued_s = (started - row["created_at"]).total_seconds() if started is not None else None
    processing_s = (finished - started).total_seconds() if started is not None and finished is not None else None
    return [
        [
            row["job_id"], row["kind"], row["course_id"] or "", row["document_id"] or "", row["version"],
            row["user_id"], status, row["created_at"], started, searchable, indexed, finished,
            row["pages"] if row["pages"] is not None else row["pages_total"], row["chunks"], queued_s, processing_s,
            total,
            row["error"] if status == "failed" else None, row["updated_at"],
        ]
    ]  # fmt: skip


def attempt_rows(row: dict[str, Any], shard: int) -> list[list[Any]]:
    """One row per item of the attempt (``answers`` holds the graded items in quiz order)."""
    answers = row["answers"]
    if isinstance(answers, str):
        answers = json.loads(answers)
    out = []
    for position, answer in enumerate(answers):
        seconds = answer.get("seconds")
        out.append(
            [
                row["attempt_id"], answer["item_id"], position, row["user_id"], row["course_id"], row["quiz_id"],
                row["document_id"] or "", row["version"] or 0, row["created_at"], answer.get("chosen_option_id"),
                answer["correct_option_id"], int(bool(answer["correct"])),
                float(seconds) if isinstance(seconds, int | float) else None, row["score"], row["max_score"],
            ]
        )  # fmt: skip
    return out


def review_rows(row: dict[str, Any], shard: int) -> list[list[Any]]:
    state = row["state"] or {}
    if isinstance(state, str):
        state = json.loads(state)
    scheduled = (row["due_after"] - row["reviewed_at"]).total_seconds() / 86400
    return [
        [
            row["review_id"], row["user_id"], row["card_id"], row["course_id"], row["rating"], row["reviewed_at"],
            row["due_before"], row["due_after"], scheduled, _FSRS_STATES.get(int(state.get("state") or 0), "unknown"),
            state.get("stability"), state.get("difficulty"), row["card_reviews"] or 0,
            row["state_updated_at"] or row["reviewed_at"],
        ]
    ]  # fmt: skip


CONVERTERS: dict[str, Callable[[dict[str, Any], int], list[list[Any]]]] = {
    "courses": course_rows,
    "documents": document_rows,
    "jobs": job_rows,
    "quiz_attempts": attempt_rows,
    "card_reviews": review_rows,
}


# ---------------------------------------------------------------------------- analytics events


class MalformedEvent(ValueError):
    """An analytics message the warehouse cannot load; the message is the reason."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


# What the warehouse needs of each known event (unknown names load with their properties as JSON).
_REQUIRED: dict[str, dict[str, Callable[[Any], bool]]] = {
    EVENT_SEARCH: {"result_count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                   "top_score": lambda v: v is None or _number(v)},
    EVENT_NOTES_VIEWED: {"document_id": _text},
    EVENT_QUIZ_STARTED: {"quiz_id": _text},
    EVENT_QUIZ_ATTEMPTED: {"quiz_id": _text, "score": _number, "max_score": _number},
    EVENT_REQUEST_SAMPLED: {"route": _text, "latency_ms": _number},
}  # fmt: skip


def event_row(raw: bytes | None, *, partition: int, offset: int) -> list[Any]:
    """The ``fact_api_events`` row of one Kafka message; ``MalformedEvent`` with the reason when
    it is not a valid ``AnalyticsEvent`` or lacks what its name requires."""
    if raw is None:
        raise MalformedEvent("empty message (no value)")
    try:
        event = AnalyticsEvent.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise MalformedEvent(f"not an AnalyticsEvent: {where}: {first['msg']}") from None
    if event.occurred_at.tzinfo is None:
        raise MalformedEvent("occurred_at has no timezone")
    props = event.properties
    for key, check in _REQUIRED.get(event.name, {}).items():
        if key not in props:
            raise MalformedEvent(f"{event.name}: property {key!r} is missing")
        if not check(props[key]):
            raise MalformedEvent(f"{event.name}: property {key!r} has an invalid value {props[key]!r}")
    result_count = props.get("result_count") if event.name == EVENT_SEARCH else None
    top_score: Any = props.get("top_score") if event.name == EVENT_SEARCH else None
    latency: Any = props.get("latency_ms")
    return [
        event.event_id, event.name, event.occurred_at, event.user_id, event.course_id, result_count,
        float(top_score) if _number(top_score) else None, float(latency) if _number(latency) else None,
        json.dumps(props, sort_keys=True, separators=(",", ":")), partition, offset,
    ]  # fmt: skip


def partition_id(value: datetime) -> str:
    """The id of the ``toYYYYMM`` partition a time falls in."""
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    return f"{value.year:04d}{value.month:02d}"
