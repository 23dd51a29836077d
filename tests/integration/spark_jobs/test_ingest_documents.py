"""The ingestion stream against the real Kafka, Spark, Delta, LanceDB and Redis.

Uploads are published straight to a per-run topic (what the API does after storing the bytes);
the job runs with availableNow semantics (and once with a processing-time trigger); the
assertions read what it wrote with independent readers (delta-rs for Delta, LanceDB, a Kafka
consumer, Redis), and expected chunk ids come from the PDFs themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from core.events import TOPIC_DOCUMENTS_FAILED, TOPIC_DOCUMENTS_INDEXED, TOPIC_DOCUMENTS_UPLOADED
from core.settings import PROJECT_ROOT, IngestSettings
from lake.tables import BRONZE_DOCUMENT_EVENTS, SILVER_CHUNKS, SILVER_DOCUMENTS, SILVER_PAGES
from processing import pdf, samples
from processing.embedding import DIMENSION
from tests.integration.spark_jobs.ingest_testkit import (
    RecordingSink,
    UnreachableFor,
    consume_all,
    delta_rows,
    expected_chunk_ids,
    isolated_env,
    isolated_settings,
    lance_rows,
    publish,
    publish_raw,
    upload,
)

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis]

BROKEN = {
    "corrupt.pdf": (samples.corrupt_pdf, "corrupt PDF"),
    "truncated.pdf": (samples.truncated_pdf, "truncated PDF"),
    "encrypted.pdf": (samples.encrypted_pdf, pdf.REASON_ENCRYPTED),
    "empty.pdf": (samples.empty_pdf, pdf.REASON_EMPTY),
    "scan.pdf": (samples.image_only_pdf, pdf.REASON_NO_TEXT),
    "notes.docx.pdf": (samples.not_a_pdf, pdf.REASON_NOT_PDF),
}


@pytest.fixture(scope="module")
def embedder():
    from core.settings import EmbeddingSettings
    from processing.embedding import get_embedder

    return get_embedder(EmbeddingSettings())


@pytest.fixture(scope="module")
def ingested(spark, stack, tmp_path_factory):
    """One course with a 60-page book, a second course with a short note, six broken PDFs, an
    event whose hash does not match its object, one whose object is gone and one unparseable
    event, all ingested by one availableNow run."""
    from lake.store import object_store
    from spark_jobs.ingest.status_sinks import FanOutSink, RedisKafkaStatusSink
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    run_id = uuid.uuid4().hex[:10]
    # Small embedding tasks, so the book's progress has steps between 0 and 60 pages.
    settings = isolated_settings(tmp_path_factory.mktemp("ingest"), run_id, ingest={"chunks_per_task": 8})
    producer = json_producer(settings.kafka)
    book = samples.course_book(60)
    note = samples.short_pdf("Dromedary indexing explains why camels prefer columnar storage.", pages=3)
    course_a, course_b = f"course-a-{run_id}", f"course-b-{run_id}"
    good = {
        "book": upload(settings, producer, book.pdf, course_id=course_a, filename="book.pdf"),
        "note": upload(settings, producer, note, course_id=course_b, filename="note.pdf"),
    }
    broken = {
        name: (upload(settings, producer, make(), course_id=course_a, filename=name), reason)
        for name, (make, reason) in BROKEN.items()
    }
    # The object differs from what the event announced (its hash is of other bytes).
    swapped = upload(settings, producer, samples.short_pdf("the announced bytes"), course_id=course_a,
                     filename="swapped.pdf", publish_event=False)  # fmt: skip
    swapped = swapped.model_copy(update={"sha256": "0" * 64})
    publish(settings, producer, swapped.model_dump(mode="json"), key=swapped.document_id)
    broken["swapped.pdf"] = (swapped, "content hash mismatch: the stored object has sha256 ")
    # The object was deleted (or never stored) before the job read it.
    gone = upload(settings, producer, samples.short_pdf("soon gone"), course_id=course_a, filename="gone.pdf",
                  publish_event=False)  # fmt: skip
    store = object_store(settings.object_store)
    store.delete(f"raw/uploads/{course_a}/{gone.document_id}/v1.pdf")
    publish(settings, producer, gone.model_dump(mode="json"), key=gone.document_id)
    broken["gone.pdf"] = (gone, f"raw upload missing at {gone.object_uri}")
    publish_raw(settings, b"this is { not json")
    producer.close()
    recorder = RecordingSink()
    live = RedisKafkaStatusSink(settings)
    try:
        stats = run_available_now(settings, spark=spark, sink=FanOutSink(live, recorder))
    finally:
        live.close()
    for batch in stats:
        print(f"batch {batch.batch_id}: {batch}")
    return {
        "settings": settings,
        "book": book,
        "pdfs": {"book": book.pdf, "note": note},
        "good": good,
        "broken": broken,
        "stats": stats,
        "recorder": recorder,
        "courses": (course_a, course_b),
    }


def test_ingest_indexes_good_pdfs_with_equal_chunk_counts_in_delta_and_lancedb(ingested):
    settings = ingested["settings"]
    delta_chunks = delta_rows(settings, SILVER_CHUNKS)
    lance = lance_rows(settings)
    for name, event in ingested["good"].items():
        in_delta = [r["chunk_id"] for r in delta_chunks if r["document_id"] == event.document_id]
        in_lance = [r["chunk_id"] for r in lance if r["document_id"] == event.document_id]
        assert in_delta, f"{name}: no chunks in silver/chunks"
        assert len(in_delta) == len(set(in_delta)) and len(in_lance) == len(set(in_lance)), f"{name}: duplicates"
        assert sorted(in_delta) == sorted(in_lance), f"{name}: Delta and LanceDB disagree"
        expected = expected_chunk_ids(settings, ingested["pdfs"][name], document_id=event.document_id)
        assert set(in_delta) == expected, f"{name}: chunks missing or extra"
    # Only good documents have chunks; every stored embedding is a unit vector of the model's size.
    assert {r["document_id"] for r in lance} == {e.document_id for e in ingested["good"].values()}
    for row in delta_chunks:
        vector = row["embedding"]
        assert len(vector) == DIMENSION and abs(sum(x * x for x in vector) - 1.0) < 1e-3, row["chunk_id"]

    pages = [r for r in delta_rows(settings, SILVER_PAGES) if r["document_id"] == ingested["good"]["book"].document_id]
    assert sorted(r["page_number"] for r in pages) == list(range(1, 61))
    documents = {(r["document_id"], r["version"]): r for r in delta_rows(settings, SILVER_DOCUMENTS)}
    book = documents[(ingested["good"]["book"].document_id, 1)]
    assert (book["status"], book["pages"], book["is_current"]) == ("indexed", 60, True)
    assert book["chunks"] == len([r for r in lance if r["document_id"] == ingested["good"]["book"].document_id])

    indexed = {e["document_id"]: e for e in consume_all(settings, TOPIC_DOCUMENTS_INDEXED)}
    assert indexed[ingested["good"]["book"].document_id]["chunks"] == book["chunks"]
    assert indexed[ingested["good"]["book"].document_id]["pages"] == 60


def test_ingest_fails_broken_pdfs_with_their_reasons_and_dead_letters_them(ingested):
    from core.jobs import JobReporter
    from core.redis import redis_client

    settings = ingested["settings"]
    dead = consume_all(settings, TOPIC_DOCUMENTS_FAILED)
    by_document = {e["document_id"]: e for e in dead if e["document_id"]}
    documents = {r["document_id"]: r for r in delta_rows(settings, SILVER_DOCUMENTS)}
    reporter = JobReporter(redis_client(settings.redis))
    for name, (event, reason) in ingested["broken"].items():
        assert event.document_id in by_document, f"{name} is not on documents.failed"
        assert by_document[event.document_id]["reason"].startswith(reason), (name, by_document[event.document_id])
        assert documents[event.document_id]["status"] == "failed"
        assert documents[event.document_id]["reason"].startswith(reason)
        job = reporter.get(event.job_id)
        assert job is not None and job.status == "failed" and job.error.startswith(reason)
        # A permanent problem fails the document once: one outcome, no retry.
        assert len(ingested["recorder"].of("failed", event.document_id)) == 1, name
    unparseable = [e for e in dead if e["document_id"] is None]
    assert len(unparseable) == 1 and unparseable[0]["raw"] == "this is { not json"
    assert unparseable[0]["reason"].startswith("invalid document.uploaded event")
    # The stream went on: the good documents of the same batch were indexed.
    assert sum(s.indexed for s in ingested["stats"]) == 2


def test_ingest_lands_every_event_once_in_bronze(ingested):
    import json

    bronze = delta_rows(ingested["settings"], BRONZE_DOCUMENT_EVENTS)
    # Compared as multisets: Delta files (and delta-rs) return rows in no particular order.
    positions = Counter((r["partition"], r["offset"]) for r in bronze)
    assert all(n == 1 for n in positions.values()), positions
    events = [*ingested["good"].values(), *(event for event, _ in ingested["broken"].values())]
    parsed = Counter(json.loads(r["value"]).get("event_id") for r in bronze if r["value"].startswith('{"'))
    assert parsed == Counter(e.event_id for e in events)
    assert sorted(r["value"] for r in bronze if not r["value"].startswith('{"')) == ["this is { not json"]
    assert len(bronze) == len(events) + 1


def test_ingest_reports_progress_and_success_to_the_job(ingested):
    from core.jobs import JobReporter
    from core.redis import redis_client

    settings = ingested["settings"]
    book = ingested["good"]["book"]
    job = JobReporter(redis_client(settings.redis)).get(book.job_id)
    assert job is not None
    assert (job.status, job.pages_done, job.pages_total) == ("succeeded", 60, 60)
    recorder = ingested["recorder"]
    assert recorder.of("started", book.document_id) == [{"pages_total": 60}]
    done = [p["pages_done"] for p in recorder.of("progress", book.document_id)]
    assert any(0 < d < 60 for d in done), f"no intermediate progress: {done}"
    assert done == sorted(done), f"pages_done went down: {done}"
    assert all(p["pages_total"] == 60 for p in recorder.of("progress", book.document_id))
    assert recorder.of("indexed", book.document_id)[0]["pages"] == 60


def test_search_finds_the_page_of_a_known_phrase_within_the_course(ingested, embedder):
    from lake.search import hybrid_search
    from lake.vectors import connect

    settings = ingested["settings"]
    course_a, course_b = ingested["courses"]
    db = connect(settings.lancedb)
    book_id = ingested["good"]["book"].document_id
    for page, phrase in ingested["book"].phrases.items():
        hits = hybrid_search(db, course_a, phrase, 5, embedder, settings=settings.lancedb)
        assert hits, phrase
        top = hits[0]
        assert top.document_id == book_id and top.page_start <= page <= top.page_end, (phrase, top)
        assert phrase.split()[1] in top.text.replace("\n", " ")
    note = hybrid_search(db, course_b, "dromedary indexing camels columnar", 3, embedder, settings=settings.lancedb)
    assert note and note[0].document_id == ingested["good"]["note"].document_id
    # Course filter: the other course's book never shows up.
    assert all(h.course_id == course_b for h in note)
    assert all(
        h.course_id == course_a for h in hybrid_search(db, course_a, "camels", 10, embedder, settings=settings.lancedb)
    )


def test_ingest_replay_of_indexed_events_changes_nothing(ingested, spark, stack):
    """Same upload again (a producer retry or a second identical upload event): one document."""
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    settings = ingested["settings"]
    book = ingested["good"]["book"]
    before = sorted(r["chunk_id"] for r in lance_rows(settings))
    silver_before = len(delta_rows(settings, SILVER_CHUNKS))
    producer = json_producer(settings.kafka)
    publish(settings, producer, book.model_dump(mode="json"), key=book.document_id)
    producer.close()
    stats = run_available_now(settings, spark=spark)
    assert [s.skipped for s in stats] == [1]
    assert sorted(r["chunk_id"] for r in lance_rows(settings)) == before
    assert len(delta_rows(settings, SILVER_CHUNKS)) == silver_before
    assert len([r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] == book.document_id]) == 1


def test_ingest_new_version_replaces_the_old_ones_chunks_in_search(spark, stack, tmp_path, run_id, embedder):
    from lake.search import hybrid_search
    from lake.vectors import connect
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    # The other tests embed in the Spark workers (the default); this one takes the driver path.
    settings = isolated_settings(tmp_path, run_id, embedding={"placement": "driver"})
    producer = json_producer(settings.kafka)
    course = f"course-r-{run_id}"
    v1 = upload(
        settings, producer, samples.short_pdf("The albatross lemma bounds the replication lag."), course_id=course,
        filename="lemma.pdf",
    )  # fmt: skip
    run_available_now(settings, spark=spark)
    db = connect(settings.lancedb)
    assert hybrid_search(db, course, "albatross lemma", 3, embedder, settings=settings.lancedb)[0].version == 1

    data = samples.short_pdf("The pangolin corollary tightens the compaction bound.", pages=4)
    v2 = upload(
        settings, producer, data, course_id=course, filename="lemma.pdf", document_id=v1.document_id, version=2,
        replaces_version=1,
    )  # fmt: skip
    publish(settings, producer, v2.model_dump(mode="json"), key=v2.document_id)  # uploaded twice
    producer.close()
    run_available_now(settings, spark=spark)

    hits = hybrid_search(db, course, "albatross lemma", 10, embedder, settings=settings.lancedb)
    assert hits and all(h.version == 2 for h in hits)
    assert all("albatross" not in h.text for h in hits)
    assert "pangolin" in hybrid_search(db, course, "pangolin corollary", 1, embedder, settings=settings.lancedb)[0].text
    lance = [r for r in lance_rows(settings) if r["document_id"] == v1.document_id]
    assert {r["version"] for r in lance} == {2}
    documents = {r["version"]: r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] == v1.document_id}
    assert sorted(documents) == [1, 2]
    assert (documents[1]["is_current"], documents[2]["is_current"]) == (False, True)
    v2_delta = sorted(r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["version"] == 2)
    assert v2_delta == sorted(r["chunk_id"] for r in lance)


def _wait_for(predicate, *, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def _delta_document_ids(path: Path) -> set[str]:
    from deltalake import DeltaTable

    try:
        return set(DeltaTable(str(path)).to_pyarrow_table(columns=["document_id"]).column("document_id").to_pylist())
    except Exception:
        return set()


def test_ingest_survives_sigkill_mid_batch_without_duplicates_or_gaps(spark, stack, tmp_path, run_id):
    """SIGKILL the job after it wrote silver chunks of a batch but before it committed the
    batch; the restarted job replays it: no duplicate and no missing chunk anywhere."""
    from spark_jobs.ingest_documents import checkpoint_location, run_available_now
    from streaming.kafka import ensure_topics, json_producer

    settings = isolated_settings(tmp_path, run_id, ingest=IngestSettings(max_offsets_per_trigger=1))
    # One partition: the warm-up is batch 0, the big book batch 1 (the one killed).
    ensure_topics(settings.kafka, [settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED)], partitions=1)
    producer = json_producer(settings.kafka)
    course = f"course-k-{run_id}"
    first = upload(settings, producer, samples.short_pdf("A warm-up document.", pages=5), course_id=course,
                   filename="warmup.pdf")  # fmt: skip
    big_pdf = samples.course_book(150).pdf
    big = upload(settings, producer, big_pdf, course_id=course, filename="big.pdf")
    producer.close()

    env = {**os.environ, **isolated_env(settings), "LAKEHOUSE_INGEST__MAX_OFFSETS_PER_TRIGGER": "1"}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    log = (tmp_path / "job.log").open("w")
    job = subprocess.Popen(
        [sys.executable, "-m", "spark_jobs.ingest_documents", "--available-now"],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    chunks_path = Path(settings.lake.root) / SILVER_CHUNKS
    commits = Path(checkpoint_location(settings)) / "commits"
    try:
        wrote = _wait_for(lambda: big.document_id in _delta_document_ids(chunks_path), timeout_s=240)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        log.close()
    assert wrote, (tmp_path / "job.log").read_text()[-3000:]
    committed = sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    assert committed == [0], f"the kill should land inside batch 1, commits were {committed}"
    killed_lance = {r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == big.document_id}

    stats = run_available_now(settings, spark=spark)  # the restart: replays batch 1
    assert [s.batch_id for s in stats][:1] == [1]

    delta_ids = [r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["document_id"] == big.document_id]
    lance_ids = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == big.document_id]
    # From the PDF, not from what the job wrote: a lost trailing chunk must fail this test.
    expected = expected_chunk_ids(settings, big_pdf, document_id=big.document_id)
    assert not [i for i, n in Counter(delta_ids).items() if n > 1], "duplicate chunks in Delta"
    assert not [i for i, n in Counter(lance_ids).items() if n > 1], "duplicate chunks in LanceDB"
    assert set(delta_ids) == set(lance_ids) == expected
    assert killed_lance <= expected
    documents = [r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] == big.document_id]
    assert len(documents) == 1 and documents[0]["status"] == "indexed" and documents[0]["chunks"] == len(expected)
    first_ids = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == first.document_id]
    assert first_ids and len(first_ids) == len(set(first_ids))
    bronze = delta_rows(settings, BRONZE_DOCUMENT_EVENTS)
    assert sorted(r["offset"] for r in bronze) == [0, 1], "bronze holds each event exactly once"


def test_ingest_retries_an_unreachable_object_store_and_fails_a_bad_pdf_once(spark, stack, tmp_path, run_id):
    """The store refuses connections for one document's first two reads: that document is read
    again and indexed, once; a corrupt PDF in the same batch still fails once with its reason."""
    from lake.store import object_store
    from spark_jobs.ingest.status_sinks import FanOutSink, RedisKafkaStatusSink
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    settings = isolated_settings(tmp_path, run_id, ingest={"read_attempts": 3, "read_backoff_s": 0.05})
    producer = json_producer(settings.kafka)
    course = f"course-t-{run_id}"
    data = samples.short_pdf("The object store came back: the okapi theorem is indexed after all.", pages=3)
    flaky_doc = upload(settings, producer, data, course_id=course, filename="okapi.pdf")
    bad = upload(settings, producer, samples.corrupt_pdf(), course_id=course, filename="bad.pdf")
    producer.close()
    store = UnreachableFor(object_store(settings.object_store), key_suffix=f"{flaky_doc.document_id}/v1.pdf",
                           failures=2)  # fmt: skip
    recorder, live = RecordingSink(), RedisKafkaStatusSink(settings)
    try:
        stats = run_available_now(settings, spark=spark, sink=FanOutSink(live, recorder), raw_store=store)
    finally:
        live.close()

    assert [n for key, n in store.reads.items() if key.endswith(f"{flaky_doc.document_id}/v1.pdf")] == [3]
    assert sum(s.indexed for s in stats) == 1 and sum(s.failed for s in stats) == 1
    expected = expected_chunk_ids(settings, data, document_id=flaky_doc.document_id)
    delta_ids = [
        r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["document_id"] == flaky_doc.document_id
    ]
    lance_ids = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == flaky_doc.document_id]
    assert sorted(delta_ids) == sorted(lance_ids) == sorted(expected), "chunks doubled or missing"
    documents = {r["document_id"]: r for r in delta_rows(settings, SILVER_DOCUMENTS)}
    assert (documents[flaky_doc.document_id]["status"], documents[flaky_doc.document_id]["reason"]) == ("indexed", None)
    assert recorder.of("failed", flaky_doc.document_id) == []
    assert documents[bad.document_id]["status"] == "failed"
    assert documents[bad.document_id]["reason"].startswith("corrupt PDF")
    assert [f["reason"][:11] for f in recorder.of("failed", bad.document_id)] == ["corrupt PDF"]
    failed_events = [e for e in consume_all(settings, TOPIC_DOCUMENTS_FAILED) if e["document_id"] == bad.document_id]
    assert len(failed_events) == 1


def test_ingest_fails_a_document_whose_object_store_stays_unreachable_with_the_cause(spark, stack, tmp_path, run_id):
    from lake.store import object_store
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    settings = isolated_settings(tmp_path, run_id, ingest={"read_attempts": 3, "read_backoff_s": 0.01})
    producer = json_producer(settings.kafka)
    doc = upload(settings, producer, samples.short_pdf("never reachable"), course_id=f"c-{run_id}", filename="x.pdf")
    producer.close()
    store = UnreachableFor(object_store(settings.object_store), key_suffix="v1.pdf", failures=100)
    run_available_now(settings, spark=spark, raw_store=store)
    [row] = [r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] == doc.document_id]
    assert row["status"] == "failed"
    assert row["reason"].startswith("object store unreachable after 3 attempts: ConnectionRefusedError"), row
    assert not [r for r in lance_rows(settings) if r["document_id"] == doc.document_id]


def test_ingest_stream_with_a_processing_time_trigger_beats_and_indexes_uploads(spark, stack, tmp_path, run_id):
    """The continuous mode: ready (heartbeat in Redis) before any upload, indexes what arrives
    while it runs, and withdraws its heartbeat when stopped."""
    from core.jobs import JobReporter
    from core.redis import redis_client
    from spark_jobs.ingest.heartbeat import heartbeat_key
    from spark_jobs.ingest.status_sinks import RedisKafkaStatusSink
    from spark_jobs.ingest_documents import JOB_NAME, prepare, start_stream, stop_stream, stream_is_ready
    from streaming.kafka import json_producer

    settings = isolated_settings(tmp_path, run_id, redis={"key_prefix": f"t{run_id}:"})
    redis = redis_client(settings.redis)
    assert not stream_is_ready(settings)
    prepare(spark, settings)
    sink = RedisKafkaStatusSink(settings)
    query, ingestor = start_stream(spark, settings, sink, available_now=False, trigger_seconds=0.5)
    try:
        assert _wait_for(lambda: stream_is_ready(settings), timeout_s=60), "no heartbeat"
        first_beat = float(redis.get(heartbeat_key(settings, JOB_NAME)))
        producer = json_producer(settings.kafka)
        data = samples.short_pdf("A live stream indexes the quokka lemma while it runs.", pages=2)
        doc = upload(settings, producer, data, course_id=f"course-s-{run_id}", filename="live.pdf")
        producer.close()
        reporter = JobReporter(redis)

        def indexed() -> bool:
            job = reporter.get(doc.job_id)
            return job is not None and job.status == "succeeded"

        assert _wait_for(indexed, timeout_s=180, interval_s=0.2), query.lastProgress
        assert query.isActive and query.exception() is None
        # Refreshed after the batch's trigger (the progress event follows the batch's commit).
        beat = lambda: float(redis.get(heartbeat_key(settings, JOB_NAME)) or 0)  # noqa: E731
        assert _wait_for(lambda: beat() > first_beat, timeout_s=30), "heartbeat not refreshed"
        assert redis.pttl(heartbeat_key(settings, JOB_NAME)) > 0
    finally:
        stop_stream(spark, query)
        sink.close()
    lance_ids = sorted(r["chunk_id"] for r in lance_rows(settings) if r["document_id"] == doc.document_id)
    assert lance_ids == sorted(expected_chunk_ids(settings, data, document_id=doc.document_id))
    assert sum(s.indexed for s in ingestor.stats) == 1
    assert _wait_for(lambda: not stream_is_ready(settings), timeout_s=10), "heartbeat left after stop"
