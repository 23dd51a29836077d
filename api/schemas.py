"""Request and response bodies. Requests refuse unknown fields and coerce nothing (strict)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from core.documents import DocumentStatus

JOIN_CODE_PATTERN = r"^[A-HJ-NP-Z2-9]{8}$"  # no 0/O/1/I: read aloud in a lecture hall


# C0 controls except tab, newline, carriage return; DEL. PostgreSQL cannot store NUL at all, and
# the others only forge log lines or terminal output.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Request(BaseModel):
    # Lengths and patterns apply to the value as sent (as the OpenAPI schema says); surrounding
    # whitespace is stripped afterwards, and a required text that was only whitespace is refused.
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain NUL or other control characters")
        stripped = value.strip()
        field = cls.model_fields.get(info.field_name or "")
        required_text = field is not None and any(getattr(m, "min_length", 0) for m in field.metadata)
        if value and not stripped and required_text:
            raise ValueError("must not be blank")
        return stripped


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- auth -----------------------------------------------------------------------------------
class SignUp(_Request):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=10, max_length=256)
    display_name: str = Field(min_length=1, max_length=100)
    role: Literal["student", "instructor"] = Field("student", description="Admins are not self-service")


class Login(_Request):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(_Request):
    refresh_token: str = Field(min_length=16, max_length=4096)


class Tokens(_Response):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds the access token is valid")


class User(_Response):
    id: uuid.UUID
    email: str
    role: Literal["student", "instructor", "admin"]
    display_name: str
    created_at: datetime


# ---- courses ----------------------------------------------------------------------------------
class CourseCreate(_Request):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)


class CourseUpdate(_Request):
    """Fields left out, or sent as null, keep their current value."""

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)


class JoinCourse(_Request):
    join_code: str = Field(pattern=JOIN_CODE_PATTERN, description="Eight characters from the instructor")


class Course(_Response):
    id: uuid.UUID
    title: str
    description: str
    owner_id: uuid.UUID
    join_code: str | None = Field(None, description="Shown to the course's instructors only")
    my_role: Literal["student", "instructor", "admin"] | None = None
    created_at: datetime
    updated_at: datetime


class CourseList(_Response):
    items: list[Course]


# ---- documents --------------------------------------------------------------------------------
class Document(_Response):
    id: uuid.UUID
    course_id: uuid.UUID
    version: int
    filename: str
    sha256: str
    size_bytes: int
    status: DocumentStatus
    pages: int | None
    chunks: int | None
    error: str | None
    uploaded_by: uuid.UUID
    created_at: datetime
    updated_at: datetime


class DocumentList(_Response):
    items: list[Document]


# ---- jobs ---------------------------------------------------------------------------------------
class Job(_Response):
    id: str
    kind: str
    course_id: str | None
    document_id: str | None
    status: Literal["queued", "running", "succeeded", "failed"]
    stage: Literal["queued", "extracting", "searchable_text", "embedding", "indexed", "failed"] = Field(
        "queued",
        description="Ingestion stage: searchable_text means full-text search finds the document while its "
        "embeddings are computed; indexed means vector and hybrid search too",
    )
    pages_done: int
    pages_total: int | None
    eta_s: float | None = Field(None, description="Estimated seconds left, from the worker's rate so far")
    error: str | None = Field(None, description="Why the job failed, in words")
    created_at: float = Field(description="Unix seconds")
    updated_at: float = Field(description="Unix seconds")


# ---- health -------------------------------------------------------------------------------------
class Health(_Response):
    status: Literal["ok"]


class DependencyStatus(_Response):
    name: str
    ok: bool
    latency_ms: float | None
    detail: str


class Readiness(_Response):
    status: Literal["ready", "degraded", "starting", "unavailable"]
    dependencies: list[DependencyStatus]


# ---- uploads and search -------------------------------------------------------------------------
class UploadedDocument(_Response):
    document_id: uuid.UUID
    version: int
    job_id: uuid.UUID | None = Field(description="The processing job; null when the bytes were already uploaded")
    filename: str = Field(description="The display name kept for the file (path parts and control characters removed)")
    status: DocumentStatus
    duplicate: bool = Field(description="True when the same bytes already exist in this course")
    location: str = Field(description="Where to follow this upload: the job, or the existing document")
    trace_id: str | None = Field(None, description="The upload's trace id: `lakehouse trace DOCUMENT_ID` follows it")


class UploadAccepted(_Response):
    jobs: list[UploadedDocument]


class SearchHit(_Response):
    chunk_id: str
    document_id: uuid.UUID
    version: int
    page_start: int = Field(description="First page (1-based) the chunk's text comes from")
    page_end: int = Field(description="Last page (1-based) the chunk's text comes from")
    text: str
    score: float = Field(description="Reciprocal-rank-fusion score of vector and full-text ranks")


class SearchResults(_Response):
    query: str
    hits: list[SearchHit]
    index_version: int | None = Field(
        None, description="The index version searched (`lakehouse lake versions`): changes when a reprocess goes live"
    )


# ---- study material ------------------------------------------------------------------------------
class NotReadyBody(_Response):
    status: Literal["not_ready"] = "not_ready"
    detail: str
    job: Job | None = Field(None, description="The job generating it, when one runs")


class QuizOptionOut(_Response):
    option_id: str
    text: str


class QuizItemOut(_Response):
    item_id: str
    kind: Literal["mcq", "cloze"]
    question: str
    options: list[QuizOptionOut]
    page: int = Field(description="Page the item's source passage is on")
    difficulty: Literal["easy", "medium", "hard"]


class QuizQualityOut(_Response):
    answerability: float
    duplicate_rate: float
    flagged: bool
    reasons: list[str]


class QuizOut(_Response):
    quiz_id: str
    document_id: uuid.UUID
    version: int
    generator: str
    quality: QuizQualityOut
    items: list[QuizItemOut] = Field(description="Without the key: POST an attempt to be graded")


class Answer(_Request):
    item_id: str = Field(min_length=1, max_length=64)
    option_id: str = Field(min_length=1, max_length=64)
    seconds: float | None = Field(None, ge=0, le=86400, description="Time spent on the item")


class AttemptIn(_Request):
    attempt_id: uuid.UUID | None = Field(None, strict=False, description="Choose one to make a retried POST count once")
    answers: list[Answer] = Field(min_length=1, max_length=500)


class GradedItem(_Response):
    item_id: str
    chosen_option_id: str | None
    correct_option_id: str
    correct: bool
    explanation: str
    page: int
    seconds: float | None


class AttemptOut(_Response):
    attempt_id: uuid.UUID
    quiz_id: str
    score: float
    max_score: float
    items: list[GradedItem]
    created_at: datetime


class DueCard(_Response):
    card_id: str
    front: str
    back: str
    page: int
    document_id: uuid.UUID
    due_at: datetime | None = Field(description="null: never reviewed (due now)")
    reviews: int


class DueCards(_Response):
    course_id: uuid.UUID
    due: int
    total: int
    cards: list[DueCard]


class ReviewIn(_Request):
    rating: Literal["again", "hard", "good", "easy"]
    review_id: uuid.UUID | None = Field(None, strict=False, description="Choose one to make a retried POST count once")


class ReviewOut(_Response):
    card_id: str
    recorded: bool = Field(description="False when this review id was recorded before")
    due_at: datetime
    reviews: int
    stability: float | None


class GenerationRequested(_Response):
    status: Literal["ready", "queued"] = Field(description="ready: it exists (GET location); queued: follow the job")
    job: Job | None = Field(None, description="The job generating it (progress also over the notifications WebSocket)")
    location: str
