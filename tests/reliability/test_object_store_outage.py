"""The object store (a private MinIO in S3 mode; the shared one is never stopped) down during an
upload and during extraction.

Upload: the API answers 503 with ``Retry-After``, writes no row, no job and no object; once the
store is back the same file is accepted once. Extraction: the store goes down after the uploads
and is started again when the stream's first read fails (while it retries with backoff); every
document is indexed exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter

from lake.tables import SILVER_CHUNKS, SILVER_DOCUMENTS
from processing.samples import short_pdf
from tests.integration.api.api_testkit import create_course, row_counts, sign_up
from tests.integration.spark_jobs.ingest_testkit import (
    delta_rows,
    expected_chunk_ids,
    isolated_settings,
    lance_rows,
    upload,
)
from tests.reliability.faultkit import derive, doubled, private_service


def _objects(settings) -> list[str]:
    from lake.store import s3_client

    listed = s3_client(settings.object_store).list_objects_v2(Bucket=settings.object_store.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


class _RestartOnFirstRetry(logging.Handler):
    """Starts the stopped store again (on a thread) when the first read retry is logged."""

    def __init__(self, stack) -> None:
        super().__init__(logging.WARNING)
        self.stack, self.retries, self.thread = stack, 0, None

    def emit(self, record: logging.LogRecord) -> None:
        if "again in" not in record.getMessage():
            return
        self.retries += 1
        if self.thread is None:
            self.thread = threading.Thread(target=self.stack.up, name="minio-restart")
            self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=60)


def test_an_upload_while_the_object_store_is_down_is_refused_whole(api_settings, make_client, tmp_path, report_counts):
    with private_service(api_settings, "objectstore", tmp_path / "minio-stack") as (minio, store_settings):
        settings = derive(store_settings, kafka={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."})
        client = make_client(settings)
        teacher = sign_up(client, role="instructor")
        course = create_course(client, teacher, title="Store outages")
        files = [
            ("files", ("notes.pdf", short_pdf("The quokka proof needs a working object store."), "application/pdf"))
        ]
        first = client.post(f"/v1/courses/{course['id']}/documents", files=files, headers=teacher.headers)
        assert first.status_code == 202, first.text
        rows_before, objects_before = row_counts(settings), _objects(settings)

        assert minio.stop("objectstore")
        started = time.monotonic()
        other = [("files", ("late.pdf", short_pdf("Uploaded while the store was down."), "application/pdf"))]
        refused = client.post(f"/v1/courses/{course['id']}/documents", files=other, headers=teacher.headers)
        refused_seconds = time.monotonic() - started
        rows_during = row_counts(settings)

        minio.up()
        again = client.post(f"/v1/courses/{course['id']}/documents", files=other, headers=teacher.headers)
        objects_after = _objects(settings)
        listed = client.get(f"/v1/courses/{course['id']}/documents", headers=teacher.headers).json()["items"]
    report_counts(
        "object store down during an upload",
        [
            ("upload while down: status", 503, refused.status_code),
            ("  Retry-After present", True, bool(refused.headers.get("Retry-After"))),
            ("  seconds to answer", "<=15", round(refused_seconds, 1)),
            ("  document rows written", 0, rows_during["documents"] - rows_before["documents"]),
            ("  job rows written", 0, rows_during["jobs"] - rows_before["jobs"]),
            ("same upload once the store is back", 202, again.status_code),
            ("objects in the bucket", len(objects_before) + 1, len(objects_after)),
            ("documents listed", 2, len(listed)),
        ],
    )
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json" and refused.headers.get("Retry-After")
    assert "store" in refused.json()["detail"]
    assert rows_during == rows_before, "a refused upload wrote rows"
    assert again.status_code == 202, again.text
    assert len(objects_after) == len(objects_before) + 1 and not doubled(objects_after)
    assert sorted(d["filename"] for d in listed) == ["late.pdf", "notes.pdf"]


def test_extraction_rides_out_an_object_store_restart_and_indexes_each_document_once(
    spark, stack, tmp_path, run_id, report_counts
):
    from core.settings import Settings
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    base = Settings(environment="test")
    with private_service(base, "objectstore", tmp_path / "minio-stack") as (minio, store_settings):
        settings = isolated_settings(
            tmp_path,
            run_id,
            object_store=store_settings.object_store,
            embedding={"placement": "driver"},
            # five reads 1 s, 2 s, 2 s, 2 s apart: a store down for ~4 s is ridden out
            ingest={"read_attempts": 5, "read_backoff_s": 1.0, "read_backoff_max_s": 2.0},
        )
        producer = json_producer(settings.kafka)
        pdfs = [short_pdf(f"The wombat axiom, part {i}, survives a store restart.", pages=2) for i in range(3)]
        uploads = [
            upload(settings, producer, data, course_id=f"course-s3-{run_id}", filename=f"w{i}.pdf")
            for i, data in enumerate(pdfs)
        ]
        producer.close()
        expected = {
            u.document_id: expected_chunk_ids(settings, data, document_id=u.document_id)
            for u, data in zip(uploads, pdfs, strict=True)
        }

        assert minio.stop("objectstore")
        restart = _RestartOnFirstRetry(minio)
        logging.getLogger("lake.raw_uploads").addHandler(restart)
        try:
            stats = run_available_now(settings, spark=spark)
        finally:
            logging.getLogger("lake.raw_uploads").removeHandler(restart)
            restart.join()
        retried_reads = restart.retries
    documents = [r for r in delta_rows(settings, SILVER_DOCUMENTS) if r["document_id"] in expected]
    silver = [r["chunk_id"] for r in delta_rows(settings, SILVER_CHUNKS) if r["document_id"] in expected]
    lance = [r["chunk_id"] for r in lance_rows(settings) if r["document_id"] in expected]
    all_expected = set().union(*expected.values())
    report_counts(
        "object store down during extraction (back after ~4 s)",
        [
            ("documents uploaded", 3, len(uploads)),
            ("reads retried while the store was down", ">=1", retried_reads),
            ("documents indexed", 3, sum(s.indexed for s in stats)),
            ("documents failed", 0, sum(s.failed for s in stats)),
            ("silver/documents rows", 3, len(documents)),
            ("silver chunks", len(all_expected), len(silver)),
            ("LanceDB chunks", len(all_expected), len(lance)),
            ("chunks doubled", 0, len(doubled(silver)) + len(doubled(lance))),
        ],
    )
    assert retried_reads >= 1, "the store was back before the stream read: nothing was tested"
    assert Counter(r["status"] for r in documents) == {"indexed": 3}, [r["reason"] for r in documents]
    assert sorted(silver) == sorted(lance) == sorted(all_expected)
