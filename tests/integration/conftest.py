"""Fixtures of the course-service tests: a private set of shard databases on the stack's
PostgreSQL (created, migrated, dropped per session), a unique Redis key prefix on the stack's
Redis and app clients. Helpers live in api_testkit.py."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.integration.api.api_testkit import TEST_SHARDS
from tests.integration.shard_testkit import migrated_shards


@pytest.fixture(scope="session")
def api_run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def api_settings(settings: Settings, stack, api_run_id: str) -> Iterator[Settings]:
    """Settings of the app under test: 3 private shard databases, a private Redis key prefix."""
    overrides = settings.model_dump()
    overrides["postgres"].update(shards=TEST_SHARDS, shard_db_prefix=f"lakehouse_test_{api_run_id}_", pool_max_size=6)
    overrides["redis"].update(key_prefix=f"test:{api_run_id}:")
    # The whole session shares the test client's IP: only the rate-limit tests use small buckets.
    overrides["api"].update(
        rate_limit_per_minute=100_000, rate_limit_ip_per_minute=100_000, jwt_secret=f"integration-{uuid.uuid4().hex}"
    )
    with migrated_shards(Settings(**overrides)) as test_settings:
        try:
            yield test_settings
        finally:
            _delete_prefix(test_settings)


def _delete_prefix(settings: Settings) -> None:
    from core.redis import redis_client

    client = redis_client(settings.redis)
    try:
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}*", count=500):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def make_client(api_settings: Settings):
    """Starts an app (lifespan included) for given settings; closed at the end of the test."""
    with contextlib.ExitStack() as stack:

        def make(settings: Settings | None = None) -> TestClient:
            return stack.enter_context(TestClient(create_app(settings or api_settings)))

        yield make


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


# The real services each folder's tests talk to, as markers (`pytest -m "not spark"` and so on).
_SERVICES_BY_FOLDER = {
    "api": ("postgres", "redis", "kafka"),
    "cli": ("postgres", "redis", "kafka"),
    "deploy": ("postgres",),
    "db": ("postgres", "redis"),
    "lake": ("spark",),
    "spark_jobs": ("spark", "kafka", "postgres", "redis"),
    "dags": ("spark", "kafka", "redis", "airflow"),
    "streaming": ("kafka",),
    "warehouse": ("postgres", "kafka"),
    "web": ("spark", "kafka", "postgres", "redis"),
    "edge": ("postgres", "redis", "kafka"),
    "quality": ("postgres",),
    "security": ("postgres", "redis", "kafka"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.parts
        if "integration" not in parts:
            continue
        item.add_marker(pytest.mark.integration)
        folder = parts[parts.index("integration") + 1] if parts.index("integration") + 1 < len(parts) else ""
        for service in _SERVICES_BY_FOLDER.get(folder, ()):
            item.add_marker(getattr(pytest.mark, service))
