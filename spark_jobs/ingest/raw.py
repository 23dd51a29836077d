"""Opening a raw upload for ingestion: read (``lake.raw_uploads``: transient object store errors
retried with backoff), hash-checked, pages counted, title and outline read (the chunks' section
context: a document whose outline cannot be read goes on without one); permanent problems
(missing object, hash mismatch, unusable PDF) fail the document once with their reason.

After ``ingest.read_attempts`` reads the document fails with "object store unreachable after N
attempts: ...", so the student sees why and may retry it.
"""

from __future__ import annotations

import hashlib

from lake.raw_uploads import (
    RawObjectMissing,
    RawUploadReader,
    RetryPolicy,
    hash_mismatch_reason,
    is_transient,
    read_failure_reason,
)
from processing.chunking import document_title
from processing.pdf import DEFAULT_EXTRACTOR, Extractor, Limits, PdfRejected, bounded_outline, bounded_page_count
from spark_jobs.ingest.documents import FailedDocument, OpenedDocument
from spark_jobs.ingest.events import Upload

__all__ = [
    "RawObjectMissing",
    "RawUploadReader",
    "RetryPolicy",
    "hash_mismatch_reason",
    "is_transient",
    "open_document",
    "read_failure_reason",
]


def open_document(
    upload: Upload, reader: RawUploadReader, *, extractor: Extractor = DEFAULT_EXTRACTOR, limits: Limits | None = None
) -> OpenedDocument | FailedDocument:
    """Reads the raw upload, checks its SHA-256 and counts its pages (no text extracted yet): in a
    child process killed at the document's deadline, then the page cap. Then its title (the PDF's,
    else the file name) and outline, in a child of their own that never rejects the document."""
    event = upload.event
    limits = limits or Limits()
    try:
        data = reader.read(event.object_uri)
    except Exception as exc:  # noqa: BLE001 - every read error becomes this document's reason
        return FailedDocument(upload, read_failure_reason(event.object_uri, exc, attempts=reader.policy.attempts))
    digest = hashlib.sha256(data).hexdigest()
    if digest != event.sha256:
        return FailedDocument(upload, hash_mismatch_reason(digest, event.sha256))
    try:
        pages_total = bounded_page_count(data, limits, extractor=extractor)
    except PdfRejected as exc:
        return FailedDocument(upload, exc.reason)
    title, outline = bounded_outline(data, limits)
    return OpenedDocument(
        upload,
        data=data,
        pages_total=pages_total,
        title=document_title(title, event.filename),
        outline=tuple(outline),
    )
