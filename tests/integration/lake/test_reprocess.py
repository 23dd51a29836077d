"""Reprocessing into a new index version against real Delta tables (Spark), LanceDB and raw files:
search keeps answering from the live version during the rebuild and from the new one after the
switch; a SIGKILL mid-reprocess and a rerun leave no duplicate and no missing chunk; an upload the
stream indexes between the catch-up and the switch is served by the new version (the handover)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from core.events import DocumentUploaded
from core.ids import chunk_id
from core.settings import PROJECT_ROOT, Settings
from lake import index_versions, tables
from lake.reprocess import BuildSettings, Progress, Rebuilder, Scope, reprocess
from lake.search import hybrid_search
from lake.vectors import connect, from_silver_chunks, open_chunks, upsert_chunks
from processing import samples
from processing.chunking import chunk_pages
from processing.pdf import extract_pages, page_count
from spark_jobs.ingest.writes import LanceChunks
from tests.integration.spark_jobs.ingest_testkit import delta_rows, isolated_env, isolated_settings

pytestmark = [pytest.mark.integration, pytest.mark.spark]
NEW_SIZE = 300


@dataclass
class Lake:
    settings: Settings
    course: str
    other: str
    pdfs: dict[str, bytes]  # the course's documents


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    """One seeded lake for both tests (seeding costs Spark writes): a course of 3 documents and
    another course's document, version 1 as the stream leaves it. The first test takes it to
    version 2, the second to version 3."""
    settings = isolated_settings(tmp_path_factory.mktemp("reprocess"), uuid.uuid4().hex[:12],
                                 lancedb={"read_consistency_s": 0.0})  # fmt: skip
    index_versions.forget_live()
    course, other = str(uuid.uuid4()), str(uuid.uuid4())
    pdfs = _seed(spark, settings, [(course, 3, 1), (course, 4, 2), (course, 5, 4), (other, 3, 3)])
    mine = {r["document_id"] for r in delta_rows(settings, tables.SILVER_DOCUMENTS) if r["course_id"] == course}
    return Lake(settings, course, other, {d: pdf for d, pdf in pdfs.items() if d in mine})


def _seed(spark, settings: Settings, documents: list[tuple[str, int, int]]) -> dict[str, bytes]:
    """Raw PDFs, their ``silver/documents`` rows and version 1 (chunk size 500) as the stream
    leaves them. ``documents``: (course, pages, seed)."""
    tables.ensure_tables(spark, settings.lake)
    raw_dir = settings.object_store.local_root / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows, pdfs = [], {}
    for index, (course, pages, seed) in enumerate(documents):
        document_id = str(uuid.uuid4())
        pdf = samples.course_book(pages, seed=seed, chars=1200, title=f"Book {seed}").pdf
        path = raw_dir / f"{document_id}.pdf"
        path.write_bytes(pdf)
        pdfs[document_id] = pdf
        event = DocumentUploaded(event_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), document_id=document_id,
                                 course_id=course, version=1, job_id=str(uuid.uuid4()), uploaded_by="u",
                                 object_uri=path.as_uri(), filename=f"{seed}.pdf", size_bytes=len(pdf),
                                 sha256=hashlib.sha256(pdf).hexdigest())  # fmt: skip
        rows.append(tables.document_row(event, status="indexed", reason=None, pages=pages, chunks=0,
                                        source=("t", 0, index)))  # fmt: skip
    first = index_versions.first_version(settings)
    builder = Rebuilder(settings, BuildSettings(first.chunk_size, first.chunk_overlap, first.embedding_model,
                                                first.precision))  # fmt: skip
    table = open_chunks(connect(settings.lancedb), settings.lancedb)
    for row in rows:
        pages_rows, chunk_rows = builder.rows(row, lambda *_: None)
        row["chunks"] = chunk_rows.num_rows
        ids = [row["document_id"]]
        tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, spark.createDataFrame(pages_rows), "page_id",
                          document_ids=ids)  # fmt: skip
        tables.insert_new(spark, settings.lake, tables.SILVER_CHUNKS, spark.createDataFrame(chunk_rows), "chunk_id",
                          document_ids=ids)  # fmt: skip
        upsert_chunks(table, from_silver_chunks(chunk_rows))
    frame = spark.createDataFrame(tables.arrow_rows(tables.SILVER_DOCUMENTS, rows))
    tables.merge_documents(spark, settings.lake, frame)
    return pdfs


def _expected_ids(settings: Settings, document_id: str, pdf: bytes, size: int, version: int = 1) -> set[str]:
    """From the PDF, not from what the reprocess wrote: a lost chunk must fail the test."""
    pages = extract_pages(pdf, 0, page_count(pdf), extractor=settings.ingest.extractor)
    chunks = chunk_pages(pages, document_id=document_id, version=version, chunk_size=size,
                         chunk_overlap=settings.ingest.chunk_overlap)  # fmt: skip
    return {chunk_id(document_id, version, i) for i in range(len(chunks))}


def _lance_ids(settings: Settings, table: str, course: str) -> list[str]:
    rows = open_chunks(connect(settings.lancedb), settings.lancedb, create=False, name=table).to_arrow().to_pylist()
    return [r["chunk_id"] for r in rows if r["course_id"] == course]


def test_a_new_chunk_size_builds_a_version_served_only_once_switched(spark, lake):
    from processing.embedding import get_embedder

    settings, course, other, pdfs = lake.settings, lake.course, lake.other, lake.pdfs
    db = connect(settings.lancedb)
    embedder = get_embedder(settings.embedding)
    old_ids = set(_lance_ids(settings, "chunks", course))
    other_ids = set(_lance_ids(settings, "chunks", other))
    during: list[tuple[int, set[str]]] = []

    def search(query: str = "streaming lakehouse chapter page") -> set[str]:
        return {h.chunk_id for h in hybrid_search(db, course, query, 10, embedder, settings=settings.lancedb)}

    def while_building(p: Progress) -> None:
        if p.stage == "document" and p.pages_done == p.pages_total and p.pages_total and not during:
            during.append((index_versions.live_index(db, settings.lancedb).version, search()))

    result = reprocess(spark, settings, Scope("course", course), chunk_size=NEW_SIZE, progress=while_building)

    # During the rebuild (a document already in chunks_v2): version 1 answered.
    assert during and during[0][0] == 1 and during[0][1] and during[0][1] <= old_ids
    assert (result.version.version, result.version.state, result.previous.version) == (2, "live", 1)
    expected = set().union(*(_expected_ids(settings, d, pdf, NEW_SIZE) for d, pdf in pdfs.items()))
    new_ids = _lance_ids(settings, "chunks_v2", course)
    assert len(new_ids) == len(set(new_ids)) and set(new_ids) == expected and len(expected) > len(old_ids)
    assert set(_lance_ids(settings, "chunks_v2", other)) == other_ids  # outside the scope: copied as is
    # After the switch: version 2 answers, with the new chunks.
    assert index_versions.live_index(db, settings.lancedb) == index_versions.LiveIndex(2, "chunks_v2")
    after = search()
    assert after and after <= expected
    silver = [r for r in delta_rows(settings, tables.SILVER_CHUNKS) if r["course_id"] == course]
    assert {r["chunk_id"] for r in silver} == expected and len(silver) == len(expected)
    assert all(len(r["text"]) <= NEW_SIZE for r in silver)
    counts = {r["document_id"]: r["chunks"] for r in delta_rows(settings, tables.SILVER_DOCUMENTS)}
    assert sum(counts[d] for d in pdfs) == len(expected)
    states = {v.version: v.state for v in index_versions.list_versions(db)}
    assert states == {1: "retired", 2: "live"}
    # The stream cuts new uploads as the live version was cut, and writes into its table.
    stream_writer = LanceChunks(settings)
    assert stream_writer.live_chunking().chunk_size == NEW_SIZE and stream_writer.table().name == "chunks_v2"
    assert any("Great Expectations" in line and "passed" in line for line in result.checks), result.checks


def test_sigkill_mid_reprocess_then_rerun_completes_without_duplicates_or_gaps(spark, lake):
    """The CLI is killed once a document is in the new table; the rerun (in this process: a
    restarted job) resumes the version: no duplicate and no missing chunk."""
    settings, course, size = lake.settings, lake.course, 400
    db = connect(settings.lancedb)
    before = index_versions.live_version(db, settings)
    target = before.version + 1
    table = f"chunks_v{target}"
    env = {**os.environ, **isolated_env(settings), "LAKEHOUSE_LANCEDB__READ_CONSISTENCY_S": "0",
           "PYTHONPATH": str(PROJECT_ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "cli", "reprocess", "--course", course, "--chunk-size", str(size)]
    log_path = settings.object_store.local_root.parent / "reprocess.log"
    log = log_path.open("w")
    job = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)  # fmt: skip
    killed_with: set[str] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and job.poll() is None:
            if table in db.table_names():
                rows = open_chunks(db, settings.lancedb, create=False, name=table).to_arrow()
                killed_with = {d for d, c in zip(rows["document_id"].to_pylist(), rows["course_id"].to_pylist(),
                                                 strict=True) if c == course}  # fmt: skip
                if killed_with:
                    os.killpg(job.pid, signal.SIGKILL)
                    break
            time.sleep(0.1)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        log.close()
    output = log_path.read_text()
    assert job.returncode == -signal.SIGKILL and 0 < len(killed_with) < len(lake.pdfs), output[-3000:]
    [building] = [v for v in index_versions.list_versions(db) if v.version == target]
    assert building.state == "building" and index_versions.live_version(db, settings).version == before.version

    index_versions.forget_live()
    result = reprocess(spark, settings, Scope("course", course), chunk_size=size)  # the restart
    assert (result.version.version, result.version.state) == (target, "live")
    assert result.resumed == len(killed_with) and result.built == len(lake.pdfs) - len(killed_with)
    expected = set().union(*(_expected_ids(settings, d, pdf, size) for d, pdf in lake.pdfs.items()))
    new = _lance_ids(settings, table, course)
    silver = [r["chunk_id"] for r in delta_rows(settings, tables.SILVER_CHUNKS) if r["course_id"] == course]
    assert not [i for i, n in Counter(new).items() if n > 1], "duplicate chunks in LanceDB"
    assert not [i for i, n in Counter(silver).items() if n > 1], "duplicate chunks in silver"
    assert set(new) == set(silver) == expected
    assert index_versions.live_index(db, settings.lancedb).version == target


def test_gold_made_after_the_switch_cites_only_the_new_versions_chunks(spark, lake):
    """What `lakehouse reprocess` does after the switch (``--gold``, the default): the scope's
    notes, quizzes and cards are made anew from the live version's chunks."""
    from lake import gold
    from study.batch import regenerate_scope

    settings, course = lake.settings, lake.course
    summaries: list[tuple[str, dict]] = []
    made = regenerate_scope(settings, course_id=course, run_at=datetime.now(UTC),
                            report=lambda kind, summary: summaries.append((kind, summary)))  # fmt: skip
    assert made == {"notes": len(lake.pdfs), "quiz": len(lake.pdfs)}, summaries
    live = index_versions.live_index(connect(settings.lancedb), settings.lancedb)
    live_ids = set(_lance_ids(settings, live.table_name, course))
    items = gold.read_where(settings, gold.GOLD_QUIZ_ITEMS, course_id=course)
    notes = gold.read_where(settings, gold.GOLD_NOTES, course_id=course)
    print(f"gold after reprocess: {len(notes)} notes, {len(items)} quiz items; live version {live.version}")
    assert {n["document_id"] for n in notes} == set(lake.pdfs)
    assert items and {i["source_chunk_id"] for i in items} <= live_ids
    # Nothing of the other course was touched.
    assert not gold.read_where(settings, gold.GOLD_NOTES, course_id=lake.other)


