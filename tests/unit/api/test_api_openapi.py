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
