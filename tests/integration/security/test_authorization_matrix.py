"""Authorization matrix: every role x every course-scoped endpoint x both courses, against the
real API. A course is invisible (404, the same answer as a course that does not exist) to
anyone who is not its member or an admin; anonymous callers get 401; students read and study
and upload but do not edit the course (403)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.security.conftest import Course, World

# The relation of a role to the course of a cell.
ANON, OUTSIDER, STUDENT, INSTRUCTOR, ADMIN = "anonymous", "outsider", "student", "instructor", "admin"
RELATION = {  # role -> (relation to the "own" course, relation to the "other" course)
    "anonymous": (ANON, ANON),
    "student_member": (STUDENT, OUTSIDER),
    "student_nonmember": (OUTSIDER, STUDENT),
    "instructor_owner": (INSTRUCTOR, OUTSIDER),
    "instructor_other": (OUTSIDER, INSTRUCTOR),
    "admin": (ADMIN, ADMIN),
}
Request = Callable[[Course], tuple[str, str, dict[str, Any]]]


def _upload(course: Course) -> tuple[str, str, dict[str, Any]]:
    from processing.samples import short_pdf

    files = [("files", ("matrix.pdf", short_pdf(f"matrix {course.id}", pages=1), "application/pdf"))]
    return "POST", f"/v1/courses/{course.id}/documents", {"files": files}


# endpoint -> (request, expected status by relation: anonymous, outsider, student, instructor, admin)
ENDPOINTS: dict[str, tuple[Request, tuple[int, int, int, int, int]]] = {
    "GET course": (lambda c: ("GET", f"/v1/courses/{c.id}", {}), (401, 404, 200, 200, 200)),
    "PATCH course": (lambda c: ("PATCH", f"/v1/courses/{c.id}", {"json": {"description": "edited"}}),
                     (401, 404, 403, 200, 200)),
    "GET documents": (lambda c: ("GET", f"/v1/courses/{c.id}/documents", {}), (401, 404, 200, 200, 200)),
    "GET document": (lambda c: ("GET", f"/v1/courses/{c.id}/documents/{c.document_id}", {}),
                     (401, 404, 200, 200, 200)),
    "POST documents (upload)": (_upload, (401, 404, 202, 202, 202)),  # students upload (design brief)
    "GET job": (lambda c: ("GET", f"/v1/jobs/{c.job_id}", {}), (401, 404, 404, 200, 200)),
    "GET notes": (lambda c: ("GET", f"/v1/documents/{c.document_id}/notes", {}), (401, 404, 200, 200, 200)),
    "POST notes": (lambda c: ("POST", f"/v1/documents/{c.document_id}/notes", {}), (401, 404, 200, 200, 200)),
    "GET quiz": (lambda c: ("GET", f"/v1/documents/{c.document_id}/quiz", {}), (401, 404, 200, 200, 200)),
    "POST quiz": (lambda c: ("POST", f"/v1/documents/{c.document_id}/quiz", {}), (401, 404, 200, 200, 200)),
    "POST attempt": (lambda c: ("POST", f"/v1/quizzes/{c.quiz_id}/attempts",
                                {"json": {"answers": [{"item_id": c.item_id, "option_id": c.option_id}]}}),
                     (401, 404, 201, 201, 201)),
    "GET due cards": (lambda c: ("GET", f"/v1/courses/{c.id}/reviews/due", {}), (401, 404, 200, 200, 200)),
    "POST card review": (lambda c: ("POST", f"/v1/cards/{c.card_id}/reviews",
                                    {"json": {"rating": "good", "review_id": str(uuid.uuid4())}}),
                         (401, 404, 201, 201, 201)),
    "GET cards.apkg": (lambda c: ("GET", f"/v1/courses/{c.id}/cards.apkg", {}), (401, 404, 200, 200, 200)),
}  # fmt: skip
RELATIONS = (ANON, OUTSIDER, STUDENT, INSTRUCTOR, ADMIN)


def test_every_role_gets_the_expected_status_on_every_endpoint_of_both_courses(world: World) -> None:
    cells, wrong = 0, []
    for endpoint, (request, expected_by_relation) in ENDPOINTS.items():
        expected = dict(zip(RELATIONS, expected_by_relation, strict=True))
        for role, account in world.accounts.items():
            for course, relation in zip((world.own, world.other), RELATION[role], strict=True):
                method, path, kwargs = request(course)
                headers = account.headers if account else {}
                response = world.client.request(method, path, headers=headers, **kwargs)
                cells += 1
                if response.status_code != expected[relation]:
                    where = "own" if course is world.own else "other"
                    wrong.append(f"{endpoint} as {role} on the {where} course: {response.status_code} "
                                 f"(expected {expected[relation]}) {response.text[:160]}")  # fmt: skip
                assert response.status_code < 500, (endpoint, role, response.text)
    print(f"authorization matrix: {cells} cells checked ({len(ENDPOINTS)} endpoints x {len(world.accounts)} roles "
          f"x 2 courses), {len(wrong)} wrong")  # fmt: skip
    assert cells == len(ENDPOINTS) * len(world.accounts) * 2
    assert not wrong, "\n".join(wrong)


def _same_404(world: World, role: str, theirs: str, missing: str) -> None:
    account = world.accounts[role]
    assert account is not None
    a = world.client.get(theirs, headers=account.headers)
    b = world.client.get(missing, headers=account.headers)
    assert a.status_code == b.status_code == 404, (theirs, a.text, b.text)
    assert a.json()["detail"] == b.json()["detail"], (a.json()["detail"], b.json()["detail"])


@pytest.mark.parametrize("role", ["student_member", "instructor_owner"])
def test_another_courses_document_under_my_course_is_404_like_a_missing_one(world: World, role: str) -> None:
    own, other = world.own, world.other
    _same_404(world, role, f"/v1/courses/{own.id}/documents/{other.document_id}",
              f"/v1/courses/{own.id}/documents/{uuid.uuid4()}")  # fmt: skip


@pytest.mark.parametrize("kind", ["notes", "quiz"])
def test_another_courses_study_material_is_404_like_a_missing_document(world: World, kind: str) -> None:
    _same_404(world, "student_member", f"/v1/documents/{world.other.document_id}/{kind}",
              f"/v1/documents/{uuid.uuid4()}/{kind}")  # fmt: skip
