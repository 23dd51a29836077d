"""Job status: a Redis hash per job (fast reads, live progress) and pub/sub per user.

Any worker (the API, the Spark job, a DAG task) reports through ``JobReporter``; the API's
WebSocket relays what is published on ``notifications:{user_id}``. PostgreSQL keeps the
durable record (the API's job table); Redis is the live view.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel

from core.keys import job_key, notifications_channel, open_jobs_key

JobStatus = Literal["queued", "running", "succeeded", "failed"]
# Where an ingestion job is: text is extracted, then searchable by full text (before any
# embedding), then embedded, then indexed (vector and hybrid search too).
JobStage = Literal["queued", "extracting", "searchable_text", "embedding", "indexed", "failed"]
JOB_TTL_S = 7 * 24 * 3600


class JobState(BaseModel):
    job_id: str
    kind: str
    user_id: str
    course_id: str | None = None
    document_id: str | None = None
    status: JobStatus = "queued"
    stage: JobStage = "queued"
    pages_done: int = 0
    pages_total: int | None = None
    eta_s: float | None = None
    error: str | None = None
    created_at: float
    updated_at: float

    def to_redis(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in self.model_dump().items()}

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> JobState:
        return cls(**{k: json.loads(v) for k, v in raw.items()})


class JobReporter:
    """Writes job state to Redis and publishes every change to the owner's channel."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def get(self, job_id: str) -> JobState | None:
        raw = self.redis.hgetall(job_key(job_id))
        return JobState.from_redis(raw) if raw else None

    def save(self, state: JobState) -> JobState:
        self.redis.hset(job_key(state.job_id), mapping=state.to_redis())
        self.redis.expire(job_key(state.job_id), JOB_TTL_S)
        if state.status in ("queued", "running"):
            self.redis.sadd(open_jobs_key(state.user_id), state.job_id)
        else:
            self.redis.srem(open_jobs_key(state.user_id), state.job_id)
        self.redis.publish(notifications_channel(state.user_id), json.dumps({"type": "job", "job": state.model_dump()}))
        return state

    def update(self, job_id: str, **changes: Any) -> JobState | None:
        """Applies ``changes`` to a known job; unknown jobs are ignored (returns None)."""
        current = self.get(job_id)
        if current is None:
            return None
        return self.save(current.model_copy(update={**changes, "updated_at": time.time()}))
