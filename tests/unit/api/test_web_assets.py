"""The API serves the built page: immutable hashed assets (gzip when accepted, 304 on a matching
ETag), a no-cache index, and 404 for anything that is not a built asset."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.web_assets import IMMUTABLE, router
from core.settings import Settings
from deploy.web_build import build_web


def _client(settings: Settings) -> TestClient:
    app = FastAPI()
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    return TestClient(app)


def test_assets_are_immutable_gzipped_and_revalidated_by_etag(tmp_path):
    settings = Settings(environment="test", stack={"state_dir": tmp_path})
    build = build_web(settings)
    client = _client(settings)
    name = build.assets["app.js"]
    zipped = client.get(f"/assets/{name}", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.headers["cache-control"] == IMMUTABLE
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    plain = client.get(f"/assets/{name}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != zipped.headers["etag"]
    again = client.get(f"/assets/{name}", headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]})
    assert again.status_code == 304


def test_index_is_not_cached_and_unknown_names_are_404(tmp_path):
    settings = Settings(environment="test", stack={"state_dir": tmp_path})
    client = _client(settings)
    assert client.get("/").status_code == 404  # not built yet: a clear problem, not a crash
    build_web(settings)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.0123456789abcdef.js", "..%2Fmanifest.json", "manifest.json"):
        assert client.get(f"/assets/{name}").status_code == 404, name
