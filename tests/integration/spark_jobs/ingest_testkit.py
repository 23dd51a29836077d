"""Helpers for the ingestion stream's tests: isolated settings (own topics, lake, LanceDB,
checkpoints, object store), uploads straight to Kafka, readers of what the job wrote."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.settings import Settings


def isolated_settings(root: Path, run_id: str, **sections) -> Settings:
    """The environment's settings (ports and all) with this test's own topics, lake, LanceDB,
    checkpoints and object store; ``sections`` replace fields of other sections."""
    data = Settings(environment="test").model_dump()
    data["kafka"]["topic_prefix"] = f"t{run_id}."
    data["lake"].update(root=str(root / "lake"), checkpoint_root=str(root / "checkpoints"))
    data["lancedb"]["uri"] = str(root / "lancedb")
    data["object_store"]["local_root"] = root / "objects"
    for name, section in sections.items():
        data[name].update(section.model_dump(exclude_unset=True) if isinstance(section, BaseModel) else section)
    return Settings(**data)


def isolated_env(settings: Settings) -> dict[str, str]:
    """The same isolation as environment variables, for a job run as a subprocess."""
    return {
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "LAKEHOUSE_LAKE__ROOT": settings.lake.root,
        "LAKEHOUSE_LAKE__CHECKPOINT_ROOT": settings.lake.checkpoint_root,
        "LAKEHOUSE_LANCEDB__URI": settings.lancedb.uri,
        "LAKEHOUSE_OBJECT_STORE__LOCAL_ROOT": str(settings.object_store.local_root),
    }


def upload(
    settings: Settings,
    producer,
    data: bytes,
    *,
    course_id: str,
    filename: str,
    document_id: str | None = None,
    version: int = 1,
    replaces_version: int | None = None,
    publish_event: bool = True,
) -> DocumentUploaded:
    """What the API does: the raw bytes to the object store, then `document.uploaded`
    (unless ``publish_event`` is false: the caller alters the event and publishes it)."""
    from lake.store import object_store

    document_id = document_id or str(uuid.uuid4())
    store = object_store(settings.object_store)
    key = f"raw/uploads/{course_id}/{document_id}/v{version}.pdf"
    store.put_stream(key, io.BytesIO(data))
    event = DocumentUploaded(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        document_id=document_id,
        course_id=course_id,
        version=version,
        job_id=str(uuid.uuid4()),
        uploaded_by="student-1",
        object_uri=store.uri(key),
        filename=filename,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        replaces_version=replaces_version,
    )
    if publish_event:
        publish(settings, producer, event.model_dump(mode="json"), key=document_id)
    return event


def publish(settings: Settings, producer, value, *, key: str | None) -> None:
    producer.send(settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), key=key, value=value).get(timeout=10)


def publish_raw(settings: Settings, data: bytes) -> None:
    """A message that is not JSON at all (a buggy producer)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.servers, acks="all")
    try:
        producer.send(settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), value=data).get(timeout=10)
    finally:
        producer.close()


def consume_all(settings: Settings, topic: str, *, timeout_ms: int = 4000) -> list[dict]:
    from streaming.kafka import json_consumer

    consumer = json_consumer(settings.kafka, settings.kafka.topic(topic), group_id=None, consumer_timeout_ms=timeout_ms)
    try:
        return [message.value for message in consumer]
    finally:
        consumer.close()


def delta_rows(settings: Settings, name: str) -> list[dict]:
    """A silver/bronze table read with delta-rs (an independent reader of Spark's writes)."""
    from deltalake import DeltaTable

    from lake.tables import table_path

    return DeltaTable(table_path(settings.lake, name)).to_pyarrow_table().to_pylist()


def lance_rows(settings: Settings) -> list[dict]:
    from lake.vectors import connect, open_chunks

    table = open_chunks(connect(settings.lancedb), settings.lancedb)
    return table.to_arrow().select(["chunk_id", "document_id", "version", "course_id"]).to_pylist()


def expected_chunk_ids(settings: Settings, data: bytes, *, document_id: str, version: int = 1) -> set[str]:
    """The chunk ids a document must end with, derived from its PDF independently of the job:
    the same extraction and chunking, run here on the same bytes with the same settings."""
    from processing.chunking import chunk_pages
    from processing.pdf import extract_pages, page_count

    extractor = settings.ingest.extractor
    pages = extract_pages(data, 0, page_count(data, extractor=extractor), extractor=extractor)
    chunks = chunk_pages(
        pages,
        document_id=document_id,
        version=version,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )
    return {c.chunk_id for c in chunks}


class RecordingSink:
    """A status sink that keeps every call, to check what was reported and in which order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, dict]] = []

    def started(self, doc, *, pages_total):
        self.calls.append(("started", doc.document_id, {"pages_total": pages_total}))

    def searchable(self, doc, *, chunks):
        self.calls.append(("searchable", doc.document_id, {"chunks": chunks}))

    def progress(self, doc, *, pages_done, pages_total, eta_s):
        self.calls.append(("progress", doc.document_id, {"pages_done": pages_done, "pages_total": pages_total}))

    def indexed(self, doc, *, pages, chunks, seconds):
        self.calls.append(("indexed", doc.document_id, {"pages": pages, "chunks": chunks}))

    def failed(self, doc, *, reason, raw=None):
        self.calls.append(("failed", doc.document_id if doc else None, {"reason": reason}))

    def flush(self):
        pass

    def close(self):
        pass

    def of(self, kind: str, document_id: str | None) -> list[dict]:
        return [values for k, d, values in self.calls if k == kind and d == document_id]


def refused_connection() -> ConnectionRefusedError:
    """A real ConnectionRefusedError: a connect to a local port that was bound, then closed."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError as exc:
        return exc
    raise AssertionError(f"port {port} accepted a connection")


class UnreachableFor:
    """An ObjectStore whose reads of ``key`` meet a refused connection ``failures`` times, then
    reach the real store: an object store that is down for a moment."""

    def __init__(self, store, *, key_suffix: str, failures: int) -> None:
        self.store, self.key_suffix, self.failures = store, key_suffix, failures
        self.reads: dict[str, int] = {}

    def get_bytes(self, key: str) -> bytes:
        self.reads[key] = self.reads.get(key, 0) + 1
        if key.endswith(self.key_suffix) and self.reads[key] <= self.failures:
            raise refused_connection()
        return self.store.get_bytes(key)

    def __getattr__(self, name: str):
        return getattr(self.store, name)
