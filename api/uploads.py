"""Uploads: stream to the object store's raw zone, dedupe by content, record, queue on Kafka.

The order is what makes a failure lose nothing: the bytes are stored first (immutable key per
document version), then the document row and the job (course shard), then the
``document.uploaded`` event (idempotent producer, acks=all, keyed by document id). If Kafka
refuses, the job is marked failed with that reason and the caller gets a 503; uploading the
same bytes again is then accepted (a document whose job failed is not a duplicate).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import psycopg

from api.auth import Principal
from api.cache import RedisDown
from api.errors import BadRequest, ProblemError, ServiceUnavailable
from api.services import CourseService, DocumentService, JobService
from core.documents import PDF_MAGIC
from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.ids import uuid7
from core.jobs import JobState
from core.keys import raw_object_key
from core.settings import Settings
from lake.store import ObjectStore

log = logging.getLogger("api.uploads")

HASH_BLOCK = 1024 * 1024
JOB_KIND = "ingest_document"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


@dataclass(frozen=True)
class IncomingFile:
    """One uploaded part: its name and a seekable stream (Starlette spools big parts to disk)."""

    filename: str
    stream: IO[bytes]


def sniff_and_hash(stream: IO[bytes]) -> tuple[str, int]:
    """SHA-256 and size, read block by block; refuses a stream that does not start with %PDF-."""
    stream.seek(0)
    head = stream.read(len(PDF_MAGIC))
    if head != PDF_MAGIC:
        raise ValueError("not a PDF: the file does not start with %PDF-")
    digest = hashlib.sha256(head)
    size = len(head)
    while block := stream.read(HASH_BLOCK):
        digest.update(block)
        size += len(block)
    stream.seek(0)
    return digest.hexdigest(), size


class EventPublisher:
    """The idempotent Kafka producer, created on first use (the API starts even if Kafka is down)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                from streaming.kafka import json_producer

                self._producer = json_producer(self.settings.kafka, client_id="lakehouse-api")
            return self._producer

    def publish(self, topic: str, *, key: str, value: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Sends and waits for the broker's acknowledgement (acks=all)."""
        self._get().send(self.settings.kafka.topic(topic), key=key, value=value).get(timeout=timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


class UploadService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ObjectStore,
        courses: CourseService,
        documents: DocumentService,
        jobs: JobService,
        publisher: EventPublisher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.courses = courses
        self.documents = documents
        self.jobs = jobs
        self.publisher = publisher

    def validate(self, files: list[IncomingFile]) -> list[tuple[IncomingFile, str, int]]:
        """Checks every part before anything is stored: one bad file refuses the request whole."""
        if not files:
            raise BadRequest("Send at least one file in the multipart field `files`.")
        checked, refused = [], []
        for incoming in files:
            try:
                sha256, size = sniff_and_hash(incoming.stream)
            except ValueError as exc:
                refused.append(f"{incoming.filename}: {exc}")
                continue
            if size > self.settings.api.max_upload_bytes:
                refused.append(
                    f"{incoming.filename}: {size} bytes exceeds the limit of {self.settings.api.max_upload_bytes}"
                )
                continue
            checked.append((incoming, sha256, size))
        if refused:
            raise UnsupportedMediaType("Only PDF files are accepted; nothing was stored. " + "; ".join(refused))
        return checked

    def upload(
        self, course_id: uuid.UUID, principal: Principal, files: list[IncomingFile], *, replace: bool
    ) -> list[dict[str, Any]]:
        self.courses.require_visible(course_id, principal)
        return [
            self._one(str(course_id), principal, incoming, sha256, size, replace=replace)
            for incoming, sha256, size in self.validate(files)
        ]

    def _one(
        self, course_id: str, principal: Principal, incoming: IncomingFile, sha256: str, size: int, *, replace: bool
    ) -> dict[str, Any]:
        existing = self.documents.repo.find_by_sha256(course_id, sha256)
        if existing is not None and existing["status"] != "failed" and not replace:
            return {
                "document_id": str(existing["id"]),
                "version": existing["version"],
                "job_id": None,
                "status": existing["status"],
                "duplicate": True,
                "location": f"/v1/courses/{course_id}/documents/{existing['id']}",
            }
        if existing is not None and (replace or existing["status"] == "failed"):
            document_id, version = str(existing["id"]), existing["version"] + 1
            replaces = existing["version"] if existing["status"] != "failed" else None
        else:
            document_id, version, replaces = str(uuid7()), 1, None
        key = raw_object_key(course_id, document_id, version)
        self.store.put_stream(key, incoming.stream)
        try:
            self.documents.record(
                {
                    "id": document_id,
                    "course_id": course_id,
                    "version": version,
                    "filename": incoming.filename[:255],
                    "sha256": sha256,
                    "size_bytes": size,
                    "object_key": key,
                    "status": "queued",
                    "uploaded_by": str(principal.user_id),
                }
            )
        except psycopg.errors.UniqueViolation:
            # A concurrent upload of the same bytes won the (course, sha256, version) race.
            self.store.delete(key)
            return self._one(course_id, principal, incoming, sha256, size, replace=False)
        job = self.jobs.create(
            kind=JOB_KIND, user_id=str(principal.user_id), course_id=course_id, document_id=document_id
        )
        event = DocumentUploaded(
            event_id=str(uuid7()),
            occurred_at=datetime.now(UTC),
            document_id=document_id,
            course_id=course_id,
            version=version,
            job_id=job.job_id,
            uploaded_by=str(principal.user_id),
            object_uri=self.store.uri(key),
            filename=incoming.filename,
            size_bytes=size,
            sha256=sha256,
            replaces_version=replaces,
        )
        try:
            self.publisher.publish(TOPIC_DOCUMENTS_UPLOADED, key=document_id, value=event.model_dump(mode="json"))
        except Exception as exc:  # any broker failure: record it on the job, tell the caller
            reason = f"could not queue the document for processing: {type(exc).__name__}: {exc}"
            log.error("upload %s: %s", document_id, reason)
            self._fail(job, course_id, document_id, reason)
            raise ServiceUnavailable(
                "The processing queue is unavailable; the upload was not queued. Try again."
            ) from exc
        return {
            "document_id": document_id,
            "version": version,
            "job_id": job.job_id,
            "status": "queued",
            "duplicate": False,
            "location": f"/v1/jobs/{job.job_id}",
        }

    def _fail(self, job: JobState, course_id: str, document_id: str, reason: str) -> None:
        failed = job.model_copy(update={"status": "failed", "error": reason, "updated_at": time.time()})
        try:
            self.jobs.redis.call("job_save", lambda _c: self.jobs.reporter.save(failed))
        except RedisDown:
            log.warning("job %s: failure recorded in PostgreSQL only (redis down)", job.job_id)
        self.jobs.record(failed)
        row = self.documents.repo.get(course_id, document_id)
        if row is not None:
            self.documents.record({**row, "status": "failed", "error": reason})
