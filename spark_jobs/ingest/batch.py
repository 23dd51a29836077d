"""The foreachBatch handler: one micro-batch of upload events in, silver + LanceDB out.

Steps, in order (each takes and returns values, see ``documents``):

1. the Kafka rows are appended to ``bronze/document_events`` beside the processing;
2. events are parsed; invalid ones are dead-lettered with their raw text, never a crash;
3. documents whose ``silver/documents`` row is already final are re-reported and skipped;
4. each raw upload is read (transient store errors retried), hash-checked and its pages counted;
5. one Spark job extracts text over page ranges; chunks are cut on the driver; documents that
   fail here are recorded and reported at once;
6. text first: every chunk goes to LanceDB with a placeholder vector and is folded into the
   full-text index, so each document is searchable by keyword seconds after its upload;
7. commit units, smallest documents first (``plan_commit_units``): each unit is embedded (Spark
   tasks or the driver, with progress and an ETA), then its silver pages / chunks and LanceDB
   rows are written side by side, its ``silver/documents`` rows last, and its outcomes reported
   and flushed — so a small document is indexed without waiting for a big one in the batch;
8. the sink is flushed before the batch commits.

A document's own problem fails that document only; an infrastructure error (a Delta or
LanceDB write) fails the micro-batch, and the restarted stream replays it: units already
committed have final ``silver/documents`` rows and are skipped (step 3), the others are redone
on the same keys.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.faults import crash_point
from lake import tables
from spark_jobs.ingest import embed, extract, writes
from spark_jobs.ingest.documents import (
    DocumentOutcome,
    EmbeddedDocument,
    FailedDocument,
    OpenedDocument,
    ParsedDocument,
)
from spark_jobs.ingest.events import SourceEvent, Upload, sort_events
from spark_jobs.ingest.logs import log_stage
from spark_jobs.ingest.progress import ProgressUpdate
from spark_jobs.ingest.raw import RawUploadReader, RetryPolicy, open_document

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from core.settings import Settings
    from lake.store import ObjectStore
    from spark_jobs.ingest.metrics import StreamMetrics
    from spark_jobs.ingest.status_sinks import DocumentStatusSink

log = logging.getLogger("spark_jobs.ingest_documents")


@dataclass
class BatchStats:
    """What one micro-batch did, and the seconds each stage took."""

    batch_id: int
    events: int = 0
    indexed: int = 0
    failed: int = 0
    skipped: int = 0
    pages: int = 0
    chunks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    indexed_documents: list[str] = field(default_factory=list)
    failure_reasons: list[str] = field(default_factory=list)

    @contextmanager
    def lap(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def timed(self, stage: str, write: Callable[[], None]) -> Callable[[], None]:
        """``write``, timed as ``stage`` when it runs (on whichever thread)."""

        def run() -> None:
            with self.lap(stage):
                write()

        return run


def plan_commit_units(chunk_counts: Sequence[int], budget: int) -> list[list[int]]:
    """Document indexes grouped into commit units, smallest first. A unit holds at most
    ``budget`` chunks unless one document alone has more (it then has a unit to itself), so
    small documents share one commit and a big one is committed after them. Ties keep the
    arrival order."""
    order = sorted(range(len(chunk_counts)), key=lambda i: (chunk_counts[i], i))
    units: list[list[int]] = []
    current: list[int] = []
    held = 0
    for index in order:
        if current and held + chunk_counts[index] > budget:
            units.append(current)
            current, held = [], 0
        current.append(index)
        held += chunk_counts[index]
    if current:
        units.append(current)
    return units


def is_final(row: dict[str, Any], upload: Upload) -> bool:
    """A final ``silver/documents`` row ends the upload's processing, unless the upload is a
    retry (``attempt`` > 1) of a version that failed: that one is processed again."""
    attempt = getattr(upload.event, "attempt", 1)
    return row["status"] == "indexed" or attempt <= 1


class DocumentIngestor:
    """The foreachBatch handler: one micro-batch of upload events in, silver + LanceDB out."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        sink: DocumentStatusSink,
        *,
        app_id: str,
        raw_store: ObjectStore | None = None,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.spark = spark
        self.metrics = metrics
        self.settings = settings
        self.sink = sink
        self.app_id = app_id
        self.reader = RawUploadReader(
            settings.object_store, RetryPolicy.from_settings(settings.ingest), store=raw_store
        )
        self.lance = writes.LanceChunks(settings)
        self.stats: list[BatchStats] = []

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        stats = BatchStats(batch_id)
        batch_started = time.perf_counter()
        with stats.lap("bronze"):
            # One read of the Kafka slice; the bronze append of these rows then runs beside the
            # processing (its own Spark job) and is joined before the batch may commit.
            # The traceparent header (includeHeaders=true) rides after the bronze columns.
            traceparent = (
                F.expr("try_element_at(filter(headers, h -> h.key = 'traceparent'), 1).value").cast("string")
                if "headers" in batch.columns
                else F.lit(None).cast("string")
            )
            collected = batch.select(
                F.col("topic"),
                F.col("partition").cast("int").alias("partition"),
                F.col("offset"),
                F.col("key").cast("string").alias("key"),
                F.col("value").cast("string").alias("value"),
                F.col("timestamp").alias("kafka_timestamp"),
                F.lit(batch_id).cast("bigint").alias("batch_id"),
                traceparent.alias("traceparent"),
            ).collect()
            rows = [tuple(r)[:-1] for r in collected]

            def append_bronze() -> None:
                writes.append_bronze(self.spark, self.settings, rows, app_id=self.app_id, batch_id=batch_id)
                crash_point("after_bronze", batch_id)  # test-only (core/faults.py)

            bronze = writes.in_background(append_bronze)
        sources = [
            SourceEvent(r["topic"], r["partition"], r["offset"], r["key"], r["value"], r["traceparent"])
            for r in collected
        ]
        stats.events = len(sources)
        try:
            if sources:
                self._process(sources, stats)
        finally:
            with stats.lap("bronze_wait"):
                bronze.result()
        self.sink.flush()
        self.stats.append(stats)
        if self.metrics is not None:
            self.metrics.observe_batch(stats, seconds=time.perf_counter() - batch_started)
        log.info("batch %s: %s", batch_id, stats, extra={"batch_id": batch_id, "stage": "batch"})
        crash_point("before_commit", batch_id)

    def _process(self, sources: list[SourceEvent], stats: BatchStats) -> None:
        events = sort_events(sources, started=time.perf_counter())
        stats.skipped += events.duplicates
        for dead in events.dead_letters:
            self.sink.failed(None, reason=dead.reason, raw=dead.raw)
            stats.failed += 1
            stats.failure_reasons.append(dead.reason)
        for upload in events.uploads:
            log_stage(log, upload, "received", batch_id=stats.batch_id)
        if not events.uploads:
            return
        with stats.lap("lookup"):
            uploads = self._skip_finished(events.uploads, stats)
        with stats.lap("read"):
            extractor = self.settings.ingest.extractor
            limits = extract.extraction_limits(self.settings.ingest)
            opened = [open_document(upload, self.reader, extractor=extractor, limits=limits) for upload in uploads]
            for document in opened:
                if isinstance(document, OpenedDocument):
                    self.sink.started(document.upload.event, pages_total=document.pages_total)
                    log_stage(log, document.upload, "started", batch_id=stats.batch_id, pages=document.pages_total)
        readable = [d for d in opened if isinstance(d, OpenedDocument)]
        with stats.lap("extract"):
            extracted = extract.extract(
                self.spark,
                readable,
                pages_per_task=self.settings.ingest.pages_per_task,
                extractor=extractor,
                limits=limits,
            )
        with stats.lap("chunk"):
            chunking = self.lance.live_chunking()  # as the live index version was cut (a reprocess may change it)
            parsed = [d if isinstance(d, FailedDocument) else extract.chunk(d, chunking) for d in extracted]
        chunked = [d for d in parsed if isinstance(d, ParsedDocument)]
        failed: list[DocumentOutcome] = [d for d in (*opened, *parsed) if isinstance(d, FailedDocument)]
        if chunked:
            # The good documents are searchable by text first: a batch's failures (a Delta write of
            # seconds) must not delay the documents that were fine.
            with stats.lap("write_text_first"):
                self.lance.write_text_first(chunked)
            for ready in chunked:
                self.sink.searchable(ready.upload.event, chunks=len(ready.chunks))
                log_stage(log, ready.upload, "searchable", batch_id=stats.batch_id, chunks=len(ready.chunks))
        if failed:
            with stats.lap("write_documents"):
                writes.write_documents(self.spark, self.settings, failed)
            with stats.lap("report"):
                self._report(failed, stats)
        if not chunked:
            return
        units = plan_commit_units([len(d.chunks) for d in chunked], self.settings.ingest.commit_chunks)
        for unit in units:
            self._commit_unit([chunked[i] for i in unit], stats)

    def _commit_unit(self, documents: Sequence[ParsedDocument], stats: BatchStats) -> None:
        """Embeds, writes and reports one commit unit: its documents are final when it returns."""
        with stats.lap("embed"):
            embedded = embed.embed(self.spark, self.settings, documents, report=self._progress_reporter(documents))
        with stats.lap("write_silver_lancedb"):
            self._write_content(embedded, stats)
        outcomes: list[DocumentOutcome] = list(embedded)
        with stats.lap("write_documents"):
            writes.write_documents(self.spark, self.settings, outcomes)
        with stats.lap("report"):
            self._report(outcomes, stats)
            self.sink.flush()

    def _skip_finished(self, uploads: Sequence[Upload], stats: BatchStats) -> list[Upload]:
        """Documents whose silver row is final were fully written before: re-report, skip."""
        rows = tables.read_final_documents(self.settings, sorted({u.event.document_id for u in uploads}))
        final = {(r["document_id"], r["version"]): r for r in rows}
        todo = []
        for upload in uploads:
            row = final.get((upload.event.document_id, upload.event.version))
            if row is None or not is_final(row, upload):
                todo.append(upload)
                continue
            stats.skipped += 1
            if row["status"] == "indexed":
                self.sink.indexed(upload.event, pages=row["pages"] or 0, chunks=row["chunks"] or 0, seconds=0.0)
            else:
                self.sink.failed(upload.event, reason=row["reason"] or "failed")
        return todo

    def _progress_reporter(self, documents: Sequence[Any]) -> embed.ReportProgress:
        def report(update: ProgressUpdate) -> None:
            event = documents[update.index].upload.event
            try:
                self.sink.progress(
                    event, pages_done=update.pages_done, pages_total=update.pages_total, eta_s=update.eta_s
                )
            except Exception:
                log.warning("progress report failed for %s", event.document_id, exc_info=True)

        return report

    def _write_content(self, documents: Sequence[EmbeddedDocument], stats: BatchStats) -> None:
        """Three independent keyed writes side by side: Delta MERGEs are mostly latency."""
        if not documents:
            return
        chunks = writes.chunk_rows(documents)
        pages = writes.page_rows(documents)
        document_ids = [d.upload.event.document_id for d in documents]

        insert = functools.partial(writes.insert_silver, self.spark, self.settings, document_ids=document_ids)
        lance = writes.in_background(
            stats.timed("write_lancedb", functools.partial(self.lance.write, documents, chunks))
        )
        pages_write = writes.in_background(
            stats.timed("write_pages", functools.partial(insert, name=tables.SILVER_PAGES, rows=pages, key="page_id"))
        )
        stats.timed("write_chunks", functools.partial(insert, name=tables.SILVER_CHUNKS, rows=chunks, key="chunk_id"))()
        pages_write.result()
        crash_point("after_silver", stats.batch_id)
        lance.result()
        crash_point("after_lancedb", stats.batch_id)

    def _report(self, outcomes: Sequence[DocumentOutcome], stats: BatchStats) -> None:
        for outcome in outcomes:
            event = outcome.upload.event
            if isinstance(outcome, FailedDocument):
                self.sink.failed(event, reason=outcome.reason)
                stats.failed += 1
                stats.failure_reasons.append(outcome.reason)
                log_stage(log, outcome.upload, "failed", batch_id=stats.batch_id, reason=outcome.reason)
                continue
            parsed = outcome.parsed
            seconds = time.perf_counter() - outcome.upload.started
            self.sink.indexed(event, pages=parsed.pages_total, chunks=len(parsed.chunks), seconds=seconds)
            stats.indexed += 1
            stats.indexed_documents.append(event.document_id)
            stats.pages += parsed.pages_total
            stats.chunks += len(parsed.chunks)
            log_stage(
                log,
                outcome.upload,
                "indexed",
                batch_id=stats.batch_id,
                pages=parsed.pages_total,
                chunks=len(parsed.chunks),
                seconds=round(seconds, 3),
            )
