"""Fixtures of the ingestion stream's tests (helpers are in ingest_testkit.py)."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    # Service markers; registering them again (pyproject.toml) is harmless.
    for name in ("kafka", "redis", "postgres"):
        config.addinivalue_line("markers", f"{name}: talks to the local stack's {name}")


@pytest.fixture
def producer(settings, stack):
    from streaming.kafka import json_producer

    producer = json_producer(settings.kafka, client_id="ingest-tests")
    yield producer
    producer.close()
