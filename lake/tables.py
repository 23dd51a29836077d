"""Delta tables of the ingestion pipeline: paths, one Arrow schema per table, row builders and
keyed writes.

Each table's schema is defined once, below, as a pyarrow schema; the Spark schema that creates
and writes the Delta table is derived from it (``spark_schema``), and LanceDB's ``chunks`` table
derives its schema from ``SILVER_CHUNKS_SCHEMA`` (``lake.vectors.chunks_schema``). Every column
is nullable, as Delta created them.

Spark (delta-spark) is the one writing engine of these tables. Every write is keyed:

- ``bronze/document_events``: appended with Delta's idempotent-write options
  (``txnAppId`` = the stream, ``txnVersion`` = the micro-batch id), so a replayed micro-batch
  is skipped by Delta itself; rows also carry their Kafka (topic, partition, offset).
- ``silver/pages`` and ``silver/chunks``: rows are immutable for a (document, version), so
  an insert-only MERGE on the stable id (uuid5 of document, version, index) leaves a replay
  with nothing to do.
- ``silver/documents``: one row per (document_id, version), MERGEd: updated only when its
  status or currency changed.

Delta commits optimistically: a write that loses a race with another commit on the same files
(maintenance's OPTIMIZE, a second job) fails with a ``Concurrent…Exception``. Because every
write above is keyed, ``retry_on_conflict`` simply runs it again instead of failing the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pyarrow as pa

from core.settings import LakeSettings, Settings

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from core.events import DocumentUploaded
    from processing.chunking import Chunk
    from processing.pdf import Page

T = TypeVar("T")
log = logging.getLogger(__name__)

BRONZE_DOCUMENT_EVENTS = "bronze/document_events"
SILVER_DOCUMENTS = "silver/documents"
SILVER_PAGES = "silver/pages"
SILVER_CHUNKS = "silver/chunks"

_TIMESTAMP = pa.timestamp("us", tz="UTC")

BRONZE_DOCUMENT_EVENTS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.string()),
        ("value", pa.string()),
        ("kafka_timestamp", _TIMESTAMP),
        ("batch_id", pa.int64()),
    ]
)
SILVER_DOCUMENTS_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("version", pa.int32()),
        ("course_id", pa.string()),
        ("job_id", pa.string()),
        ("uploaded_by", pa.string()),
        ("filename", pa.string()),
        ("object_uri", pa.string()),
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("uploaded_at", _TIMESTAMP),
        ("replaces_version", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("pages", pa.int32()),
        ("chunks", pa.int32()),
        ("is_current", pa.bool_()),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)
SILVER_PAGES_SCHEMA = pa.schema(
    [
        ("page_id", pa.string()),
        ("document_id", pa.string()),
        ("version", pa.int32()),
        ("course_id", pa.string()),
        ("page_number", pa.int32()),
        ("text", pa.string()),
        ("char_count", pa.int32()),
    ]
)
SILVER_CHUNKS_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("document_id", pa.string()),
        ("version", pa.int32()),
        ("course_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("page_start", pa.int32()),
        ("page_end", pa.int32()),
        ("char_start", pa.int32()),
        ("text", pa.string()),
        ("embedding", pa.list_(pa.float32())),
    ]
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    BRONZE_DOCUMENT_EVENTS: BRONZE_DOCUMENT_EVENTS_SCHEMA,
    SILVER_DOCUMENTS: SILVER_DOCUMENTS_SCHEMA,
    SILVER_PAGES: SILVER_PAGES_SCHEMA,
    SILVER_CHUNKS: SILVER_CHUNKS_SCHEMA,
}
SILVER_TABLES = (SILVER_DOCUMENTS, SILVER_PAGES, SILVER_CHUNKS)
DocumentStatus = Literal["indexed", "failed"]


def spark_schema(name: str) -> StructType:
    """The Spark schema of a lake table, derived from its Arrow schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    # Timestamps carry a time zone, so they map to TIMESTAMP (not TIMESTAMP_NTZ) either way.
    return from_arrow_schema(TABLE_SCHEMAS[name])


def arrow_rows(name: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts from the builders below) as an Arrow table of the lake table's schema."""
    return pa.Table.from_pylist(list(rows), schema=TABLE_SCHEMAS[name])


# ---------------------------------------------------------------------------- row builders


def page_row(event: DocumentUploaded, page: Page) -> dict[str, Any]:
    """A ``silver/pages`` row."""
    from core.ids import page_id

    return {
        "page_id": page_id(event.document_id, event.version, page.number),
        "document_id": event.document_id,
        "version": event.version,
        "course_id": event.course_id,
        "page_number": page.number,
        "text": page.text,
        "char_count": len(page.text),
    }


