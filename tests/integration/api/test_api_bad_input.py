"""Bad input is a clear 4xx in the error model and writes nothing."""

import pytest

from tests.integration.api.api_testkit import create_course, row_counts, sign_up

pytestmark = pytest.mark.integration

SQLISH = "x'; DROP TABLE courses; --"


@pytest.fixture
def teacher(client):
    return sign_up(client, role="instructor")


def _assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "request_id"} <= body.keys()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_bad_bodies_are_4xx_problems_and_write_nothing(client, api_settings, teacher):
    json_headers = {**teacher.headers, "content-type": "application/json"}
    before = row_counts(api_settings)

    body = _assert_problem(client.post("/v1/courses", content=b'{"title": "x",', headers=json_headers), 400)
    assert body["title"] == "Malformed JSON"

    body = _assert_problem(client.post("/v1/courses", json={"title": 123}, headers=teacher.headers), 422)
    assert body["errors"][0]["loc"] == ["body", "title"]

    body = _assert_problem(
        client.post("/v1/courses", json={"title": "ok", "owner_id": teacher.user_id}, headers=teacher.headers), 422
    )
    assert body["errors"][0]["type"] == "extra_forbidden" and body["errors"][0]["loc"] == ["body", "owner_id"]

    _assert_problem(client.post("/v1/courses", json=["not", "an", "object"], headers=teacher.headers), 422)
    _assert_problem(client.post("/v1/courses", json={"title": ""}, headers=teacher.headers), 422)
    _assert_problem(client.post("/v1/courses", json={"title": "t" * 201}, headers=teacher.headers), 422)

    limit = api_settings.api.max_json_body_bytes
    huge = {"title": "big", "description": "d" * (limit + 10)}
    body = _assert_problem(client.post("/v1/courses", json=huge, headers=teacher.headers), 413)
    assert str(limit) in body["detail"]

    def chunks():  # no Content-Length: the streamed size is counted
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    _assert_problem(client.post("/v1/courses", content=chunks(), headers=json_headers), 413)

    # SQL-looking strings where the format is strict are refused by validation...
    _assert_problem(client.post("/v1/courses/join", json={"join_code": SQLISH}, headers=teacher.headers), 422)
    _assert_problem(client.get(f"/v1/courses/{SQLISH}", headers=teacher.headers), 422)
    _assert_problem(client.get("/v1/courses/1 OR 1=1", headers=teacher.headers), 422)
    _assert_problem(client.post("/v1/auth/login", json={"email": f"a@b.c{SQLISH}", "password": "x"}), 422)
    _assert_problem(
        client.post(
            "/v1/auth/signup",
            json={"email": f"{SQLISH}@example.com", "password": "long enough password", "display_name": "x"},
        ),
        422,
    )
    # ... and forged or expired tokens are refused before anything runs
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
    _assert_problem(client.post("/v1/courses", json={"title": "ok"}, headers=forged), 401)

    assert row_counts(api_settings) == before


def test_sql_looking_text_in_a_free_text_field_is_stored_verbatim(client, api_settings, teacher):
    course = create_course(client, teacher, title=SQLISH)
    read = client.get(f"/v1/courses/{course['id']}", headers=teacher.headers)
    assert read.json()["title"] == SQLISH  # bound parameter, not SQL
    assert row_counts(api_settings)["courses"] >= 1  # the table is still there


def test_unknown_routes_and_methods_are_problems_too(client, teacher):
    _assert_problem(client.get("/v1/nothing-here"), 404)
    _assert_problem(client.delete("/v1/courses", headers=teacher.headers), 405)


def test_nul_characters_are_a_422_that_names_the_field_and_writes_nothing(client, api_settings, teacher):
    course = create_course(client, teacher)
    before = row_counts(api_settings)
    cases = [
        ("post", "/v1/courses", {"title": "a\x00b"}, "title"),
        ("post", "/v1/courses", {"title": "ok", "description": "x\x00"}, "description"),
        ("patch", f"/v1/courses/{course['id']}", {"title": "a\x00b"}, "title"),
        ("patch", f"/v1/courses/{course['id']}", {"description": "\x00"}, "description"),
    ]
    for method, path, body, field in cases:
        problem = _assert_problem(getattr(client, method)(path, json=body, headers=teacher.headers), 422)
        assert problem["errors"][0]["loc"] == ["body", field] and "control characters" in problem["errors"][0]["msg"]
    email = "nul-in-name@example.com"
    signup = {"email": email, "password": "long enough password", "display_name": "Ann\x00"}
    _assert_problem(client.post("/v1/auth/signup", json=signup), 422)
    assert row_counts(api_settings) == before
    # the email was not reserved by the refused sign-up
    ok = client.post("/v1/auth/signup", json={**signup, "display_name": "Ann"})
    assert ok.status_code == 201, ok.text


def test_patch_with_null_keeps_the_current_value(client, teacher):
    course = create_course(client, teacher, title="Kept")
    for body in ({"title": None}, {"description": None}, {"title": None, "description": None}):
        response = client.patch(f"/v1/courses/{course['id']}", json=body, headers=teacher.headers)
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "Kept"
