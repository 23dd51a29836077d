"""Streaming ingestion: ``documents.uploaded`` -> bronze -> pypdf / chunks / embeddings -> silver
Delta tables + LanceDB ``chunks``, with live progress and dead letters.

Run continuously (processing-time trigger) or with ``--available-now`` (backfills, tests)::

    python -m spark_jobs.ingest_documents [--available-now] [--trigger-seconds 2]

Each micro-batch (``DocumentIngestor.process_batch``):

1. appends the raw events to ``bronze/document_events`` (idempotent: txnAppId/txnVersion);
2. validates each event against ``DocumentUploaded``; an invalid one is dead-lettered to
   ``documents.failed`` with its raw text, never a crash;
3. per valid document: reads the raw bytes, checks the SHA-256, counts pages on the driver;
4. one Spark job extracts text over (document, page range) rows in parallel tasks;
5. chunks each document on the driver (RecursiveCharacterTextSplitter, page spans);
6. one Spark job embeds chunk groups in the Python workers (model loaded once per worker),
   or the driver does it (``embedding.placement``), reporting pages done / total and an ETA;
7. writes silver pages / chunks (insert-only MERGE on stable ids), LanceDB ``merge_insert`` on
   chunk id, deletes chunks of replaced versions, then MERGEs ``silver/documents`` last;
8. reports every document's outcome through a ``DocumentStatusSink`` (Redis job status +
   ``documents.indexed`` / ``documents.failed`` by default).

Exactly once: the checkpoint lives under ``lake.checkpoint_root``; every write is keyed, so a
micro-batch replayed after a crash rewrites nothing. A document whose ``silver/documents`` row
is already final is not processed again (its outcome is re-reported, with the same event id).
A document's own problem (bad PDF, missing object, no text) fails that document only; an
infrastructure error fails the micro-batch, and the restarted stream replays it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from core.events import (
    TOPIC_DOCUMENTS_FAILED,
    TOPIC_DOCUMENTS_INDEXED,
    TOPIC_DOCUMENTS_UPLOADED,
    DocumentFailed,
    DocumentIndexed,
    DocumentUploaded,
)
from core.settings import PROJECT_ROOT, Settings
from lake import tables
from processing.chunking import Chunk, chunk_pages
from processing.pdf import Page, PdfRejected, extract_pages, page_count, require_text
from spark_jobs.status_postgres import PostgresStatusSink

if TYPE_CHECKING:
    import numpy as np
    from pyspark.accumulators import AccumulatorParam
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    _GroupIdsParam = AccumulatorParam[frozenset[int]]
else:
    # pyspark is imported only where Spark runs; at runtime an AccumulatorParam needs no base
    # class, only zero/addInPlace, so the checker alone sees _SetParam as one.
    _GroupIdsParam = object

log = logging.getLogger("spark_jobs.ingest_documents")
JOB_NAME = "ingest_documents"
_EVENT_NAMESPACE = uuid.UUID("0d6f3c52-96a8-4e5e-8a53-3f0f6a0c2b71")


# ---------------------------------------------------------------------------- status reporting


class DocumentStatusSink(Protocol):
    """Where a document's progress and outcome go. The default writes Redis job status and
    publishes Kafka events; the API's PostgreSQL ``documents`` update plugs in beside it."""

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None: ...

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None: ...

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None: ...

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None: ...

    def flush(self) -> None:
        """Called at the end of each micro-batch, before its offsets are committed."""


def outcome_event_id(kind: str, doc: DocumentUploaded | None, raw: str | None = None) -> str:
    """Deterministic id of an outcome event, so consumers drop the copy a replay re-publishes."""
    subject = (
        f"{doc.document_id}:{doc.version}:{doc.event_id}" if doc else hashlib.sha256((raw or "").encode()).hexdigest()
    )
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{kind}:{subject}"))


