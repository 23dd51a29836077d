"""Fixtures of the ingestion stream's tests (helpers are in ingest_testkit.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def producer(settings, stack):
    from streaming.kafka import json_producer

    producer = json_producer(settings.kafka, client_id="ingest-tests")
    yield producer
    producer.close()
