"""The small trust findings of the outside probe, each checked with real requests: access tokens of
an ended session, per-account login throttling, 405 answers with the full Allow list, the upload
without a file part, and the wording of the token-type error."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from core.settings import Settings
from tests.integration.api.api_testkit import PASSWORD, create_course, sign_up


def _me(client: TestClient, access_token: str):
    return client.get("/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})


def test_access_tokens_die_with_their_session_on_logout_and_on_refresh_token_reuse(client: TestClient) -> None:
    account = sign_up(client)
    assert _me(client, account.access_token).status_code == 200
    assert client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token}).status_code == 204
    after_logout = _me(client, account.access_token)
    assert after_logout.status_code == 401, after_logout.text
    assert "session" in after_logout.json()["detail"]

    stolen = sign_up(client)
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": stolen.refresh_token}).json()
    assert _me(client, rotated["access_token"]).status_code == 200
    reused = client.post("/v1/auth/refresh", json={"refresh_token": stolen.refresh_token})
    assert reused.status_code == 401
    for token in (stolen.access_token, rotated["access_token"]):
        assert _me(client, token).status_code == 401


def test_a_refresh_token_sent_as_access_token_is_named_in_good_english(client: TestClient) -> None:
    account = sign_up(client)
    wrong = _me(client, account.refresh_token)
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "An access token is required."


def test_too_many_wrong_passwords_throttle_the_account_even_for_the_right_one(
    client: TestClient, api_settings: Settings
) -> None:
    limit = api_settings.api.login_max_failures
    victim, bystander = sign_up(client), sign_up(client)
    # a success resets the count: limit - 1 failures, a success, limit - 1 failures: never throttled
    for _ in range(2):
        for _ in range(limit - 1):
            wrong = client.post("/v1/auth/login", json={"email": victim.email, "password": "guess"})
            assert wrong.status_code == 401
        assert client.post("/v1/auth/login", json={"email": victim.email, "password": PASSWORD}).status_code == 200
    for _ in range(limit):
        assert client.post("/v1/auth/login", json={"email": victim.email, "password": "guess"}).status_code == 401
    right = client.post("/v1/auth/login", json={"email": victim.email.upper(), "password": PASSWORD})
    assert right.status_code == 429, right.text
    assert right.headers["content-type"] == "application/problem+json"
    retry_after = int(right.headers["Retry-After"])
    assert 0 < retry_after <= api_settings.api.login_failure_window_s
    assert "wrong passwords" in right.json()["detail"]
    # the throttle is per account: another account of the same IP logs in
    assert client.post("/v1/auth/login", json={"email": bystander.email, "password": PASSWORD}).status_code == 200
    # an unknown email is throttled the same way (the 429 tells nothing about which accounts exist)
    ghost = f"ghost-{uuid.uuid4().hex[:8]}@example.com"
    statuses = [
        client.post("/v1/auth/login", json={"email": ghost, "password": "x"}).status_code for _ in range(limit + 1)
    ]
    assert statuses == [401] * limit + [429]
    print(f"login throttle: {limit} wrong passwords, then the right one: 429, Retry-After {retry_after} s")


def test_405_answers_list_every_allowed_method(client: TestClient) -> None:
    owner = sign_up(client, role="instructor")
    course = create_course(client, owner)
    cases = {
        ("OPTIONS", f"/v1/courses/{course['id']}"): {"GET", "HEAD", "PATCH"},
        ("DELETE", f"/v1/courses/{course['id']}"): {"GET", "HEAD", "PATCH"},
        ("OPTIONS", "/v1/courses"): {"GET", "HEAD", "POST"},
        ("PATCH", "/v1/courses/join"): {"POST"},
        ("GET", "/v1/courses/join"): {"POST"},
        ("OPTIONS", f"/v1/courses/{course['id']}/documents"): {"GET", "HEAD", "POST"},
    }
    for (method, path), allowed in cases.items():
        response = client.request(method, path, headers=owner.headers, json={"title": "x"})
        assert response.status_code == 405, (method, path, response.status_code, response.text)
        assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
    # the literal /join did not shadow the course routes
    assert client.get(f"/v1/courses/{course['id']}", headers=owner.headers).status_code == 200


def test_an_upload_without_a_file_part_is_a_422_the_schema_announces(client: TestClient) -> None:
    owner = sign_up(client, role="instructor")
    course = create_course(client, owner)
    response = client.post(f"/v1/courses/{course['id']}/documents", headers=owner.headers, data={"x": "1"})
    assert response.status_code == 422
    assert "Attach at least one PDF" in response.json()["detail"]
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/courses/{course_id}/documents"]["post"]["requestBody"]
    ref = body["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = spec["components"]["schemas"][ref]
    assert body["required"] and schema["required"] == ["files"] and schema["properties"]["files"]["minItems"] == 1
