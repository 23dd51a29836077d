"""The stream's log lines: one JSON object per line, and one line per document stage carrying the
document, job and trace ids (``lakehouse trace DOCUMENT_ID`` reads them back)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from core.tracing import start_span
from spark_jobs.ingest.events import Upload

# Fields a log call may add with ``extra=`` that the JSON line carries as its own keys.
LOG_FIELDS = (
    "document_id",
    "version",
    "job_id",
    "trace_id",
    "span_id",
    "stage",
    "batch_id",
    "reason",
    "pages",
    "chunks",
    "seconds",
)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line (control characters escaped, so a reason cannot forge a line)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in LOG_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


def configure_json_logging(level: str = "INFO") -> None:
    """The job's logging at its entry point: JSON lines on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def log_stage(logger: logging.Logger, upload: Upload, stage: str, *, batch_id: int, **fields: Any) -> None:
    """One document reached ``stage`` in micro-batch ``batch_id``: a line with its ids. With a
    ``traceparent`` on the message, the line is written inside a span of the stage (a child of
    the upload request's span) and carries its ids; without one, ``trace_id`` is null."""
    event = upload.event
    extra = {
        "document_id": event.document_id,
        "version": event.version,
        "job_id": event.job_id,
        "trace_id": None,
        "stage": stage,
        "batch_id": batch_id,
        **fields,
    }
    if upload.trace_id is None:
        logger.info("document %s %s", event.document_id, stage, extra=extra)
        return
    with start_span(f"ingest_document.{stage}", traceparent=upload.source.traceparent) as span:
        extra.update(trace_id=span.trace_id, span_id=span.span_id)
        logger.info("document %s %s", event.document_id, stage, extra=extra)
