"""The whole flow through the API: uploads (good and broken) -> Kafka -> the streaming job
(Spark, Delta, LanceDB) -> status in PostgreSQL and Redis -> search, all real services."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.events import TOPIC_DOCUMENTS_FAILED
from lake.tables import SILVER_CHUNKS
from processing import pdf, samples
from tests.integration.api.api_testkit import create_course, derive, sign_up
from tests.integration.spark_jobs.ingest_testkit import consume_all, delta_rows, lance_rows

pytestmark = pytest.mark.integration

BROKEN = {
    "corrupt.pdf": (samples.corrupt_pdf, "corrupt PDF"),
    "truncated.pdf": (samples.truncated_pdf, "truncated PDF"),
    "encrypted.pdf": (samples.encrypted_pdf, pdf.REASON_ENCRYPTED),
    "scan.pdf": (samples.image_only_pdf, pdf.REASON_NO_TEXT),
}


def _upload(client, account, course_id, name, data):
    response = client.post(
        f"/v1/courses/{course_id}/documents",
        files={"files": (name, data, "application/pdf")},
        headers=account.headers,
    )
    assert response.status_code == 202, response.text
    return response.json()["jobs"][0]


@pytest.fixture(scope="module")
def flow(api_settings, spark, tmp_path_factory):
    from spark_jobs.ingest_documents import FanOutSink, RedisKafkaStatusSink, run_available_now
    from spark_jobs.status_postgres import PostgresStatusSink

    root = tmp_path_factory.mktemp("flow")
    settings = derive(
        api_settings,
        kafka={"topic_prefix": f"f{uuid.uuid4().hex[:8]}."},
        lake={"root": str(root / "lake"), "checkpoint_root": str(root / "checkpoints")},
        lancedb={"uri": str(root / "lancedb")},
        object_store={"local_root": root / "objects"},
    )
    book = samples.course_book(45)
    with TestClient(create_app(settings)) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner, title="Streaming Lakehouses")
        good = {
            "book": _upload(client, owner, course["id"], "book.pdf", book.pdf),
            "note": _upload(
                client, owner, course["id"], "note.pdf", samples.short_pdf("Pelicans audit the lake.", pages=3)
            ),
        }
        broken = {
            name: (_upload(client, owner, course["id"], name, make()), reason)
            for name, (make, reason) in BROKEN.items()
        }
        live, durable = RedisKafkaStatusSink(settings), PostgresStatusSink(settings)
        try:
            run_available_now(settings, spark=spark, sink=FanOutSink(durable, live))
        finally:
            live.close()
            durable.close()
        yield {"settings": settings, "client": client, "owner": owner, "course": course, "book": book,
               "good": good, "broken": broken}  # fmt: skip


def test_good_uploads_are_indexed_with_equal_chunk_counts_in_api_delta_and_lancedb(flow):
    client, owner, settings = flow["client"], flow["owner"], flow["settings"]
    delta = [r for r in delta_rows(settings, SILVER_CHUNKS) if r.get("is_current", True)]
    lance = lance_rows(settings)
    for name, uploaded in flow["good"].items():
        job = client.get(f"/v1/jobs/{uploaded['job_id']}", headers=owner.headers).json()
        assert job["status"] == "succeeded", (name, job)
        document = client.get(
            f"/v1/courses/{flow['course']['id']}/documents/{uploaded['document_id']}", headers=owner.headers
        ).json()
        in_delta = {r["chunk_id"] for r in delta if r["document_id"] == uploaded["document_id"]}
        in_lance = [r["chunk_id"] for r in lance if r["document_id"] == uploaded["document_id"]]
        assert document["status"] == "indexed" and document["chunks"] > 0
        assert document["chunks"] == len(in_delta) == len(in_lance) == len(set(in_lance))
        assert set(in_lance) == in_delta
    book = client.get(
        f"/v1/courses/{flow['course']['id']}/documents/{flow['good']['book']['document_id']}", headers=owner.headers
    ).json()
    assert book["pages"] == 45


def test_broken_uploads_fail_their_own_job_with_the_reason_and_are_dead_lettered(flow):
    client, owner = flow["client"], flow["owner"]
    dead = {e["document_id"]: e["reason"] for e in consume_all(flow["settings"], TOPIC_DOCUMENTS_FAILED)}
    for name, (uploaded, reason) in flow["broken"].items():
        job = client.get(f"/v1/jobs/{uploaded['job_id']}", headers=owner.headers).json()
        assert job["status"] == "failed" and reason in job["error"], (name, job)
        document = client.get(
            f"/v1/courses/{flow['course']['id']}/documents/{uploaded['document_id']}", headers=owner.headers
        ).json()
        assert document["status"] == "failed" and reason in document["error"], (name, document)
        assert reason in dead[uploaded["document_id"]], name


def test_search_returns_the_document_and_page_of_a_known_phrase(flow):
    client, owner = flow["client"], flow["owner"]
    for page, phrase in flow["book"].phrases.items():
        hits = client.get(
            f"/v1/courses/{flow['course']['id']}/search", params={"q": phrase, "k": 5}, headers=owner.headers
        ).json()["hits"]
        assert hits, phrase
        top = hits[0]
        assert top["document_id"] == flow["good"]["book"]["document_id"]
        assert top["page_start"] <= page <= top["page_end"], (page, top["page_start"], top["page_end"])
        assert phrase.split()[1] in top["text"]


def test_search_of_a_course_you_are_not_in_is_404(flow):
    stranger = sign_up(flow["client"])
    response = flow["client"].get(
        f"/v1/courses/{flow['course']['id']}/search", params={"q": "quokka"}, headers=stranger.headers
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_good_jobs_record_their_searchable_moment_before_indexed(flow):
    """The stream's PostgreSQL sink keeps the text-first moment (jobs.searchable_at) that the
    warehouse's upload -> searchable latency reads."""
    from tests.integration.api.api_testkit import shard_conn

    settings, ids = flow["settings"], [uploaded["job_id"] for uploaded in flow["good"].values()]
    rows = []
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            rows += conn.execute("SELECT created_at, started_at, searchable_at, updated_at, status FROM jobs"
                                 " WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()  # fmt: skip
    assert len(rows) == len(ids)
    for created, started, searchable, updated, status in rows:
        assert status == "succeeded" and searchable is not None and started is not None
        assert created <= started <= searchable <= updated
