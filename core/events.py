"""Event schemas on Kafka: JSON with a ``schema_version``. One model per event type."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1
# The documents.filename column and the event carry the same display name, so the lengths agree.
FILENAME_MAX_CHARS = 255

TOPIC_DOCUMENTS_UPLOADED = "documents.uploaded"
TOPIC_DOCUMENTS_INDEXED = "documents.indexed"
TOPIC_DOCUMENTS_FAILED = "documents.failed"
TOPIC_ANALYTICS_EVENTS = "analytics.events"
TOPIC_ANALYTICS_DLQ = "analytics.events.dlq"

# Names of the analytics events (AnalyticsEvent.name) and the properties the warehouse needs of each.
EVENT_SEARCH = "search.performed"  # result_count, top_score (None without results), mode, query
EVENT_NOTES_VIEWED = "notes.viewed"  # document_id, version
EVENT_QUIZ_STARTED = "quiz.started"  # quiz_id
EVENT_QUIZ_ATTEMPTED = "quiz.attempted"  # attempt_id, quiz_id, score, max_score, answered
EVENT_REQUEST_SAMPLED = "request.sampled"  # route, status, latency_ms


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    occurred_at: datetime


class DocumentUploaded(_Event):
    """Published by the API once the raw bytes are stored; keyed by ``document_id``."""

    event_type: Literal["document.uploaded"] = "document.uploaded"
    document_id: str
    course_id: str
    version: int = Field(ge=1)
    job_id: str
    uploaded_by: str
    object_uri: str = Field(description="Where the raw PDF is: file:// or s3a:// URI")
    filename: str = Field(max_length=FILENAME_MAX_CHARS, description="Display name (core.documents.display_filename)")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    replaces_version: int | None = Field(None, description="Version whose chunks leave search once this is indexed")
    attempt: int = Field(
        1, ge=1, description="1 for an upload; n+1 when `lakehouse jobs retry` re-queues a failed version"
    )


class DocumentIndexed(_Event):
    event_type: Literal["document.indexed"] = "document.indexed"
    document_id: str
    course_id: str
    version: int
    job_id: str
    pages: int
    chunks: int
    seconds: float


class DocumentFailed(_Event):
    """Dead letter: the document's own failure with a human-readable reason."""

    event_type: Literal["document.failed"] = "document.failed"
    document_id: str | None
    course_id: str | None
    version: int | None
    job_id: str | None
    reason: str
    raw: str | None = Field(None, description="The offending message, when it could not be parsed")


# The Airflow asset the ingestion stream marks when documents are indexed; the study DAGs run on it.
INDEXED_DOCUMENTS_ASSET = "lakehouse_indexed_documents"


class AnalyticsEvent(_Event):
    """A student's action for the warehouse (published off the request's critical path)."""

    event_type: Literal["analytics"] = "analytics"
    name: str = Field(description="What happened, e.g. quiz.attempted")
    user_id: str | None
    course_id: str | None
    properties: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
