"""The keyed writes of a micro-batch: bronze events, silver pages / chunks / documents, LanceDB.

Every write is replay-safe: bronze by Delta's idempotent append (txnAppId/txnVersion), silver
pages and chunks by insert-only MERGEs on stable ids, documents by MERGE on (id, version), and
LanceDB by ``merge_insert`` on chunk id. The chunk rows are built once (``lake.tables.chunk_row``)
and LanceDB's rows derived from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from lake import tables
from spark_jobs.ingest.documents import DocumentOutcome, EmbeddedDocument, FailedDocument, ParsedDocument

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from core.settings import IngestSettings, Settings

T = TypeVar("T")


def in_background(function: Callable[[], T]) -> Future[T]:
    """Runs ``function`` on its own thread; the caller joins it with ``result()``."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
    future = pool.submit(function)
    pool.shutdown(wait=False)
    return future


def append_bronze(spark: SparkSession, settings: Settings, rows: Sequence[Any], *, app_id: str, batch_id: int) -> None:
    """The micro-batch's raw Kafka rows, once (Delta skips a txnVersion it has seen)."""
    frame = spark.createDataFrame([tuple(r) for r in rows], schema=tables.spark_schema(tables.BRONZE_DOCUMENT_EVENTS))
    tables.append_bronze(frame, settings.lake, app_id=app_id, batch_id=batch_id)


def page_rows(documents: Sequence[EmbeddedDocument]) -> pa.Table:
    return tables.arrow_rows(
        tables.SILVER_PAGES, (tables.page_row(d.upload.event, p) for d in documents for p in d.parsed.pages)
    )


def chunk_rows(documents: Sequence[EmbeddedDocument]) -> pa.Table:
    """``silver/chunks`` rows of the documents: the one place a chunk row is built."""
    return tables.arrow_rows(
        tables.SILVER_CHUNKS,
        (tables.chunk_row(d.upload.event, c, d.vectors[c.chunk_index]) for d in documents for c in d.parsed.chunks),
    )


def text_first_rows(documents: Sequence[ParsedDocument]) -> pa.Table:
    """``silver/chunks``-shaped rows of chunks not embedded yet (a placeholder vector), for the
    text-first LanceDB write only: silver itself is written once, with the embeddings."""
    from lake.vectors import placeholder_vector

    placeholder = placeholder_vector()
    return tables.arrow_rows(
        tables.SILVER_CHUNKS, (tables.chunk_row(d.upload.event, c, placeholder) for d in documents for c in d.chunks)
    )


def insert_silver(
    spark: SparkSession, settings: Settings, *, name: str, rows: pa.Table, key: str, document_ids: list[str]
) -> None:
    """Insert-only MERGE of ``rows`` into a silver table; only these documents' files are read."""
    tables.insert_new(
        spark, settings.lake, name=name, frame=spark.createDataFrame(rows), key=key, document_ids=document_ids
    )