class RedisKafkaStatusSink:
    """Job status in Redis (``JobReporter``: hash + pub/sub to the uploader) and outcome events
    on ``documents.indexed`` / ``documents.failed``."""

    def __init__(self, settings: Settings, *, redis: Any = None, producer: Any = None) -> None:
        self.settings = settings
        self._redis = redis
        self._producer = producer

    @property
    def reporter(self):  # type: ignore[no-untyped-def]
        from core.redis import redis_client
        from core.jobs import JobReporter

        if self._redis is None:
            self._redis = redis_client(self.settings.redis)
        return JobReporter(self._redis)

    @property
    def producer(self):  # type: ignore[no-untyped-def]
        from streaming.kafka import json_producer

        if self._producer is None:
            self._producer = json_producer(self.settings.kafka, client_id="ingest-documents")
        return self._producer

    def _update(self, doc: DocumentUploaded, **changes: Any) -> None:
        from core.jobs import JobState

        reporter = self.reporter
        if reporter.update(doc.job_id, **changes) is None:
            # The job was created by the API; a backfill (or a test) may come without one.
            now = time.time()
            state = JobState(
                job_id=doc.job_id,
                kind="ingest_document",
                user_id=doc.uploaded_by,
                course_id=doc.course_id,
                document_id=doc.document_id,
                created_at=now,
                updated_at=now,
            )
            reporter.save(state.model_copy(update=changes))

    def started(self, doc: DocumentUploaded, *, pages_total: int) -> None:
        self._update(doc, status="running", pages_done=0, pages_total=pages_total, eta_s=None, error=None)

    def progress(self, doc: DocumentUploaded, *, pages_done: int, pages_total: int, eta_s: float | None) -> None:
        self._update(doc, status="running", pages_done=pages_done, pages_total=pages_total, eta_s=eta_s)

    def indexed(self, doc: DocumentUploaded, *, pages: int, chunks: int, seconds: float) -> None:
        self._update(doc, status="succeeded", pages_done=pages, pages_total=pages, eta_s=0.0, error=None)
        event = DocumentIndexed(
            event_id=outcome_event_id("indexed", doc),
            occurred_at=datetime.now(UTC),
            document_id=doc.document_id,
            course_id=doc.course_id,
            version=doc.version,
            job_id=doc.job_id,
            pages=pages,
            chunks=chunks,
            seconds=round(seconds, 3),
        )
        topic = self.settings.kafka.topic(TOPIC_DOCUMENTS_INDEXED)
        self.producer.send(topic, key=doc.document_id, value=event.model_dump(mode="json"))

    def failed(self, doc: DocumentUploaded | None, *, reason: str, raw: str | None = None) -> None:
        if doc is not None:
            self._update(doc, status="failed", eta_s=None, error=reason)
        event = DocumentFailed(
            event_id=outcome_event_id("failed", doc, raw),
            occurred_at=datetime.now(UTC),
            document_id=doc.document_id if doc else None,
            course_id=doc.course_id if doc else None,
            version=doc.version if doc else None,
            job_id=doc.job_id if doc else None,
            reason=reason,
            raw=raw,
        )
        topic = self.settings.kafka.topic(TOPIC_DOCUMENTS_FAILED)
        self.producer.send(topic, key=doc.document_id if doc else None, value=event.model_dump(mode="json"))

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=30)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


class FanOutSink:
    """Reports to several sinks in order (e.g. Redis/Kafka, then PostgreSQL)."""

    def __init__(self, *sinks: DocumentStatusSink) -> None:
        self.sinks = sinks

    def __getattr__(self, name: str) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            for sink in self.sinks:
                getattr(sink, name)(*args, **kwargs)

        return call


# ---------------------------------------------------------------------------- pure steps


@dataclass
class SourceEvent:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None


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


