"""Uploads through the API against the real shards, Redis, Kafka and the object store."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.sharding import shard_for
from processing.samples import not_a_pdf, short_pdf
from streaming.kafka import json_consumer
from tests.integration.api.api_testkit import create_course, derive, row_counts, shard_conn, sign_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upload_settings(api_settings, tmp_path_factory):
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return derive(
        api_settings,
        kafka={"topic_prefix": prefix},
        object_store={"local_root": tmp_path_factory.mktemp("objects")},
    )


@pytest.fixture(scope="module")
def upload_client(upload_settings):
    with TestClient(create_app(upload_settings)) as client:
        yield client


def uploaded_events(settings, document_ids: set[str], *, expected: int, timeout_s: float = 30.0):
    """The upload events of ``document_ids``, polled until ``expected`` of them have arrived."""
    consumer = json_consumer(settings.kafka, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), group_id=None)
    events: list[DocumentUploaded] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(events) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for message in records:
                    event = DocumentUploaded.model_validate(message.value)
                    if event.document_id in document_ids:
                        events.append(event)
    finally:
        consumer.close()
    assert len(events) == expected, f"{len(events)} of {expected} events arrived in {timeout_s} s"
    return events


def upload(client, account, course_id, *files, replace=False):
    return client.post(
        f"/v1/courses/{course_id}/documents",
        params={"replace": str(replace).lower()},
        files=[("files", (name, data, "application/pdf")) for name, data in files],
        headers=account.headers,
    )


def test_upload_answers_202_stores_records_and_queues(upload_client, upload_settings):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    pdf = short_pdf("Eigenvalues of a symmetric matrix are real.", pages=2)

    response = upload(upload_client, owner, course["id"], ("notes.pdf", pdf))

    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    assert job["duplicate"] is False and job["version"] == 1
    assert response.headers["Location"] == f"/v1/jobs/{job['job_id']}" == job["location"]
    shard = shard_for(course["id"], upload_settings.postgres.shards)
    with shard_conn(upload_settings, shard) as conn:
        row = conn.execute(
            "SELECT sha256, size_bytes, status, object_key FROM documents WHERE id = %s", (job["document_id"],)
        ).fetchone()
    assert row[0] == hashlib.sha256(pdf).hexdigest() and row[1] == len(pdf) and row[2] == "queued"
    stored = upload_settings.object_store.local_root / row[3]
    assert stored.read_bytes() == pdf
    [event] = uploaded_events(upload_settings, {job["document_id"]}, expected=1)
    assert event.sha256 == row[0] and event.job_id == job["job_id"] and event.object_uri == stored.as_uri()
    status = upload_client.get(job["location"], headers=owner.headers)
    assert status.status_code == 200 and status.json()["status"] == "queued"


def test_same_bytes_twice_make_one_document_unless_replace(upload_client, upload_settings):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    pdf = short_pdf(f"Orthogonal projections {uuid.uuid4()}", pages=1)

    first = upload(upload_client, owner, course["id"], ("a.pdf", pdf)).json()["jobs"][0]
    again = upload(upload_client, owner, course["id"], ("a-copy.pdf", pdf))
    assert again.status_code == 202
    [dup] = again.json()["jobs"]
    assert dup["duplicate"] is True and dup["document_id"] == first["document_id"] and dup["job_id"] is None

    replaced = upload(upload_client, owner, course["id"], ("a.pdf", pdf), replace=True).json()["jobs"][0]
    assert replaced["document_id"] == first["document_id"] and replaced["version"] == 2
    events = uploaded_events(upload_settings, {first["document_id"]}, expected=2)
    assert sorted((e.version, e.replaces_version) for e in events) == [(1, None), (2, 1)]


def test_several_files_in_one_request_make_one_job_each(upload_client):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    files = [(f"part{i}.pdf", short_pdf(f"Chapter {i} {uuid.uuid4()}", pages=1)) for i in range(3)]
    response = upload(upload_client, owner, course["id"], *files)
    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert len({j["job_id"] for j in jobs}) == 3 and not any(j["duplicate"] for j in jobs)


def test_non_pdf_is_refused_and_nothing_is_written(upload_client, upload_settings):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    before = row_counts(upload_settings)
    objects_before = sorted(upload_settings.object_store.local_root.rglob("*"))

    response = upload(upload_client, owner, course["id"], ("good.pdf", short_pdf("fine")), ("evil.pdf", not_a_pdf()))

    assert response.status_code == 415
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "evil.pdf" in body["detail"] and "%PDF-" in body["detail"]
    assert row_counts(upload_settings) == before
    assert sorted(upload_settings.object_store.local_root.rglob("*")) == objects_before


def test_filenames_are_normalised_once_and_the_original_kept_as_data(upload_client, upload_settings):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    sent = ["../../etc/passwd.pdf", "evil\u202egpj.pdf", "nul\x00byte.pdf", "x" * 2000 + ".pdf"]
    # Built by hand: a client library would percent-encode the NUL; an attacker sends it raw.
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/pdf\r\n\r\n".encode()
            + short_pdf(f"file {i} {uuid.uuid4()}")
            + b"\r\n"
            for i, name in enumerate(sent)
        )
        + f"--{boundary}--\r\n".encode()
    )
    objects_before = len([p for p in upload_settings.object_store.local_root.rglob("*") if p.is_file()])
    response = upload_client.post(
        f"/v1/courses/{course['id']}/documents",
        content=body,
        headers={**owner.headers, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 202, response.text
    shown = [job["filename"] for job in response.json()["jobs"]]
    assert shown[:3] == ["passwd.pdf", "evilgpj.pdf", "nulbyte.pdf"]
    assert len(shown[3]) == 255 and shown[3].endswith(".pdf")
    ids = {job["document_id"]: job["filename"] for job in response.json()["jobs"]}
    with shard_conn(upload_settings, shard_for(course["id"], upload_settings.postgres.shards)) as conn:
        rows = conn.execute(
            "SELECT id::text, filename, original_filename, object_key FROM documents WHERE course_id = %s",
            (course["id"],),
        ).fetchall()
    assert {r[0]: r[1] for r in rows} == ids
    assert sorted(r[2] for r in rows)[0] == "../../etc/passwd.pdf"  # the original, only as data
    assert all(r[3].startswith(f"raw/uploads/{course['id']}/") for r in rows)  # keys never use the name
    events = uploaded_events(upload_settings, set(ids), expected=4)
    assert {e.document_id: e.filename for e in events} == ids  # the event carries the same display name
    objects_after = len([p for p in upload_settings.object_store.local_root.rglob("*") if p.is_file()])
    assert objects_after == objects_before + 4  # one object per row, no orphan


def test_a_pdf_over_the_size_limit_is_refused_and_nothing_is_stored(upload_settings):
    limited = derive(upload_settings, api={"max_upload_bytes": 2048})
    with TestClient(create_app(limited)) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
        before = row_counts(limited)
        objects_before = sorted(limited.object_store.local_root.rglob("*"))
        big = short_pdf("big " * 2000, pages=3)
        assert len(big) > 2048
        response = upload(client, owner, course["id"], ("big.pdf", big))
        assert response.status_code in (413, 415), response.text
        assert "2048" in response.json()["detail"]
        assert row_counts(limited) == before
        assert sorted(limited.object_store.local_root.rglob("*")) == objects_before


def test_upload_to_someone_elses_course_is_404(upload_client):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    stranger = sign_up(upload_client)
    response = upload(upload_client, stranger, course["id"], ("x.pdf", short_pdf("secret")))
    assert response.status_code == 404


def test_upload_without_files_is_a_clear_422(upload_client):
    owner = sign_up(upload_client, role="instructor")
    course = create_course(upload_client, owner)
    response = upload_client.post(f"/v1/courses/{course['id']}/documents", headers=owner.headers, data={"x": "1"})
    assert response.status_code == 422
    assert any("files" in json.dumps(error["loc"]) for error in response.json()["errors"])


def test_kafka_down_fails_the_job_with_a_reason_and_answers_503(api_settings, tmp_path):
    broken = derive(
        api_settings,
        kafka={"bootstrap_servers": "127.0.0.1:1", "topic_prefix": "never."},
        object_store={"local_root": tmp_path},
    )
    with TestClient(create_app(broken)) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
        response = upload(client, owner, course["id"], ("a.pdf", short_pdf("queued never")))
        assert response.status_code == 503
        listed = client.get(f"/v1/courses/{course['id']}/documents", headers=owner.headers).json()["items"]
        assert [d["status"] for d in listed] == ["failed"]
        assert "could not queue" in listed[0]["error"]
        job_status = client.get(f"/v1/jobs/{listed[0]['id']}", headers=owner.headers)
        assert job_status.status_code == 404  # (a document id is not a job id)

    # The broker is back: the same bytes are accepted again as a new version, not a duplicate.
    working = derive(broken, kafka={"bootstrap_servers": api_settings.kafka.servers, "topic_prefix": "again."})
    with TestClient(create_app(working)) as client:
        again = upload(client, owner, course["id"], ("a.pdf", short_pdf("queued never")))
        assert again.status_code == 202, again.text
        [job] = again.json()["jobs"]
        assert (job["document_id"], job["version"], job["duplicate"]) == (listed[0]["id"], 2, False)
        [latest] = client.get(f"/v1/courses/{course['id']}/documents", headers=owner.headers).json()["items"]
        assert (latest["version"], latest["status"], latest["error"]) == (2, "queued", None)