class LanceChunks:
    """The LanceDB chunks table of the live index version (``lake.index_versions``), opened once
    per job and again when a reprocess switched the live version.

    Every write is fenced against a reprocess's switch: the live version is read from the
    registry before the write (waiting while a switched-out version is ``retiring``: its
    handover, ``lake.reprocess_handover``, is the only writer of the new table then) and again
    after it; a write that went into a table switched out meanwhile is redone, keyed, in the new
    live one. The handover copies what was written before the switch, this what came after."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Any = None
        self._table: Any = None
        self._name: str | None = None
        self._stuck: set[int] = set()  # retiring versions waited for in vain: not waited for again

    def table(self) -> Any:
        from lake.index_versions import settled_live
        from lake.vectors import connect, ensure_fts_index, open_chunks

        if self._db is None:
            self._db = connect(self.settings.lancedb)
        live, stuck = settled_live(self._db, self.settings.lancedb, ignore=self._stuck)
        self._stuck.update(stuck)
        if self._table is None or live.table_name != self._name:
            self._table = open_chunks(self._db, self.settings.lancedb, name=live.table_name)
            self._name = live.table_name
            ensure_fts_index(self._table)  # a table from an older version gets token positions
        return self._table

    def fenced(self, write: Callable[[Any], None]) -> None:
        """``write`` (keyed, replay-safe) on the live table, and again on the new live table
        while a reprocess switched it during the write."""
        table = self.table()
        while True:
            name = self._name
            write(table)
            table = self.table()
            if self._name == name:
                return

    def live_chunking(self) -> IngestSettings:
        """``ingest`` with the live index version's chunk size and overlap (``lake.index_versions``):
        a new upload is cut as the index it joins was, also after a reprocess changed them."""
        from lake.index_versions import live_version
        from lake.vectors import connect

        if self._db is None:
            self._db = connect(self.settings.lancedb)
        live = live_version(self._db, self.settings)
        return self.settings.ingest.model_copy(
            update={"chunk_size": live.chunk_size, "chunk_overlap": live.chunk_overlap}
        )

    def write_text_first(self, documents: Sequence[ParsedDocument]) -> None:
        """The chunks' text before their embeddings (``embedded`` false), folded into the
        full-text index at once: the documents are searchable by keyword within seconds. The
        embedded write later overwrites the same rows (same chunk ids)."""
        from lake.vectors import ensure_course_index, from_silver_chunks, refresh_indexes, upsert_chunks

        if not documents:
            return
        rows = from_silver_chunks(text_first_rows(documents), embedded=False)

        def write(table: Any) -> None:
            upsert_chunks(table, rows)
            ensure_course_index(table)
            refresh_indexes(table, self.settings.lancedb)

        self.fenced(write)

    def write(self, documents: Sequence[EmbeddedDocument], chunks: pa.Table) -> None:
        """Upserts the chunks on chunk id, drops the chunks of versions these replace, and keeps
        both indexes covering every row."""
        from lake.vectors import (
            delete_other_versions,
            ensure_course_index,
            ensure_vector_index,
            from_silver_chunks,
            refresh_indexes,
            upsert_chunks,
        )

        if not documents:
            return
        rows = from_silver_chunks(chunks)

        def write(table: Any) -> None:
            upsert_chunks(table, rows)
            for document in documents:
                event = document.upload.event
                if event.replaces_version is not None:
                    delete_other_versions(table, event.document_id, event.version)
            ensure_vector_index(table, self.settings.lancedb)
            ensure_course_index(table)
            refresh_indexes(table, self.settings.lancedb)

        self.fenced(write)


def document_rows(outcomes: Sequence[DocumentOutcome]) -> pa.Table:
    rows = []
    for outcome in outcomes:
        upload = outcome.upload
        if isinstance(outcome, FailedDocument):
            row = tables.document_row(
                upload.event,
                status="failed",
                reason=outcome.reason,
                pages=outcome.pages_total or None,
                chunks=None,
                source=upload.source.position,
            )
        else:
            row = tables.document_row(
                upload.event,
                status="indexed",
                reason=None,
                pages=outcome.parsed.pages_total,
                chunks=len(outcome.parsed.chunks),
                source=upload.source.position,
            )
        rows.append(row)
    return tables.arrow_rows(tables.SILVER_DOCUMENTS, rows)


def write_documents(spark: SparkSession, settings: Settings, outcomes: Sequence[DocumentOutcome]) -> None:
    """MERGEs the documents' final rows (last: a final row means everything else is written),
    then marks the versions an indexed one replaces as no longer current."""
    if not outcomes:
        return
    tables.merge_documents(spark, settings.lake, spark.createDataFrame(document_rows(outcomes)))
    for outcome in outcomes:
        event = outcome.upload.event
        if isinstance(outcome, EmbeddedDocument) and event.replaces_version is not None:
            tables.supersede_versions(spark, settings.lake, event.document_id, event.version)
