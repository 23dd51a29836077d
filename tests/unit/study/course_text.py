"""A small hand-written course text with an outline (three chapters on six pages)."""

from __future__ import annotations

from study.models import DocumentText

PAGES = {
    1: "Stream Processing Basics\n"
    "A stream is an unbounded sequence of events that arrive over time. A watermark is an estimate of how far "
    "event time has progressed in the stream. Late events arrive after the watermark has passed their timestamp.",
    2: "A window groups the events of a stream by time, for example into tumbling windows of five minutes. "
    "A trigger decides when the result of a window is emitted to the sink. Checkpoints store the state of the "
    "job so it can recover after a failure.",
    3: "Kafka Logs\n"
    "Kafka stores records in topics, and every topic is split into partitions. A partition is an ordered, "
    "append-only log of records. Each record in a partition has an offset that identifies its position.",
    4: "A consumer group shares the partitions of a topic between its members. The broker keeps a replica of "
    "every partition on other brokers for durability. Retention decides how long the broker keeps old segments.",
    5: "Lakehouse Tables\n"
    "Delta Lake stores a table as Parquet files plus a transaction log. Every commit appends one entry to the "
    "transaction log. Readers use a snapshot of the log, so a reader never sees half a commit.",
    6: "Compaction rewrites many small Parquet files into fewer large files. Vacuum deletes files that no "
    "snapshot references any more. Partitioning splits a table by a column so queries can skip whole folders.",
}
OUTLINE = [("Stream processing", 1), ("Kafka", 3), ("Lakehouse tables", 5)]


def course_document() -> DocumentText:
    """The course text as a DocumentText, one chunk per page (as chunk_pages gives for short pages)."""
    pages = [{"number": n, "text": t} for n, t in PAGES.items()]
    chunks = [{"chunk_id": f"chunk-{n}", "page_start": n, "page_end": n, "text": t} for n, t in PAGES.items()]
    return DocumentText.model_validate(
        {"document_id": "hand", "version": 1, "course_id": "c", "pages": pages, "chunks": chunks, "outline": OUTLINE}
    )