def chunk_row(event: DocumentUploaded, chunk: Chunk, embedding: np.ndarray | Sequence[float]) -> dict[str, Any]:
    """A ``silver/chunks`` row; LanceDB's row is derived from it (``lake.vectors.from_silver_chunks``)."""
    return {
        "chunk_id": chunk.chunk_id,
        "document_id": event.document_id,
        "version": event.version,
        "course_id": event.course_id,
        "chunk_index": chunk.chunk_index,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "char_start": chunk.char_start,
        "text": chunk.text,
        "embedding": embedding,
    }


def document_row(
    event: DocumentUploaded,
    *,
    status: DocumentStatus,
    reason: str | None,
    pages: int | None,
    chunks: int | None,
    source: tuple[str, int, int],
) -> dict[str, Any]:
    """A ``silver/documents`` row; ``source`` is the event's Kafka (topic, partition, offset)."""
    topic, partition, offset = source
    return {
        "document_id": event.document_id,
        "version": event.version,
        "course_id": event.course_id,
        "job_id": event.job_id,
        "uploaded_by": event.uploaded_by,
        "filename": event.filename,
        "object_uri": event.object_uri,
        "sha256": event.sha256,
        "size_bytes": event.size_bytes,
        "uploaded_at": event.occurred_at,
        "replaces_version": event.replaces_version,
        "status": status,
        "reason": reason,
        "pages": pages,
        "chunks": chunks,
        "is_current": status == "indexed",
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
    }


# ---------------------------------------------------------------------------- tables and writes


def table_path(settings: LakeSettings, name: str) -> str:
    """Absolute location of a table: ``s3a://…/name`` or a local absolute path."""
    root = settings.root.rstrip("/")
    if "://" in root:
        return f"{root}/{name}"
    return str(Path(root).resolve() / name)


def ensure_tables(spark: SparkSession, settings: LakeSettings, *, change_data_feed: bool = True) -> None:
    """Creates the bronze and silver tables that do not exist yet (idempotent)."""
    from delta.tables import DeltaTable

    for name in TABLE_SCHEMAS:
        builder = DeltaTable.createIfNotExists(spark).location(table_path(settings, name))
        builder = builder.addColumns(spark_schema(name))
        if change_data_feed and name in SILVER_TABLES:
            builder = builder.property("delta.enableChangeDataFeed", "true")
        builder.execute()


def append_bronze(frame: DataFrame, settings: LakeSettings, *, app_id: str, batch_id: int) -> None:
    """Appends a micro-batch of raw events once: Delta skips a (txnAppId, txnVersion) it has seen."""
    (
        frame.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(table_path(settings, BRONZE_DOCUMENT_EVENTS))
    )


def _conflict_types() -> tuple[type[BaseException], ...]:
    # delta-spark's Python conflict exceptions share no base class of their own.
    from delta import exceptions

    return tuple(
        getattr(exceptions, name)
        for name in (
            "DeltaConcurrentModificationException", "ConcurrentWriteException", "MetadataChangedException",
            "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
            "ConcurrentTransactionException",
        )
    )  # fmt: skip


def retry_on_conflict(write: Callable[[], T], *, what: str, attempts: int = 5, backoff_s: float = 0.2) -> T:
    """Runs a keyed (idempotent) Delta write, again after a commit conflict, up to ``attempts``."""
    conflicts = _conflict_types()
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except conflicts as exc:
            if attempt == attempts:
                raise
            log.warning("%s: Delta commit conflict (%s), retry %d of %d", what, type(exc).__name__, attempt,
                        attempts - 1)  # fmt: skip
            time.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")


def insert_new(
    spark: SparkSession,
    settings: LakeSettings,
    name: str,
    frame: DataFrame,
    key: str,
    *,
    document_ids: list[str] | None = None,
) -> None:
    """Insert-only MERGE on ``key``: rows already present are left as they are.

    ``document_ids`` (the documents the frame's rows belong to) bounds the target side of the
    match: Delta skips every file whose ``document_id`` min/max stats exclude them, so a batch's
    MERGE reads the files of its own documents instead of the whole, ever-growing table.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = table_path(settings, name)
    condition = F.col(f"t.{key}") == F.col(f"s.{key}")
    if document_ids:
        condition = condition & F.col("t.document_id").isin(sorted(set(document_ids)))
    retry_on_conflict(  # each attempt opens the table anew: it must see the winning commit
        lambda: (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(frame.alias("s"), condition)
            .whenNotMatchedInsertAll()
            .execute()
        ),
        what=f"insert into {name}",
    )


def merge_documents(spark: SparkSession, settings: LakeSettings, frame: DataFrame) -> None:
    """Upserts document rows on (document_id, version); unchanged rows are not rewritten."""
    from delta.tables import DeltaTable

    path = table_path(settings, SILVER_DOCUMENTS)
    changed = (
        "NOT (t.status <=> s.status) OR NOT (t.is_current <=> s.is_current) OR NOT (t.reason <=> s.reason) "
        "OR NOT (t.chunks <=> s.chunks)"
    )
    retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(frame.alias("s"), "t.document_id = s.document_id AND t.version = s.version")
            .whenMatchedUpdateAll(condition=changed)
            .whenNotMatchedInsertAll()
            .execute()
        ),
        what=f"merge into {SILVER_DOCUMENTS}",
    )


def set_document_chunks(spark: SparkSession, settings: LakeSettings, counts: dict[tuple[str, int], int]) -> None:
    """Sets the ``chunks`` of these (document_id, version) rows and nothing else (a reprocess's
    new counts: a row the stream changed since it was read, e.g. superseded, keeps that)."""
    from delta.tables import DeltaTable

    if not counts:
        return
    frame = spark.createDataFrame(
        [(d, int(v), int(n)) for (d, v), n in sorted(counts.items())], "document_id string, version int, chunks int"
    )
    retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, table_path(settings, SILVER_DOCUMENTS))
            .alias("t")
            .merge(frame.alias("s"), "t.document_id = s.document_id AND t.version = s.version")
            .whenMatchedUpdate(condition="NOT (t.chunks <=> s.chunks)", set={"chunks": "s.chunks"})
            .execute()
        ),
        what=f"set chunk counts in {SILVER_DOCUMENTS}",
    )


def supersede_versions(spark: SparkSession, settings: LakeSettings, document_id: str, current_version: int) -> None:
    """Marks every other version of a document as no longer current."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    path = table_path(settings, SILVER_DOCUMENTS)
    retry_on_conflict(
        lambda: DeltaTable.forPath(spark, path).update(
            condition=(F.col("document_id") == document_id)
            & (F.col("version") != current_version)
            & F.col("is_current"),
            set={"is_current": F.lit(False)},
        ),
        what=f"supersede versions in {SILVER_DOCUMENTS}",
    )