def read_object(uri: str, settings: Settings) -> bytes:
    """Raw bytes behind a ``file://`` or ``s3a://`` / ``s3://`` URI from the object store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path)).read_bytes()
    if parsed.scheme in {"s3a", "s3"}:
        from lake.store import S3ObjectStore

        store = S3ObjectStore(settings.object_store.model_copy(update={"bucket": parsed.netloc}))
        return store.get_bytes(parsed.path.lstrip("/"))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri).read_bytes()
    raise ValueError(f"unsupported object URI scheme: {uri}")


def page_ranges(pages_total: int, pages_per_task: int) -> list[tuple[int, int]]:
    return [(start, min(start + pages_per_task, pages_total)) for start in range(0, pages_total, pages_per_task)]


class _SetParam(_GroupIdsParam):
    """Accumulator of completed task ids (PySpark AccumulatorParam protocol)."""

    def zero(self, value: frozenset[int]) -> frozenset[int]:
        return frozenset()

    def addInPlace(self, a: frozenset[int], b: frozenset[int]) -> frozenset[int]:
        return frozenset(a) | frozenset(b)


@dataclass
class DocumentWork:
    source: SourceEvent
    event: DocumentUploaded
    started: float
    data: bytes = b""
    pages_total: int = 0
    pages: list[Page] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray | None = None
    error: str | None = None
    last_reported: float = 0.0
    pages_done: int = 0

    def embedded(self) -> np.ndarray:
        """The chunk vectors, which ``_embed`` sets on every live document before anything is written."""
        if self.vectors is None:
            raise RuntimeError(f"document {self.event.document_id} v{self.event.version} was not embedded")
        return self.vectors


@dataclass
class BatchStats:
    batch_id: int
    events: int = 0
    indexed: int = 0
    failed: int = 0
    skipped: int = 0
    pages: int = 0
    chunks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    indexed_documents: list[str] = field(default_factory=list)


class _Stopwatch:
    def __init__(self, stats: BatchStats) -> None:
        self.stats = stats

    def __call__(self, stage: str) -> _Lap:
        return _Lap(self.stats, stage)


class _Lap:
    def __init__(self, stats: BatchStats, stage: str) -> None:
        self.stats, self.stage = stats, stage

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.started
        self.stats.seconds[self.stage] = self.stats.seconds.get(self.stage, 0.0) + elapsed


# ---------------------------------------------------------------------------- the micro-batch


class DocumentIngestor:
    """The foreachBatch handler: one micro-batch of upload events in, silver + LanceDB out."""

    def __init__(self, spark: SparkSession, settings: Settings, sink: DocumentStatusSink, *, app_id: str) -> None:
        self.spark = spark
        self.settings = settings
        self.sink = sink
        self.app_id = app_id
        self.stats: list[BatchStats] = []
        self._lance_table = None

    # -- entry point --------------------------------------------------------------------------
    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        stats = BatchStats(batch_id)
        lap = _Stopwatch(stats)
        with lap("bronze"):
            # One read of the Kafka slice; the bronze append of these rows then runs beside the
            # processing (its own Spark job) and is joined before the batch may commit.
            rows = batch.select(
                F.col("topic"),
                F.col("partition").cast("int").alias("partition"),
                F.col("offset"),
                F.col("key").cast("string").alias("key"),
                F.col("value").cast("string").alias("value"),
                F.col("timestamp").alias("kafka_timestamp"),
                F.lit(batch_id).cast("bigint").alias("batch_id"),
            ).collect()
            bronze = self._background(self._append_bronze, rows, batch_id)
        sources = sorted(
            (SourceEvent(r["topic"], r["partition"], r["offset"], r["key"], r["value"]) for r in rows),
            key=lambda s: (s.partition, s.offset),
        )
        stats.events = len(sources)
        try:
            if sources:
                self._process_events(sources, stats, lap)
        finally:
            with lap("bronze_wait"):
                bronze.result()
        self.sink.flush()
        self.stats.append(stats)
        log.info("batch %s: %s", batch_id, stats)

    @staticmethod
    def _background(function: Callable[..., Any], *args: Any) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
        future = pool.submit(function, *args)
        pool.shutdown(wait=False)
        return future

    def _append_bronze(self, rows: list[Any], batch_id: int) -> None:
        from pyspark.sql.types import StructType

        schema = StructType.fromDDL(tables.BRONZE_DOCUMENT_EVENTS_SCHEMA)
        assert isinstance(schema, StructType)  # fromDDL is typed DataType; a column list parses to a struct
        frame = self.spark.createDataFrame([tuple(r) for r in rows], schema=schema)
        tables.append_bronze(frame, self.settings.lake, app_id=self.app_id, batch_id=batch_id)

    def _process_events(self, sources: list[SourceEvent], stats: BatchStats, lap: _Stopwatch) -> None:
        works: list[DocumentWork] = []
        seen: set[tuple[str, int]] = set()
        for source in sources:
            try:
                event = parse_uploaded(source.value)
            except ValueError as exc:
                self.sink.failed(None, reason=str(exc), raw=(source.value or "")[:10_000])
                stats.failed += 1
                continue
            if (event.document_id, event.version) in seen:
                stats.skipped += 1  # the same upload twice in one batch: one document
                continue
            seen.add((event.document_id, event.version))
            works.append(DocumentWork(source, event, started=time.perf_counter()))
        if not works:
            return
        with lap("lookup"):
            works = self._skip_finished(works, stats)
        with lap("read"):
            for work in works:
                self._open_document(work)
        live = [w for w in works if w.error is None]
        with lap("extract"):
            self._extract(live)
        with lap("chunk"):
            for work in live:
                self._chunk(work)
        live = [w for w in live if w.error is None]
        with lap("embed"):
            self._embed(live)
        with lap("write_silver_lancedb"):
            # Three independent keyed writes side by side: Delta MERGEs are mostly latency.
            lance = self._background(self._timed, stats, "write_lancedb", self._write_lancedb, live)
            self._write_silver_content(live, stats)
            lance.result()
        with lap("write_documents"):
            self._write_documents(works)
        with lap("report"):
            for work in works:
                if work.error is None:
                    seconds = time.perf_counter() - work.started
                    self.sink.indexed(work.event, pages=work.pages_total, chunks=len(work.chunks), seconds=seconds)
                    stats.indexed += 1
                    stats.indexed_documents.append(work.event.document_id)
                    stats.pages += work.pages_total
                    stats.chunks += len(work.chunks)
                else:
                    self.sink.failed(work.event, reason=work.error)
                    stats.failed += 1

    # -- steps --------------------------------------------------------------------------------
    def _skip_finished(self, works: list[DocumentWork], stats: BatchStats) -> list[DocumentWork]:
        """Documents whose silver row is final were fully written before: re-report, skip."""
        ids = sorted({w.event.document_id for w in works})
        rows = tables.read_final_documents(self.settings, ids)
        final = {(r["document_id"], r["version"]): r for r in rows}
        todo = []
        for work in works:
            row = final.get((work.event.document_id, work.event.version))
            if row is None:
                todo.append(work)
                continue
            stats.skipped += 1
            if row["status"] == "indexed":
                self.sink.indexed(work.event, pages=row["pages"] or 0, chunks=row["chunks"] or 0, seconds=0.0)
            else:
                self.sink.failed(work.event, reason=row["reason"] or "failed")
        return todo

    def _open_document(self, work: DocumentWork) -> None:
        event = work.event
        try:
            data = read_object(event.object_uri, self.settings)
        except (FileNotFoundError, OSError, ValueError) as exc:
            work.error = f"raw upload not readable at {event.object_uri}: {type(exc).__name__}: {exc}"[:500]
            return
        except Exception as exc:  # noqa: BLE001 - S3 client errors and the like stay this document's
            work.error = f"raw upload not readable at {event.object_uri}: {type(exc).__name__}: {exc}"[:500]
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest != event.sha256:
            work.error = f"content hash mismatch: the stored object has sha256 {digest}, the event says {event.sha256}"
            return
        try:
            work.pages_total = page_count(data)
        except PdfRejected as exc:
            work.error = exc.reason
            return
        work.data = data
        self.sink.started(event, pages_total=work.pages_total)

    def _extract(self, works: list[DocumentWork]) -> None:
        """One Spark job over (document, page range) rows: pypdf runs in parallel tasks."""
        if not works:
            return
        sc = self.spark.sparkContext
        # One range per task slot, no smaller than pages_per_task: every task re-opens the PDF, so
        # 20 ranges of 25 pages took ~2 s for 500 pages on 2 cores where 2 ranges took ~1 s.
        slots = max(1, sc.defaultParallelism)
        ranges = [
            (i, start, stop)
            for i, w in enumerate(works)
            for start, stop in page_ranges(
                w.pages_total, max(self.settings.ingest.pages_per_task, -(-w.pages_total // slots))
            )
        ]
        blobs = sc.broadcast({i: w.data for i, w in enumerate(works)})
        try:
            sc.setJobDescription(f"extract {len(works)} document(s), {len(ranges)} page ranges")
            results = sc.parallelize(ranges, len(ranges)).mapPartitions(_extract_partition(blobs)).collect()
        finally:
            blobs.unpersist()
        pages: dict[int, list[Page]] = {i: [] for i in range(len(works))}
        errors: dict[int, str] = {}
        for index, numbered_texts, error in results:
            if error:
                errors.setdefault(index, error)
            pages[index].extend(Page(number, text) for number, text in numbered_texts)
        for index, work in enumerate(works):
            work.data = b""  # the bytes have served; keep the driver lean
            if index in errors:
                work.error = errors[index]
                continue
            work.pages = sorted(pages[index], key=lambda p: p.number)
            try:
                require_text(work.pages)
            except PdfRejected as exc:
                work.error = exc.reason

    def _chunk(self, work: DocumentWork) -> None:
        ingest = self.settings.ingest
        work.chunks = chunk_pages(
            work.pages,
            document_id=work.event.document_id,
            version=work.event.version,
            chunk_size=ingest.chunk_size,
            chunk_overlap=ingest.chunk_overlap,
        )
        if not work.chunks:
            work.error = "no extractable text; scanned/image-only PDFs need OCR, which is not supported"

    def _embed(self, works: list[DocumentWork]) -> None:
        """Embeds every chunk, in Spark Python workers or on the driver, with live progress."""
        import numpy as np

        if not works:
            return
        per_task = self.settings.ingest.chunks_per_task
        groups: list[tuple[int, int, int]] = []  # (group id, work index, first chunk position)
        for index, work in enumerate(works):
            for begin in range(0, len(work.chunks), per_task):
                groups.append((len(groups), index, begin))
        tracker = _ProgressTracker(works, groups, per_task, self.sink)
        vectors = {i: np.zeros((len(w.chunks), 384), dtype=np.float32) for i, w in enumerate(works)}
        if self.settings.embedding.placement == "driver":
            from processing.embedding import get_embedder

            embedder = get_embedder(self.settings.embedding)
            for gid, index, begin in groups:
                texts = [c.text for c in works[index].chunks[begin : begin + per_task]]
                vectors[index][begin : begin + len(texts)] = embedder.encode(texts)
                tracker.done({gid})
                tracker.report()
        else:
            sc = self.spark.sparkContext
            completed = sc.accumulator(frozenset(), _SetParam())
            payload = [
                (gid, index, begin, [c.text for c in works[index].chunks[begin : begin + per_task]])
                for gid, index, begin in groups
            ]
            stop = threading.Event()
            poller = threading.Thread(target=tracker.poll, args=(lambda: completed.value, stop), daemon=True)
            poller.start()
            try:
                sc.setJobDescription(f"embed {sum(len(w.chunks) for w in works)} chunks in {len(groups)} tasks")
                embed = _embed_partition(self.settings.embedding, self.settings.embedding.executor_threads, completed)
                results = sc.parallelize(payload, len(payload)).mapPartitions(embed).collect()
            finally:
                stop.set()
                poller.join()
            for _, index, begin, blob in results:
                block = np.frombuffer(blob, dtype=np.float32).reshape(-1, 384)
                vectors[index][begin : begin + len(block)] = block
        for index, work in enumerate(works):
            work.vectors = vectors[index]

    @staticmethod
    def _timed(stats: BatchStats, stage: str, function: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            stats.seconds[stage] = stats.seconds.get(stage, 0.0) + time.perf_counter() - started

    def _write_silver_content(self, works: list[DocumentWork], stats: BatchStats) -> None:
        import pyarrow as pa

        from core.ids import page_id

        if not works:
            return
        pages = pa.Table.from_pylist(
            [
                {
                    "page_id": page_id(w.event.document_id, w.event.version, p.number),
                    "document_id": w.event.document_id,
                    "version": w.event.version,
                    "course_id": w.event.course_id,
                    "page_number": p.number,
                    "text": p.text,
                    "char_count": len(p.text),
                }
                for w in works
                for p in w.pages
            ],
            schema=_arrow_schema(tables.SILVER_PAGES_SCHEMA),
        )
        chunks = pa.Table.from_pylist(
            [
                {
                    "chunk_id": c.chunk_id,
                    "document_id": w.event.document_id,
                    "version": w.event.version,
                    "course_id": w.event.course_id,
                    "chunk_index": c.chunk_index,
                    "page_start": c.page_start,
                    "page_end": c.page_end,
                    "char_start": c.char_start,
                    "text": c.text,
                    "embedding": w.vectors[c.chunk_index] if w.vectors is not None else None,
                }
                for w in works
                for c in w.chunks
            ],
            schema=_arrow_schema(tables.SILVER_CHUNKS_SCHEMA),
        )
        lake = self.settings.lake
        # The MERGEs only look at these documents' files, not the whole table (insert_new).
        insert = functools.partial(tables.insert_new, document_ids=[w.event.document_id for w in works])
        pages_write = self._background(
            self._timed, stats, "write_pages", insert, self.spark, lake, tables.SILVER_PAGES,
            self.spark.createDataFrame(pages), "page_id",
        )  # fmt: skip
        self._timed(
            stats, "write_chunks", insert, self.spark, lake, tables.SILVER_CHUNKS,
            self.spark.createDataFrame(chunks), "chunk_id",
        )  # fmt: skip
        pages_write.result()

    def _chunks_table(self):  # type: ignore[no-untyped-def]
        from lake.vectors import connect, open_chunks

        if self._lance_table is None:
            self._lance_table = open_chunks(connect(self.settings.lancedb), self.settings.lancedb)
        return self._lance_table

    def _write_lancedb(self, works: list[DocumentWork]) -> None:
        from lake.vectors import chunk_rows, delete_other_versions, ensure_vector_index, upsert_chunks

        if not works:
            return
        table = self._chunks_table()
        rows = chunk_rows(
            {
                "chunk_id": c.chunk_id,
                "document_id": w.event.document_id,
                "version": w.event.version,
                "course_id": w.event.course_id,
                "chunk_index": c.chunk_index,
                "page_start": c.page_start,
                "page_end": c.page_end,
                "text": c.text,
                "vector": w.embedded()[c.chunk_index],
            }
            for w in works
            for c in w.chunks
        )
        upsert_chunks(table, rows)
        for work in works:
            if work.event.replaces_version is not None:
                delete_other_versions(table, work.event.document_id, work.event.version)
        ensure_vector_index(table, self.settings.lancedb)

    def _write_documents(self, works: list[DocumentWork]) -> None:
        import pyarrow as pa

        rows = []
        for w in works:
            e = w.event
            rows.append(
                {
                    "document_id": e.document_id,
                    "version": e.version,
                    "course_id": e.course_id,
                    "job_id": e.job_id,
                    "uploaded_by": e.uploaded_by,
                    "filename": e.filename,
                    "object_uri": e.object_uri,
                    "sha256": e.sha256,
                    "size_bytes": e.size_bytes,
                    "uploaded_at": e.occurred_at,
                    "replaces_version": e.replaces_version,
                    "status": "indexed" if w.error is None else "failed",
                    "reason": w.error,
                    "pages": w.pages_total or None,
                    "chunks": len(w.chunks) if w.error is None else None,
                    "is_current": w.error is None,
                    "source_topic": w.source.topic,
                    "source_partition": w.source.partition,
                    "source_offset": w.source.offset,
                }
            )
        if not rows:
            return
        frame = self.spark.createDataFrame(
            pa.Table.from_pylist(rows, schema=_arrow_schema(tables.SILVER_DOCUMENTS_SCHEMA))
        )
        tables.merge_documents(self.spark, self.settings.lake, frame)
        for w in works:
            if w.error is None and w.event.replaces_version is not None:
                tables.supersede_versions(self.spark, self.settings.lake, w.event.document_id, w.event.version)


class _ProgressTracker:
    """Pages done per document = pages none of whose chunks is still waiting for its vector."""

    def __init__(
        self, works: list[DocumentWork], groups: list[tuple[int, int, int]], per_task: int, sink: DocumentStatusSink
    ) -> None:
        self.works, self.sink = works, sink
        self.completed: frozenset = frozenset()
        self.group_pages: dict[int, tuple[int, set[int]]] = {}
        for gid, index, begin in groups:
            span: set[int] = set()
            for chunk in works[index].chunks[begin : begin + per_task]:
                span.update(range(chunk.page_start, chunk.page_end + 1))
            self.group_pages[gid] = (index, span)

    def done(self, gids: frozenset | set) -> None:
        self.completed = frozenset(self.completed | set(gids))

    def report(self, *, min_interval_s: float = 0.5) -> None:
        pending: dict[int, set[int]] = {i: set() for i in range(len(self.works))}
        for gid, (index, span) in self.group_pages.items():
            if gid not in self.completed:
                pending[index] |= span
        now = time.perf_counter()
        for index, work in enumerate(self.works):
            done = work.pages_total - len(pending[index])
            if done == work.pages_done or (now - work.last_reported < min_interval_s and done < work.pages_total):
                continue
            elapsed = now - work.started
            eta = (work.pages_total - done) * elapsed / done if done else None
            work.pages_done, work.last_reported = done, now
            try:
                self.sink.progress(work.event, pages_done=done, pages_total=work.pages_total, eta_s=eta)
            except Exception:
                log.warning("progress report failed for %s", work.event.document_id, exc_info=True)

    def poll(self, read: Callable[[], frozenset], stop: threading.Event) -> None:
        while not stop.wait(0.25):
            self.done(read())
            self.report()


def _extract_partition(blobs: Any) -> Callable:
    def run(rows: Any) -> Any:
        for index, start, stop in rows:
            try:
                pages = extract_pages(blobs.value[index], start, stop)
                yield index, [(p.number, p.text) for p in pages], None
            except PdfRejected as exc:
                yield index, [], exc.reason
            except Exception as exc:  # noqa: BLE001 - a damaged page range fails its document only
                yield index, [], f"corrupt PDF: pages {start + 1}-{stop} unreadable: {type(exc).__name__}: {exc}"[:300]

    return run


def _embed_partition(embedding_settings: Any, threads: int, completed: Any) -> Callable:
    def run(groups: Any) -> Any:
        from processing.embedding import get_embedder

        embedder = get_embedder(embedding_settings, threads=threads)  # once per Python worker
        for gid, index, begin, texts in groups:
            vectors = embedder.encode(texts)
            completed.add(frozenset([gid]))
            yield gid, index, begin, vectors.astype("float32").tobytes()

    return run


def _warm_up_partition(embedding_settings: Any, threads: int) -> Callable:
    def run(_: Any) -> Any:
        from processing.embedding import get_embedder

        get_embedder(embedding_settings, threads=threads).encode(["warm-up"])  # cached in this worker
        yield os.getpid()

    return run


def _arrow_schema(ddl: str):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    kinds = {
        "STRING": pa.string(),
        "INT": pa.int32(),
        "BIGINT": pa.int64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "ARRAY<FLOAT>": pa.list_(pa.float32()),
    }
    fields = []
    for column in ddl.split(", "):
        name, kind = column.split(" ", 1)
        fields.append(pa.field(name, kinds[kind]))
    return pa.schema(fields)


# ---------------------------------------------------------------------------- the stream


def checkpoint_location(settings: Settings) -> str:
    root = settings.lake.checkpoint_root.rstrip("/")
    return f"{root}/{JOB_NAME}" if "://" in root else str(Path(root).resolve() / JOB_NAME)


def stream_app_id(settings: Settings) -> str:
    """The bronze writer's txnAppId: stable for one checkpoint, different for another."""
    return f"{JOB_NAME}-{hashlib.sha1(checkpoint_location(settings).encode()).hexdigest()[:16]}"  # noqa: S324


