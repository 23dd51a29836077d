"""Uploads: stream to the object store's raw zone, dedupe by content, record, queue on Kafka.

The order is what makes a failure lose nothing: every part is checked first (``%PDF-`` magic,
size), then the bytes are stored (immutable key per document version), then the document row
and its job (one transaction on the course shard), then the ``document.uploaded`` event
(idempotent producer, acks=all, keyed by document id). If the row cannot be written the stored
bytes are deleted in the same request, so no object is left that no row owns. If Kafka
refuses, the version and its job are marked failed with that reason and the caller gets a 503;
uploading the same bytes again is then accepted (a failed version is not a duplicate).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import psycopg

from api.auth import Principal
from api.errors import BadRequest, ProblemError, ServiceUnavailable
from api.services import CourseService, DocumentService, JobService
from core.documents import PDF_MAGIC, display_filename, original_filename
from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.ids import uuid7
from core.keys import raw_object_key
from core.tracing import TRACEPARENT_HEADER, SpanIds, start_span
from lake.raw_uploads import is_transient
from lake.store import ObjectStore

log = logging.getLogger("api.uploads")

HASH_BLOCK = 1024 * 1024
JOB_KIND = "ingest_document"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Publisher(Protocol):
    """What uploads need of the event bus (``streaming.kafka.EventPublisher``)."""

    def publish(
        self,
        topic: str,
        *,
        key: str,
        value: dict[str, Any],
        timeout_s: float = 10.0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class IncomingFile:
    """One uploaded part: its name as sent and a seekable stream (Starlette spools big parts to disk)."""

    filename: str
    stream: IO[bytes]


@dataclass(frozen=True)
class CheckedFile:
    incoming: IncomingFile
    sha256: str
    size: int

    @property
    def display_name(self) -> str:
        return display_filename(self.incoming.filename)


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


class UploadService:
    def __init__(
        self,
        *,
        max_upload_bytes: int,
        store: ObjectStore,
        courses: CourseService,
        documents: DocumentService,
        jobs: JobService,
        publisher: Publisher,
    ) -> None:
        self.max_upload_bytes = max_upload_bytes
        self.store = store
        self.courses = courses
        self.documents = documents
        self.jobs = jobs
        self.publisher = publisher

    def validate(self, files: list[IncomingFile]) -> list[CheckedFile]:
        """Checks every part before anything is stored: one bad file refuses the request whole."""
        if not files:
            raise BadRequest("Send at least one file in the multipart field `files`.")
        checked, refused = [], []
        for incoming in files:
            shown = display_filename(incoming.filename)
            try:
                sha256, size = sniff_and_hash(incoming.stream)
            except ValueError as exc:
                refused.append(f"{shown}: {exc}")
                continue
            if size > self.max_upload_bytes:
                refused.append(f"{shown}: {size} bytes exceeds the limit of {self.max_upload_bytes}")
                continue
            checked.append(CheckedFile(incoming, sha256, size))
        if refused:
            raise UnsupportedMediaType("Only PDF files are accepted; nothing was stored. " + "; ".join(refused))
        return checked

    def upload(
        self,
        course_id: uuid.UUID,
        principal: Principal,
        files: list[IncomingFile],
        *,
        replace: bool,
        traceparent: str | None = None,
    ) -> list[dict[str, Any]]:
        """One result per part: a new queued version with its job, or the existing duplicate. The
        request's span continues ``traceparent`` (the caller's) or starts a trace; every result
        carries its ``trace_id`` and the Kafka events its ``traceparent`` header."""
        self.courses.require_visible(course_id, principal)
        checked_files = self.validate(files)
        attributes = {"course_id": str(course_id)}
        with start_span("upload_documents", traceparent=traceparent, attributes=attributes) as span:
            return [self._one(str(course_id), principal, c, replace=replace, span=span) for c in checked_files]

    def _one(
        self, course_id: str, principal: Principal, checked: CheckedFile, *, replace: bool, span: SpanIds
    ) -> dict[str, Any]:
        existing = self.documents.same_content(course_id, checked.sha256)
        if existing is not None and existing["status"] != "failed" and not replace:
            return {
                "document_id": existing["id"],
                "version": existing["version"],
                "job_id": None,
                "filename": existing["filename"],
                "status": existing["status"],
                "duplicate": True,
                "trace_id": span.trace_id,
            }
        if existing is not None:  # replace=true, or a failed version uploaded again
            document_id, version = existing["id"], existing["version"] + 1
            replaces = existing["version"] if existing["status"] != "failed" else None
        else:
            document_id, version, replaces = str(uuid7()), 1, None
        key = raw_object_key(course_id, document_id, version)
        job = self.jobs.new(kind=JOB_KIND, user_id=str(principal.user_id), course_id=course_id, document_id=document_id)
        try:
            self.store.put_stream(key, checked.incoming.stream)
        except Exception as exc:  # an object store that is down: nothing was written, say so
            if not is_transient(exc):
                raise
            log.error("upload to course %s not stored: %s: %s", course_id, type(exc).__name__, exc)
            raise ServiceUnavailable("The file store is unavailable; the upload was not stored. Try again.") from exc
        try:
            self.documents.create_version(
                {
                    "id": document_id,
                    "course_id": course_id,
                    "version": version,
                    "filename": checked.display_name,
                    "original_filename": original_filename(checked.incoming.filename),
                    "sha256": checked.sha256,
                    "size_bytes": checked.size,
                    "object_key": key,
                    "uploaded_by": str(principal.user_id),
                },
                job=job,
            )
        except psycopg.errors.UniqueViolation:
            # A concurrent upload of the same bytes won the (course, sha256, version) race.
            self.store.delete(key)
            return self._one(course_id, principal, checked, replace=False, span=span)
        except BaseException:
            self.store.delete(key)  # no row owns these bytes: never leave them behind
            raise
        self.jobs.announce(job)
        event = DocumentUploaded(
            event_id=str(uuid7()),
            occurred_at=datetime.now(UTC),
            document_id=document_id,
            course_id=course_id,
            version=version,
            job_id=job.job_id,
            uploaded_by=str(principal.user_id),
            object_uri=self.store.uri(key),
            filename=checked.display_name,
            size_bytes=checked.size,
            sha256=checked.sha256,
            replaces_version=replaces,
        )
        try:
            self.publisher.publish(
                TOPIC_DOCUMENTS_UPLOADED,
                key=document_id,
                value=event.model_dump(mode="json"),
                headers=[(TRACEPARENT_HEADER, span.traceparent.encode())],
            )
        except Exception as exc:  # any broker failure: record it on the job, tell the caller
            reason = f"could not queue the document for processing: {type(exc).__name__}: {exc}"
            log.error("upload %s: %s", document_id, reason)
            self.documents.fail(course_id=course_id, document_id=document_id, version=version, job=job, reason=reason)
            self.jobs.announce(job.model_copy(update={"status": "failed", "error": reason, "updated_at": time.time()}))
            raise ServiceUnavailable(
                "The processing queue is unavailable; the upload was not queued. Try again."
            ) from exc
        log.info(
            "document queued",
            extra={"document_id": document_id, "job_id": job.job_id, "trace_id": span.trace_id, "stage": "queued"},
        )
        return {
            "document_id": document_id,
            "version": version,
            "job_id": job.job_id,
            "filename": checked.display_name,
            "status": "queued",
            "duplicate": False,
            "trace_id": span.trace_id,
        }
