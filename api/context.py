"""Request-scoped context: the request id, carried into every log line."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_VALID_INCOMING = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
# Fields a log call may add with ``extra=`` that the JSON line carries as its own keys.
LOG_FIELDS = ("method", "path", "status", "duration_ms", "client", "document_id", "job_id", "trace_id", "stage")


def current_request_id() -> str | None:
    return _request_id.get()


def new_request_id(incoming: str | None) -> str:
    """Keeps a well-formed id from the client (or the load balancer); otherwise makes one."""
    if incoming and _VALID_INCOMING.match(incoming):
        return incoming
    return uuid.uuid4().hex


def bind_request_id(request_id: str) -> contextvars.Token:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


_installed = False


def install_log_record_factory() -> None:
    """Every LogRecord gets ``request_id`` (``-`` outside a request); idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line. JSON escapes every control character, so a request path with
    ``%0a`` or ``%1b`` cannot forge a log line or write terminal escapes."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in LOG_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Entry-point logging: structured JSON lines with the request id."""
    install_log_record_factory()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