def spark_session(settings: Settings) -> SparkSession:
    """The job's SparkSession; Python workers must import this project (``lake``, this module)."""
    from lake.spark import build_spark_session

    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
    spark = build_spark_session(settings, JOB_NAME)
    # Arrow for createDataFrame(pyarrow.Table) and friends.
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    return spark


def prepare(spark: SparkSession, settings: Settings) -> None:
    """Topics, tables and the embedding model exist before the first micro-batch."""
    from streaming.kafka import ensure_topics

    ensure_topics(
        settings.kafka,
        [settings.kafka.topic(t) for t in (TOPIC_DOCUMENTS_UPLOADED, TOPIC_DOCUMENTS_INDEXED, TOPIC_DOCUMENTS_FAILED)],
    )
    tables.ensure_tables(spark, settings.lake, change_data_feed=settings.ingest.change_data_feed)
    from processing.embedding import ensure_onnx_int8, resolve_precision

    precision = resolve_precision(settings.embedding.precision)
    if precision == "int8":
        ensure_onnx_int8(settings.embedding)  # export once here, not in two workers at once
    log.info("embedding: %s, %s precision, on the %s", settings.embedding.model_package, precision,
             settings.embedding.placement)  # fmt: skip
    warm_up_embedders(spark, settings)


def warm_up_embedders(spark: SparkSession, settings: Settings) -> None:
    """Loads the model where chunks will be embedded before the first upload arrives, so the
    first student's document does not wait for Python workers to start and load it."""
    started = time.perf_counter()
    if settings.embedding.placement == "driver":
        from processing.embedding import get_embedder

        get_embedder(settings.embedding).encode(["warm-up"])
    else:
        slots = spark.sparkContext.defaultParallelism
        spark.sparkContext.setJobDescription("load the embedding model in each Python worker")
        spark.sparkContext.parallelize(range(slots), slots).mapPartitions(
            _warm_up_partition(settings.embedding, settings.embedding.executor_threads)
        ).collect()
    log.info("embedding model loaded (%s) in %.1f s", settings.embedding.placement, time.perf_counter() - started)


