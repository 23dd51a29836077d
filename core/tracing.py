"""W3C trace context (``traceparent``) on top of the OpenTelemetry API/SDK.

The ids are what matter here: the API starts (or continues) a span per upload request, the
``document.uploaded`` Kafka message carries its ``traceparent`` as a header, and the ingestion
stream puts the same ``trace_id`` on its log lines, so ``lakehouse trace DOCUMENT_ID`` can follow
one document. No exporter is configured: spans are made for their ids, not shipped anywhere.
The tracer provider is private to this module (the global one is left alone).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

TRACEPARENT_HEADER = "traceparent"
# version 00: 32 hex trace id, 16 hex parent span id, 2 hex flags; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_provider: Any = None
_lock = threading.Lock()


@dataclass(frozen=True)
class TraceParent:
    """A parsed ``traceparent`` value."""

    trace_id: str
    span_id: str
    flags: str

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | bytes | None) -> TraceParent | None:
    """The trace context in a ``traceparent`` value, or None when it is missing or malformed
    (a malformed header starts a new trace instead of failing the request)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(trace_id, span_id, flags)


def _tracer() -> Any:
    global _provider
    from opentelemetry.sdk.trace import TracerProvider

    with _lock:
        if _provider is None:
            _provider = TracerProvider()
        return _provider.get_tracer("lakehouse")


@dataclass(frozen=True)
class SpanIds:
    """What a started span hands on: its ids and the ``traceparent`` that continues it."""

    trace_id: str
    span_id: str
    traceparent: str


@contextmanager
def start_span(
    name: str, *, traceparent: str | bytes | None = None, attributes: dict | None = None
) -> Iterator[SpanIds]:
    """A span named ``name``, the child of ``traceparent`` when it is valid, else a new trace."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = parse_traceparent(traceparent)
    # No valid parent: an empty context, so the span roots a new trace (never a stray current span's).
    context = TraceContextTextMapPropagator().extract({TRACEPARENT_HEADER: parent.header}) if parent else Context()
    with _tracer().start_as_current_span(name, context=context, attributes=attributes or {}) as span:
        ctx = span.get_span_context()
        trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        flags = format(int(ctx.trace_flags), "02x")
        yield SpanIds(trace_id, span_id, f"00-{trace_id}-{span_id}-{flags}")
