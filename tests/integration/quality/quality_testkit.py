"""A small, consistent test lake for the quality suites, built without Spark.

Silver rows come from ``lake.tables``' Arrow schemas (written with delta-rs: the same schema the
stream's Spark writer uses), gold rows through ``lake.gold.replace_rows``, LanceDB rows through
``lake.vectors`` and PostgreSQL's document rows through ``records`` (course, version, indexed).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.ids import chunk_id, page_id, uuid7
from core.settings import Settings
from lake import gold, tables
from processing.embedding import DIMENSION

PAGES = 3
CHUNKS = {0: 4, 1: 2}  # chunks per test document
RUN_AT = datetime.now(UTC).replace(microsecond=0)  # fresh: the freshness suite checks it
GENERATOR = "offline-test"


@dataclass
class TestLake:
    settings: Settings
    course_id: str
    documents: list[str]
    chunk_ids: dict[str, list[str]] = field(default_factory=dict)


def write_delta(settings: Settings, name: str, rows: list[dict[str, Any]], *, overwrite: bool = False) -> None:
    from deltalake import write_deltalake

    path, options = tables.delta_location(settings, name)
    data = tables.arrow_rows(name, rows)
    if overwrite:
        write_deltalake(path, data, mode="overwrite", storage_options=options)
    else:
        write_deltalake(path, data, mode="append", storage_options=options)


def _document(document_id: str, course_id: str, index: int) -> dict[str, Any]:
    return {
        "document_id": document_id, "version": 1, "course_id": course_id, "job_id": str(uuid7()),
        "uploaded_by": str(uuid7()), "filename": f"doc{index}.pdf",
        "object_uri": f"s3://raw/uploads/{course_id}/{document_id}/v1.pdf",
        "sha256": hashlib.sha256(document_id.encode()).hexdigest(), "size_bytes": 1000 + index,
        "uploaded_at": RUN_AT, "replaces_version": None, "status": "indexed", "reason": None, "pages": PAGES,
        "chunks": CHUNKS[index], "is_current": True, "source_topic": "document.uploaded", "source_partition": 0,
        "source_offset": index,
    }  # fmt: skip


def chunk(document_id: str, course_id: str, index: int, *, page: int = 1, chunk_key: str | None = None) -> dict:
    return {
        "chunk_id": chunk_key or chunk_id(document_id, 1, index), "document_id": document_id, "version": 1,
        "course_id": course_id, "chunk_index": index, "page_start": page, "page_end": page, "char_start": 0,
        "text": f"chunk {index} of {document_id}", "embedding": [1.0] + [0.0] * (DIMENSION - 1),
    }  # fmt: skip


def gold_rows(settings: Settings, document_id: str, course_id: str, chunk_ids: list[str]) -> None:
    key = {"document_id": document_id, "version": 1, "course_id": course_id, "generator": "offline",
           "generator_version": GENERATOR, "run_at": RUN_AT}  # fmt: skip
    cited = {"text": "A sentence.", "pages": [1, PAGES]}
    notes_id = str(uuid.uuid4())
    payload = {
        "notes_id": notes_id, "document_id": document_id, "version": 1, "course_id": course_id,
        "generator": "offline", "generator_version": GENERATOR, "overview": [cited],
        "sections": [{"section": {"section_id": "s1", "title": "One", "page_start": 1, "page_end": PAGES},
                      "sentences": [cited]}],
        "key_terms": [{"term": "Term", "definition": cited}],
        "quality": {"citation_precision": 1.0, "section_coverage": 1.0, "sections": 1, "sections_covered": 1,
                    "flagged": False, "reasons": []},
    }  # fmt: skip
    notes = {**key, "notes_id": notes_id, "sections": 1, "key_terms": 1, "citation_precision": 1.0,
             "section_coverage": 1.0, "flagged": False, "payload": json.dumps(payload)}  # fmt: skip
    quiz_id = str(uuid.uuid4())
    quiz = {**key, "quiz_id": quiz_id, "items": 2, "answerability": 1.0, "duplicate_rate": 0.0, "flagged": False,
            "distractor_similarity_min": 0.2, "distractor_similarity_max": 0.5, "reasons": "[]"}  # fmt: skip
    options = json.dumps([{"option_id": f"o{i}", "text": f"option {i}"} for i in range(4)])
    items = [
        {**key, "item_id": str(uuid.uuid4()), "quiz_id": quiz_id, "position": i, "kind": "mcq",
         "question": f"Question {i}?", "options": options, "correct_option_id": "o1", "explanation": "Because.",
         "source_chunk_id": chunk_ids[i], "page": 1, "section_id": "s1", "difficulty": "easy", "fact": "f"}
        for i in range(2)
    ]  # fmt: skip
    cards = [
        {**key, "card_id": str(uuid.uuid4()), "front": "Term", "back": "Definition", "page": 2, "source": "key_term"}
    ]
    where: dict[str, Any] = {"document_id": document_id, "version": 1, "generator_version": GENERATOR}
    gold.replace_rows(settings, gold.GOLD_NOTES, [notes], **where)
    gold.replace_rows(settings, gold.GOLD_QUIZZES, [quiz], **where)
    gold.replace_rows(settings, gold.GOLD_QUIZ_ITEMS, items, **where)
    gold.replace_rows(settings, gold.GOLD_FLASHCARDS, cards, **where)


def _postgres(settings: Settings, course_id: str, documents: list[str]) -> None:
    from core.db import ShardedPostgres
    from core.jobs import JobState
    from records.documents import DocumentRecords

    db = ShardedPostgres(settings.postgres)
    try:
        records = DocumentRecords(db)
        for index, document_id in enumerate(documents):
            now = time.time()
            job = JobState(job_id=str(uuid7()), kind="ingest", user_id=str(uuid7()), course_id=course_id,
                           document_id=document_id, created_at=now, updated_at=now)  # fmt: skip
            records.insert_version(
                {"id": document_id, "course_id": course_id, "version": 1, "filename": f"doc{index}.pdf",
                 "original_filename": f"doc{index}.pdf", "sha256": hashlib.sha256(document_id.encode()).hexdigest(),
                 "size_bytes": 1000, "object_key": f"raw/{document_id}.pdf", "uploaded_by": job.user_id},
                job=job,
            )  # fmt: skip
            for status in ("processing", "indexed"):
                records.transition(course_id=course_id, document_id=document_id, version=1, job_id=job.job_id,
                                   status=status, at=time.time(), pages=PAGES, chunks=CHUNKS[index])  # fmt: skip
    finally:
        db.close()


def build(settings: Settings) -> TestLake:
    """Bronze, silver, gold, LanceDB and PostgreSQL rows of two indexed documents, consistent."""
    from core.db import ShardedPostgres
    from lake import vectors
    from records.courses import CourseRecords

    db = ShardedPostgres(settings.postgres)
    try:
        course_id = str(CourseRecords(db).create(owner_id=uuid7(), title="Quality", description="test")["id"])
    finally:
        db.close()
    documents = [str(uuid7()), str(uuid7())]
    lake = TestLake(settings, course_id, documents)
    events = [{"topic": "document.uploaded", "partition": 0, "offset": i, "key": d,
               "value": json.dumps({"document_id": d}), "kafka_timestamp": RUN_AT, "batch_id": 0}
              for i, d in enumerate(documents)]  # fmt: skip
    write_delta(settings, tables.BRONZE_DOCUMENT_EVENTS, events)
    write_delta(settings, tables.SILVER_DOCUMENTS, [_document(d, course_id, i) for i, d in enumerate(documents)])
    pages = [{"page_id": page_id(d, 1, p), "document_id": d, "version": 1, "course_id": course_id,
              "page_number": p, "text": f"page {p}", "char_count": len(f"page {p}")}
             for d in documents for p in range(1, PAGES + 1)]  # fmt: skip
    write_delta(settings, tables.SILVER_PAGES, pages)
    chunks = [chunk(d, course_id, i, page=1 + i % PAGES) for n, d in enumerate(documents) for i in range(CHUNKS[n])]
    write_delta(settings, tables.SILVER_CHUNKS, chunks)
    lance = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    vectors.upsert_chunks(lance, vectors.from_silver_chunks(tables.arrow_rows(tables.SILVER_CHUNKS, chunks)))
    for d in documents:
        lake.chunk_ids[d] = [c["chunk_id"] for c in chunks if c["document_id"] == d]
    gold_rows(settings, documents[0], course_id, lake.chunk_ids[documents[0]])
    _postgres(settings, course_id, documents)
    return lake
