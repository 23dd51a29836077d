"""Per-document latency in the real stream: a small document uploaded together with a big one
is indexed without waiting for it, and the big one is searchable by full text before its
embeddings exist. Ordering is asserted from the job's own reports, not wall-clock figures
(the two times are printed)."""

from __future__ import annotations

import time
import uuid

import pytest

from core.events import TOPIC_DOCUMENTS_UPLOADED
from lake.tables import SILVER_CHUNKS
from processing import samples
from tests.integration.spark_jobs.ingest_testkit import (
    delta_rows,
    expected_chunk_ids,
    isolated_settings,
    lance_rows,
    upload,
)

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis]


class TimedSink:
    """Records each report with its time; at the big document's ``searchable`` report (on the
    stream's own thread, before any of its embedding starts) it searches the course."""

    def __init__(self, on_searchable) -> None:
        self.calls: list[tuple[float, str, str]] = []
        self.on_searchable = on_searchable
        self.searched: dict[str, object] = {}

    def started(self, doc, *, pages_total):
        self.calls.append((time.monotonic(), "started", doc.document_id))

    def searchable(self, doc, *, chunks):
        self.calls.append((time.monotonic(), "searchable", doc.document_id))
        self.searched.update(self.on_searchable(doc) or {})

    def progress(self, doc, *, pages_done, pages_total, eta_s):
        self.calls.append((time.monotonic(), "progress", doc.document_id))

    def indexed(self, doc, *, pages, chunks, seconds):
        self.calls.append((time.monotonic(), "indexed", doc.document_id))

    def failed(self, doc, *, reason, raw=None):
        self.calls.append((time.monotonic(), "failed", doc.document_id if doc else ""))

    def flush(self):
        pass

    def close(self):
        pass

    def first(self, kind: str, document_id: str) -> tuple[int, float]:
        for position, (at, k, d) in enumerate(self.calls):
            if k == kind and d == document_id:
                return position, at
        raise AssertionError(f"no {kind} report for {document_id}: {self.calls}")


def test_small_document_is_indexed_before_a_big_one_in_the_same_batch_and_text_comes_first(spark, stack, tmp_path):
    from core.settings import EmbeddingSettings
    from lake.search import hybrid_search
    from lake.vectors import connect, open_chunks, unindexed_rows
    from processing.embedding import get_embedder
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import ensure_topics, json_producer

    run_id = uuid.uuid4().hex[:10]
    # A commit unit of at most 40 chunks: the small note is one unit, the big book its own.
    settings = isolated_settings(tmp_path, run_id, ingest={"commit_chunks": 40, "chunks_per_task": 16})
    course = f"course-l-{run_id}"
    big_book = samples.course_book(120)
    small = samples.short_pdf("Okapi ledgers explain why the giraffe audits its own columns.", pages=2)
    # One partition: both events are in the topic before the run starts and land in one batch.
    ensure_topics(settings.kafka, [settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED)], partitions=1)
    producer = json_producer(settings.kafka)
    big_event = upload(settings, producer, big_book.pdf, course_id=course, filename="big.pdf")  # first in the topic
    small_event = upload(settings, producer, small, course_id=course, filename="small.pdf")
    producer.close()

    embedder = get_embedder(EmbeddingSettings())
    page, phrase = next(iter(big_book.phrases.items()))

    def search_big_while_unembedded(doc):
        if doc.document_id != big_event.document_id:
            return {}
        db = connect(settings.lancedb)
        table = open_chunks(db, settings.lancedb, create=False)
        return {
            "text": hybrid_search(db, course, phrase, 5, embedder, settings=settings.lancedb, mode="text"),
            "vector": hybrid_search(db, course, phrase, 5, embedder, settings=settings.lancedb, mode="vector"),
            "unindexed": unindexed_rows(table),
        }

    sink = TimedSink(search_big_while_unembedded)
    stats = run_available_now(settings, spark=spark, sink=sink)
    assert sum(s.indexed for s in stats) == 2, stats
    assert len([s for s in stats if s.events]) == 1, f"both uploads must share one micro-batch: {stats}"

    small_indexed, small_at = sink.first("indexed", small_event.document_id)
    big_indexed, big_at = sink.first("indexed", big_event.document_id)
    big_embedding, _ = sink.first("progress", big_event.document_id)
    big_searchable, searchable_at = sink.first("searchable", big_event.document_id)
    started = sink.first("started", big_event.document_id)[1]
    print(
        f"after the batch's start: big searchable by text {searchable_at - started:.1f} s, "
        f"small indexed {small_at - started:.1f} s, big indexed {big_at - started:.1f} s"
    )
    # The small one is final before the big one's embedding even starts (it did not wait).
    assert big_searchable < small_indexed < big_embedding < big_indexed

    # Full-text search found the big book's page before any of its vectors existed ...
    text_hits = sink.searched["text"]
    assert text_hits and text_hits[0].document_id == big_event.document_id
    assert text_hits[0].page_start <= page <= text_hits[0].page_end
    # ... vector search did not see its placeholder vectors, and the text index covered every row.
    assert all(hit.document_id != big_event.document_id for hit in sink.searched["vector"])
    assert sink.searched["unindexed"].get("text_idx", 0) == 0, sink.searched["unindexed"]

    # Afterwards: exactly the PDF's chunks, once each, all embedded and all indexed.
    for event, data in ((big_event, big_book.pdf), (small_event, small)):
        expected = expected_chunk_ids(settings, data, document_id=event.document_id)
        lance = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == event.document_id]
        delta = [r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["document_id"] == event.document_id]
        assert sorted(lance) == sorted(delta) == sorted(expected)
    table = open_chunks(connect(settings.lancedb), settings.lancedb, create=False)
    assert table.count_rows("embedded = false") == 0
    assert all(count == 0 for count in unindexed_rows(table).values()), unindexed_rows(table)
    vector_hits = hybrid_search(
        connect(settings.lancedb), course, phrase, 5, embedder, settings=settings.lancedb, mode="vector"
    )
    assert any(hit.document_id == big_event.document_id for hit in vector_hits)
