"""The app edge without services: error model, body limits, request ids, strict schemas."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import NotFound, install_error_handlers
from api.metrics import Metrics
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.schemas import CourseCreate, JoinCourse, SignUp
from core.settings import Settings


@pytest.fixture
def edge_client() -> TestClient:
    settings = Settings(environment="test", api={"max_json_body_bytes": 1024})
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/courses")
    def create(body: CourseCreate) -> dict:
        return body.model_dump()

    @app.get("/missing")
    def missing() -> dict:
        raise NotFound("No course with this id.")

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("secret internals")

    app.add_middleware(BodyLimitMiddleware, settings=settings.api)
    app.add_middleware(RequestContextMiddleware, metrics=Metrics())
    return TestClient(app, raise_server_exceptions=False)


def _problem(response, status):
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://")
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_domain_error_maps_to_its_status(edge_client):
    assert _problem(edge_client.get("/missing"), 404)["detail"] == "No course with this id."


def test_unhandled_error_is_a_500_problem_without_internals(edge_client):
    body = _problem(edge_client.get("/boom"), 500)
    assert "secret internals" not in body["detail"]


def test_malformed_json_is_400_and_wrong_types_422_with_field_errors(edge_client):
    headers = {"content-type": "application/json"}
    assert _problem(edge_client.post("/courses", content=b"{nope", headers=headers), 400)["title"] == "Malformed JSON"
    body = _problem(edge_client.post("/courses", json={"title": ["list"]}), 422)
    assert body["errors"][0]["loc"] == ["body", "title"]


def test_declared_and_streamed_oversize_bodies_are_413(edge_client):
    _problem(edge_client.post("/courses", json={"title": "x", "description": "d" * 2000}), 413)

    def stream():
        for _ in range(4):
            yield b" " * 512

    _problem(edge_client.post("/courses", content=stream(), headers={"content-type": "application/json"}), 413)
    bad_length = edge_client.post("/courses", content=b"{}", headers={"content-length": "abc"})
    assert bad_length.status_code == 400


def test_request_id_is_kept_when_well_formed_and_replaced_otherwise(edge_client):
    assert edge_client.get("/missing", headers={"x-request-id": "abcdef-123456"}).headers["x-request-id"] == (
        "abcdef-123456"
    )
    assert edge_client.get("/missing", headers={"x-request-id": "x"}).headers["x-request-id"] != "x"


def test_request_schemas_refuse_unknown_fields_and_coercion():
    with pytest.raises(ValueError, match="extra"):
        CourseCreate.model_validate({"title": "t", "owner_id": "x"})
    with pytest.raises(ValueError):
        CourseCreate.model_validate({"title": 5})
    with pytest.raises(ValueError):
        JoinCourse.model_validate({"join_code": "abc' OR 1=1"})
    with pytest.raises(ValueError):
        SignUp.model_validate(
            {"email": "a@example.com", "password": "long enough pw", "display_name": "x", "role": "admin"}
        )
    assert JoinCourse.model_validate({"join_code": "ABCDEFGH"}).join_code == "ABCDEFGH"


def test_access_log_lines_are_json_and_escape_control_characters():
    import json
    import logging

    from api.context import JsonLogFormatter

    record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "request", (), None)
    record.method, record.path, record.status = "GET", "/v1/x\nFAKE 200 admin login\x1b[2J", 404
    line = JsonLogFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    parsed = json.loads(line)
    assert parsed["path"] == "/v1/x\nFAKE 200 admin login\x1b[2J" and parsed["status"] == 404
