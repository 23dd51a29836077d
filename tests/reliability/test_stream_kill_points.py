"""The ingestion stream SIGKILLed at each point of one micro-batch, then restarted.

One batch of two uploads is replayed five times on the same checkpoint: four runs of the real
job (``python -m spark_jobs.ingest_documents``) each kill themselves at the next crash point of
``core/faults.py`` (after bronze, after silver, after LanceDB, before the commit),
and a last, clean run finishes it. Expected chunk ids come from the PDFs, not from the job:
a lost chunk, a doubled chunk, a doubled bronze row or a doubled outcome event fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from core.events import TOPIC_DOCUMENTS_INDEXED, TOPIC_DOCUMENTS_UPLOADED
from core.faults import KILL_AT_ENV, STREAM_CRASH_POINTS
from core.settings import PROJECT_ROOT
from lake.tables import BRONZE_DOCUMENT_EVENTS, SILVER_CHUNKS, SILVER_DOCUMENTS
from processing import samples
from tests.integration.spark_jobs.ingest_testkit import (
    consume_all,
    delta_rows,
    expected_chunk_ids,
    isolated_env,
    isolated_settings,
    lance_rows,
    upload,
)
from tests.reliability.faultkit import doubled


def _rows(settings, name: str) -> list[dict]:
    try:
        return delta_rows(settings, name)
    except Exception:  # the table does not exist yet (killed before its first write)
        return []


def _lance(settings) -> list[dict]:
    try:
        return lance_rows(settings)
    except Exception:
        return []


def _committed(settings) -> list[int]:
    from spark_jobs.ingest_documents import checkpoint_location

    commits = Path(checkpoint_location(settings)) / "commits"
    return sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit()) if commits.exists() else []


def test_stream_killed_at_each_point_of_a_batch_loses_and_doubles_nothing(
    spark, stack, api_settings, tmp_path, run_id, report_counts
):
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import ensure_topics, json_producer

    # Embedding on the driver: no Python-worker warm-up in each of the five starts.
    settings = isolated_settings(tmp_path, run_id, embedding={"placement": "driver"})
    ensure_topics(settings.kafka, [settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED)], partitions=1)
    producer = json_producer(settings.kafka)
    course = f"course-kill-{run_id}"
    pdfs = {
        "book.pdf": samples.course_book(5).pdf,
        "note.pdf": samples.short_pdf("The numbat lemma survives every crash of the stream.", pages=3),
    }
    uploads = {name: upload(settings, producer, data, course_id=course, filename=name) for name, data in pdfs.items()}
    producer.close()
    expected = {
        u.document_id: expected_chunk_ids(settings, pdfs[n], document_id=u.document_id) for n, u in uploads.items()
    }
    all_expected = set().union(*expected.values())

    env = {**os.environ, **isolated_env(settings), "PYTHONPATH": str(PROJECT_ROOT)}
    env.update({"LAKEHOUSE_EMBEDDING__PLACEMENT": "driver", "LAKEHOUSE_INGEST__METRICS_PORT": "0"})
    # The job's PostgreSQL status sink writes to this session's private shard databases (migrated
    # from the migrations in this tree), not to the shared ones.
    env["LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX"] = api_settings.postgres.shard_db_prefix
    env["LAKEHOUSE_POSTGRES__SHARDS"] = str(api_settings.postgres.shards)
    rows: list[tuple[str, object, object]] = []
    for point in STREAM_CRASH_POINTS:
        log_path = tmp_path / f"job-{point}.log"
        with log_path.open("w") as log:
            job = subprocess.Popen(
                [sys.executable, "-m", "spark_jobs.ingest_documents", "--available-now"],
                cwd=PROJECT_ROOT, env={**env, KILL_AT_ENV: f"{point}@0"}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                code = job.wait(timeout=240)
            finally:
                if job.poll() is None:
                    os.killpg(job.pid, 9)
                    job.wait()
        assert code == -9, f"the job was not killed at {point} (exit {code}):\n{log_path.read_text()[-3000:]}"
        assert _committed(settings) == [], f"batch 0 must not be committed when killed at {point}"
        silver = [r["chunk_id"] for r in _rows(settings, SILVER_CHUNKS)]
        lance = [r["chunk_id"] for r in _lance(settings)]
        finals = [r for r in _rows(settings, SILVER_DOCUMENTS) if r["status"] == "indexed"]
        rows.append((f"{point}: bronze rows", 2, len(_rows(settings, BRONZE_DOCUMENT_EVENTS))))
        rows.append((f"{point}: silver chunks (no dup)", f"<={len(all_expected)}", len(silver)))
        rows.append((f"{point}: LanceDB chunks (no dup)", f"<={len(all_expected)}", len(lance)))
        rows.append((f"{point}: documents indexed", "0..2", len(finals)))
        assert not doubled(silver) and not doubled(lance), f"doubled chunks after a kill at {point}"
        assert set(silver) <= all_expected and set(lance) <= all_expected
        if point == "after_silver":
            assert silver, "the kill after silver found no silver chunks"
        if point == "before_commit":
            assert len(finals) == 2, "both documents were final before the commit"

    stats = run_available_now(settings, spark=spark)  # the clean restart replays batch 0 once more
    assert [s.batch_id for s in stats] == [0]
    assert _committed(settings) == [0]

    bronze = _rows(settings, BRONZE_DOCUMENT_EVENTS)
    silver = [r["chunk_id"] for r in _rows(settings, SILVER_CHUNKS)]
    lance = [r["chunk_id"] for r in _lance(settings)]
    documents = _rows(settings, SILVER_DOCUMENTS)
    indexed_events = [e for e in consume_all(settings, TOPIC_DOCUMENTS_INDEXED) if e["document_id"] in expected]
    distinct_events = Counter(e["document_id"] for e in {e["event_id"]: e for e in indexed_events}.values())
    rows += [
        ("final: bronze rows (offsets 0, 1)", 2, len(bronze)),
        ("final: silver chunks", len(all_expected), len(silver)),
        ("final: LanceDB chunks", len(all_expected), len(lance)),
        ("final: silver/documents rows", 2, len(documents)),
        ("final: distinct indexed event ids", 2, sum(distinct_events.values())),
        ("final: indexed messages (replays)", ">=2", len(indexed_events)),
        ("final: replayed docs skipped", 2, stats[0].skipped),
    ]
    report_counts("stream SIGKILL at 4 points of batch 0", rows)
    assert sorted(r["offset"] for r in bronze) == [0, 1], "bronze holds each Kafka row exactly once"
    assert doubled(silver) == [] and doubled(lance) == []
    for document_id, ids in expected.items():
        assert {r["chunk_id"] for r in _rows(settings, SILVER_CHUNKS) if r["document_id"] == document_id} == ids
        assert {r["chunk_id"] for r in _lance(settings) if r["document_id"] == document_id} == ids
    assert sorted((r["document_id"], r["status"], r["chunks"]) for r in documents) == sorted(
        (d, "indexed", len(ids)) for d, ids in expected.items()
    )
    assert distinct_events == dict.fromkeys(expected, 1), "one outcome event id per document, however many replays"
    assert stats[0].skipped == 2 and stats[0].indexed == 0, "final documents are re-reported, not redone"
