"""Upload events from a micro-batch: parsing with a dead-letter reason, and outcome event ids."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from core.events import DocumentUploaded
from core.tracing import parse_traceparent

_EVENT_NAMESPACE = uuid.UUID("0d6f3c52-96a8-4e5e-8a53-3f0f6a0c2b71")
DEAD_LETTER_RAW_CHARS = 10_000


@dataclass(frozen=True)
class SourceEvent:
    """One Kafka record of ``documents.uploaded`` as the micro-batch read it."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    traceparent: str | None = None  # the message's ``traceparent`` header (W3C trace context), if any

    @property
    def position(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


@dataclass(frozen=True)
class Upload:
    """A valid upload event, with where it came from and when its processing started."""

    source: SourceEvent
    event: DocumentUploaded
    started: float

    @property
    def trace_id(self) -> str | None:
        """The trace the upload request started (from the Kafka header), or None without one."""
        parent = parse_traceparent(self.source.traceparent)
        return parent.trace_id if parent else None


@dataclass(frozen=True)
class DeadLetter:
    """A message that is not a valid upload event: its reason and (truncated) raw text."""

    reason: str
    raw: str


@dataclass(frozen=True)
class SortedEvents:
    uploads: tuple[Upload, ...]
    dead_letters: tuple[DeadLetter, ...]
    duplicates: int


def parse_uploaded(value: str | None) -> DocumentUploaded:
    """The event, or ValueError with a reason fit for the dead-letter topic."""
    if value is None:
        raise ValueError("invalid document.uploaded event: empty message")
    try:
        return DocumentUploaded.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "message"
        raise ValueError(
            f"invalid document.uploaded event: {where}: {first.get('msg')} ({exc.error_count()} error(s))"
        ) from exc


def sort_events(sources: Iterable[SourceEvent], *, started: float) -> SortedEvents:
    """Valid uploads in (partition, offset) order, one per (document, version); the rest as dead letters."""
    uploads: list[Upload] = []
    dead: list[DeadLetter] = []
    seen: set[tuple[str, int]] = set()
    duplicates = 0
    for source in sorted(sources, key=lambda s: (s.partition, s.offset)):
        try:
            event = parse_uploaded(source.value)
        except ValueError as exc:
            dead.append(DeadLetter(reason=str(exc), raw=(source.value or "")[:DEAD_LETTER_RAW_CHARS]))
            continue
        if (event.document_id, event.version) in seen:
            duplicates += 1  # the same upload twice in one batch: one document
            continue
        seen.add((event.document_id, event.version))
        uploads.append(Upload(source=source, event=event, started=started))
    return SortedEvents(uploads=tuple(uploads), dead_letters=tuple(dead), duplicates=duplicates)


def outcome_event_id(kind: str, doc: DocumentUploaded | None, raw: str | None = None) -> str:
    """Deterministic id of an outcome event, so consumers drop the copy a replay re-publishes."""
    subject = (
        f"{doc.document_id}:{doc.version}:{doc.event_id}" if doc else hashlib.sha256((raw or "").encode()).hexdigest()
    )
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{kind}:{subject}"))