def _index_through_the_stream(spark, settings: Settings, course: str, uploads: list[dict]) -> list[DocumentUploaded]:
    """Uploads (``upload``'s keyword arguments) through the stream's micro-batch handler
    (``DocumentIngestor.process_batch``: bronze, extraction, text-first write, embedding, silver
    and LanceDB writes, documents rows), fed the Kafka rows it would read, in one batch; embedded
    on the driver (the model is loaded here already)."""
    from spark_jobs.ingest.batch import DocumentIngestor
    from tests.integration.spark_jobs.ingest_testkit import RecordingSink, upload

    events = [upload(settings, None, course_id=course, publish_event=False, **u) for u in uploads]
    rows = [("documents", 0, i, e.document_id, e.model_dump_json(), datetime.now(UTC)) for i, e in enumerate(events)]
    frame = spark.createDataFrame(rows, "topic string, partition int, offset long, key string, value string, "
                                        "timestamp timestamp")  # fmt: skip
    driver = settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"placement": "driver"})})
    sink = RecordingSink()
    DocumentIngestor(spark, driver, sink, app_id=f"late-{events[0].event_id}").process_batch(frame, 0)
    for e in events:
        assert sink.of("indexed", e.document_id), sink.of("failed", e.document_id)
    return events


def test_uploads_indexed_between_the_catch_up_and_the_switch_are_served_after_it(spark, lake):
    """The race: the stream indexes uploads after the reprocess's catch-up read the scope's
    documents (here at the switch's announcement, the checks done), so into the live table of
    the moment: a new document, and a new version of one the reprocess rebuilt. The switch
    must lose neither: the new version serves the new document (each chunk once) and the new
    version of the other, not the rebuilt old one, which stays superseded in silver."""
    from processing.embedding import get_embedder

    settings, course = lake.settings, lake.course
    db = connect(settings.lancedb)
    before = index_versions.live_version(db, settings)
    size = before.chunk_size - 50  # a new chunking: the rebuilt documents' counts change
    replaced = sorted(lake.pdfs)[0]
    pdf = samples.course_book(2, seed=21, chars=1200, title="Zeolite Catalysis").pdf
    edition = samples.course_book(2, seed=22, chars=1200, title="Quokka Ecology").pdf
    late: list[DocumentUploaded] = []

    def upload_before_the_switch(p: Progress) -> None:
        if p.stage == "switch" and not late:
            late.extend(_index_through_the_stream(spark, settings, course, [
                {"data": pdf, "filename": "late.pdf"},
                {"data": edition, "filename": "v2.pdf", "document_id": replaced, "version": 2, "replaces_version": 1},
            ]))  # fmt: skip

    result = reprocess(spark, settings, Scope("course", course), chunk_size=size, progress=upload_before_the_switch)

    [event, _] = late
    expected = _expected_ids(settings, event.document_id, pdf, before.chunk_size)  # as the live version cut it
    second = _expected_ids(settings, replaced, edition, before.chunk_size, version=2)
    retired = _lance_ids(settings, before.table_name, course)
    assert expected | second <= set(retired)  # the stream wrote them into the table live at that moment
    live = index_versions.live_index(db, settings.lancedb)
    assert live.version == result.version.version != before.version
    new = _lance_ids(settings, live.table_name, course)
    assert not [i for i, n in Counter(new).items() if n > 1], "duplicate chunks in the new version"
    assert expected <= set(new), f"{len(expected - set(new))} of {len(expected)} late chunks missing after the switch"
    rows = open_chunks(db, settings.lancedb, create=False, name=live.table_name).search().where(
        f"document_id = '{replaced}'").limit(None).to_arrow()  # fmt: skip
    assert set(rows["chunk_id"].to_pylist()) == second and set(rows["version"].to_pylist()) == {2}
    handover = result.handover
    assert (handover.documents, handover.chunks, handover.dropped) == (2, len(expected | second), 1)
    embedder = get_embedder(settings.embedding)
    for query, found in (("zeolite catalysis", (event.document_id, 1)), ("quokka ecology", (replaced, 2))):
        hits = hybrid_search(db, course, query, 5, embedder, settings=settings.lancedb)
        assert hits and (hits[0].document_id, hits[0].version) == found, (query, hits)
    current = {r["version"]: r["is_current"] for r in delta_rows(settings, tables.SILVER_DOCUMENTS)
               if r["document_id"] == replaced}  # fmt: skip
    assert current == {1: False, 2: True}
    states = {v.version: v.state for v in index_versions.list_versions(db)}
    assert (states[before.version], states[live.version]) == ("retired", "live")