def start_stream(
    spark: SparkSession,
    settings: Settings,
    sink: DocumentStatusSink,
    *,
    available_now: bool,
    trigger_seconds: float | None = None,
) -> tuple[StreamingQuery, DocumentIngestor]:
    """Starts the Kafka -> foreachBatch stream; returns the query and its batch handler."""
    ingestor = DocumentIngestor(spark, settings, sink, app_id=stream_app_id(settings))
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.servers)
        .option("subscribe", settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED))
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.ingest.max_offsets_per_trigger)
        .option("failOnDataLoss", "false")
        .load()
    )
    writer = (
        source.writeStream.queryName(JOB_NAME)
        .foreachBatch(ingestor.process_batch)
        .option("checkpointLocation", checkpoint_location(settings))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{trigger_seconds or settings.ingest.trigger_seconds} seconds")
    return writer.start(), ingestor


def run_available_now(
    settings: Settings, *, spark: SparkSession | None = None, sink: DocumentStatusSink | None = None
) -> list[BatchStats]:
    """Processes everything on the topic now, then returns the per-batch statistics."""
    spark = spark or spark_session(settings)
    own_sink = sink is None
    sink = sink or RedisKafkaStatusSink(settings)
    prepare(spark, settings)
    query, ingestor = start_stream(spark, settings, sink, available_now=True)
    try:
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"ingest stream failed: {query.exception()}")
    finally:
        if own_sink and isinstance(sink, RedisKafkaStatusSink):
            sink.close()
    return ingestor.stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest_documents", description=__doc__.splitlines()[0])
    parser.add_argument("--available-now", action="store_true", help="process what is on the topic, then stop")
    parser.add_argument("--trigger-seconds", type=float, default=None, help="processing-time trigger interval")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    settings = Settings()
    spark = spark_session(settings)
    # The durable document/job rows on the course's PostgreSQL shard first, then Redis job status
    # and Kafka outcome events: whoever is notified reads a document row that is already final.
    live, durable = RedisKafkaStatusSink(settings), PostgresStatusSink(settings)
    sink: DocumentStatusSink = FanOutSink(durable, live)
    try:
        if args.available_now:
            stats = run_available_now(settings, spark=spark, sink=sink)
            log.info("available-now run done: %d batch(es), %d indexed, %d failed",
                     len(stats), sum(s.indexed for s in stats), sum(s.failed for s in stats))  # fmt: skip
            return 0
        prepare(spark, settings)
        query, _ = start_stream(spark, settings, sink, available_now=False, trigger_seconds=args.trigger_seconds)
        log.info("%s: stream started, reading %s", JOB_NAME, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED))
        query.awaitTermination()
        return 0 if query.exception() is None else 1
    finally:
        live.close()
        durable.close()


if __name__ == "__main__":
    sys.exit(main())
