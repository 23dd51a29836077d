"""Shared fixtures. Integration tests run against the real local stack (`make stack-up`);
the `stack` fixture starts it when it is not running, so plain `pytest` works too."""

from __future__ import annotations

import uuid

import pytest

from core.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(environment="test")


@pytest.fixture(scope="session")
def stack(settings: Settings):
    from deploy.stack import Stack

    stack = Stack(settings)
    if not all(status.healthy for status in stack.status()):
        stack.up()
    return stack


@pytest.fixture
def run_id() -> str:
    """A unique suffix for the topics, tables and keys one test creates."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def spark(settings: Settings, stack):
    from spark_jobs.ingest_documents import spark_session

    session = spark_session(settings)
    yield session
    session.stop()
