"""Request-scoped context: the request id, carried into every log line."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_VALID_INCOMING = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


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


def configure_logging(level: str = "INFO") -> None:
    """Entry-point logging: one line per record with the request id."""
    install_log_record_factory()
    logging.basicConfig(level=level, format=LOG_FORMAT)
