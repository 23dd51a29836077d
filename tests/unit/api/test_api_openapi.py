"""The OpenAPI document names every endpoint, its problem responses and the bearer scheme."""

from api.main import create_app
from core.settings import Settings


def test_openapi_documents_every_endpoint_error_and_auth_scheme():
    app = create_app(Settings(environment="test"))  # no lifespan: nothing connects
    spec = app.openapi()
    paths = spec["paths"]
    for path in (
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/users/me",
        "/v1/courses",
        "/v1/courses/join",
        "/v1/courses/{course_id}",
        "/v1/courses/{course_id}/documents",
        "/v1/courses/{course_id}/documents/{document_id}",
        "/v1/jobs/{job_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert {"type", "title", "status", "detail"} <= set(spec["components"]["schemas"]["Problem"]["properties"])
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses and "429" in responses, (method, path)
            for status, response in responses.items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            if not path.startswith("/v1/auth/"):
                assert operation["security"] == [{"HTTPBearer": []}], (method, path)
                assert "401" in responses, (method, path)
    assert "/v1/notifications" in spec["info"]["description"]


def test_openapi_documents_the_search_mode_with_its_three_values():
    spec = create_app(Settings(environment="test")).openapi()
    parameters = spec["paths"]["/v1/courses/{course_id}/search"]["get"]["parameters"]
    mode = next(p for p in parameters if p["name"] == "mode")
    assert mode["in"] == "query" and mode["required"] is False
    assert mode["schema"]["enum"] == ["hybrid", "text", "vector"] and mode["schema"]["default"] == "hybrid"
    assert "full text" in mode["description"]


def test_course_read_documents_its_response_model():
    spec = create_app(Settings(environment="test")).openapi()
    ok = spec["paths"]["/v1/courses/{course_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Course"}
