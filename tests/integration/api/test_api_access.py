"""Course visibility: members only; someone else's course (and what is under it) is 404."""

import uuid

import pytest

from core.ids import uuid7
from tests.integration.api.api_testkit import create_course, sign_up

pytestmark = pytest.mark.integration


def test_a_user_of_another_course_gets_404(client):
    teacher_a = sign_up(client, role="instructor")
    teacher_b = sign_up(client, role="instructor")
    student_b = sign_up(client)
    course_a = create_course(client, teacher_a, title="A")
    course_b = create_course(client, teacher_b, title="B")
    client.post("/v1/courses/join", json={"join_code": course_b["join_code"]}, headers=student_b.headers)

    for outsider in (teacher_b, student_b):
        for path in (
            f"/v1/courses/{course_a['id']}",
            f"/v1/courses/{course_a['id']}/documents",
            f"/v1/courses/{course_a['id']}/documents/{uuid7()}",
        ):
            response = client.get(path, headers=outsider.headers)
            assert response.status_code == 404, path
            assert response.json()["detail"] in ("No course with this id.",)
        patch = client.patch(f"/v1/courses/{course_a['id']}", json={"title": "hijack"}, headers=outsider.headers)
        assert patch.status_code == 404
    # the same answer as for a course that does not exist at all: nothing to tell them apart
    missing = client.get(f"/v1/courses/{uuid.uuid4()}", headers=student_b.headers)
    existing = client.get(f"/v1/courses/{course_a['id']}", headers=student_b.headers)
    assert {k: v for k, v in missing.json().items() if k != "request_id"} == {
        k: v for k, v in existing.json().items() if k != "request_id"
    }
    assert client.get(f"/v1/courses/{course_a['id']}", headers=teacher_a.headers).json()["title"] == "A"


def test_join_code_grants_access_and_students_cannot_edit(client):
    teacher = sign_up(client, role="instructor")
    student = sign_up(client)
    course = create_course(client, teacher)
    assert client.get(f"/v1/courses/{course['id']}", headers=student.headers).status_code == 404
    joined = client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    assert joined.status_code == 200 and joined.json()["my_role"] == "student"
    assert joined.json()["join_code"] is None  # only instructors see the code
    again = client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    assert again.status_code == 200  # idempotent
    seen = client.get(f"/v1/courses/{course['id']}", headers=student.headers)
    assert seen.status_code == 200 and seen.json()["my_role"] == "student"
    edit = client.patch(f"/v1/courses/{course['id']}", json={"title": "mine now"}, headers=student.headers)
    assert edit.status_code == 403


def test_unknown_join_code_is_404_and_students_cannot_create_courses(client):
    student = sign_up(client)
    assert client.post("/v1/courses/join", json={"join_code": "ZZZZZZZZ"}, headers=student.headers).status_code == 404
    created = client.post("/v1/courses", json={"title": "x"}, headers=student.headers)
    assert created.status_code == 403
    assert created.json()["title"] == "Forbidden"


def test_documents_of_a_member_course_are_listed_from_the_course_shard(client):
    teacher = sign_up(client, role="instructor")
    course = create_course(client, teacher)
    services = client.app.state.services
    document_id = str(uuid7())
    job = services.jobs.new(kind="ingest_document", user_id=teacher.user_id, course_id=course["id"])
    services.documents.create_version(
        {
            "id": document_id,
            "course_id": course["id"],
            "version": 1,
            "filename": "week1.pdf",
            "sha256": "a" * 64,
            "size_bytes": 1234,
            "object_key": f"raw/uploads/{course['id']}/{document_id}.pdf",
            "uploaded_by": teacher.user_id,
        },
        job=job,
    )
    listed = client.get(f"/v1/courses/{course['id']}/documents", headers=teacher.headers)
    assert [d["id"] for d in listed.json()["items"]] == [document_id]
    one = client.get(f"/v1/courses/{course['id']}/documents/{document_id}", headers=teacher.headers)
    assert one.status_code == 200 and one.json()["status"] == "queued"
    # a status change by the ingestion stream's sink invalidates the API's cached metadata
    from core.events import DocumentUploaded
    from spark_jobs.status_postgres import PostgresStatusSink

    sink = PostgresStatusSink(client.app.state.settings)
    event = DocumentUploaded(
        event_id=str(uuid7()), occurred_at="2026-12-01T00:00:00Z", document_id=document_id, course_id=course["id"],
        version=1, job_id=job.job_id, uploaded_by=teacher.user_id, object_uri="file:///x", filename="week1.pdf",
        size_bytes=1234, sha256="a" * 64,
    )  # fmt: skip
    try:
        sink.indexed(event, pages=3, chunks=9, seconds=1.0)
    finally:
        sink.close()
    again = client.get(f"/v1/courses/{course['id']}/documents/{document_id}", headers=teacher.headers).json()
    assert (again["status"], again["pages"]) == ("indexed", 3)
    assert (
        client.get(f"/v1/courses/{course['id']}/documents", headers=teacher.headers).json()["items"][0]["chunks"] == 9
    )