def delta_location(settings: Settings, name: str) -> tuple[str, dict[str, str] | None]:
    """Where delta-rs finds table ``name``, and the storage options it needs (S3 mode)."""
    path = table_path(settings.lake, name)
    if not path.startswith("s3a://"):
        return path, None
    store = settings.object_store
    return "s3://" + path.removeprefix("s3a://"), {
        "AWS_ENDPOINT_URL": store.endpoint,
        "AWS_ACCESS_KEY_ID": store.access_key,
        "AWS_SECRET_ACCESS_KEY": store.secret_key.get_secret_value(),
        "AWS_REGION": store.region,
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def read_final_documents(settings: Settings, document_ids: list[str]) -> list[dict]:
    """Rows of ``silver/documents`` in a final state (indexed / failed) for these documents.

    Read with delta-rs: a point lookup per micro-batch without a Spark job."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    if not document_ids:
        return []
    path, options = delta_location(settings, SILVER_DOCUMENTS)
    dataset = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    columns = ["document_id", "version", "status", "reason", "pages", "chunks"]
    wanted = pc.field("document_id").isin(document_ids) & pc.field("status").isin(["indexed", "failed"])
    return dataset.to_table(columns=columns, filter=wanted).to_pylist()


# ---------------------------------------------------------------------------- reprocessing


def ensure_chunks_table(spark: SparkSession, settings: LakeSettings, name: str) -> None:
    """A Delta table shaped like ``silver/chunks`` (a reprocess's staging table), if missing."""
    from delta.tables import DeltaTable
    from pyspark.sql.pandas.types import from_arrow_schema

    DeltaTable.createIfNotExists(spark).location(table_path(settings, name)).addColumns(
        from_arrow_schema(SILVER_CHUNKS_SCHEMA)
    ).execute()


def replace_chunks_from(
    spark: SparkSession, settings: LakeSettings, source: str, documents: Sequence[tuple[str, int]]
) -> None:
    """Replaces the ``silver/chunks`` rows of these (document_id, version)s by ``source``'s, in
    one MERGE (one commit): rows matched on chunk id are updated, new ones inserted, the
    documents' other rows deleted. A rerun changes nothing."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if not documents:
        return
    keys = sorted({f"{document_id}:{int(version)}" for document_id, version in documents})

    def key(alias: str) -> Any:
        return F.concat_ws(":", F.col(f"{alias}.document_id"), F.col(f"{alias}.version").cast("string"))

    staged = spark.read.format("delta").load(table_path(settings, source)).alias("s")
    staged = staged.where(key("s").isin(keys))
    target = table_path(settings, SILVER_CHUNKS)
    retry_on_conflict(
        lambda: (
            DeltaTable.forPath(spark, target)
            .alias("t")
            .merge(staged.alias("s"), "t.chunk_id = s.chunk_id")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete(condition=key("t").isin(keys))
            .execute()
        ),
        what=f"replace chunks of {len(keys)} document version(s) in {SILVER_CHUNKS}",
    )


def drop_local_table(settings: LakeSettings, name: str) -> bool:
    """Deletes a table's files when the lake is a local directory (a reprocess's staging table
    once its rows are in ``silver/chunks``); False on S3, where the table is left for a lifecycle
    rule on ``staging/``."""
    import shutil

    path = table_path(settings, name)
    if "://" in path:
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True
