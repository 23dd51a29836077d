"""Fault-injection tests: each breaks one real service (a private instance started by the test,
never the shared stack) or kills a real process, then counts what was kept.

Every test here is marked ``reliability`` and ``integration`` (and ``slow`` when it starts a JVM
or Airflow), plus the services it talks to. The course-service fixtures (private shard
databases, a private Redis key prefix) are the integration tests' own, reused here.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import api_run_id, api_settings, make_client  # noqa: F401 - fixtures

# The real services each test module talks to (its private broken instance included).
_SERVICES_BY_MODULE = {
    "test_stream_kill_points": ("spark", "kafka", "redis", "postgres"),
    "test_kafka_outage": ("kafka", "postgres", "redis"),
    "test_redis_outage": ("redis", "postgres", "kafka"),
    "test_postgres_shard_down": ("postgres", "redis", "kafka"),
    "test_object_store_outage": ("postgres", "redis", "kafka", "spark"),
    "test_airflow_task_kill": ("spark", "airflow"),
}
_SLOW = {"test_stream_kill_points", "test_object_store_outage", "test_airflow_task_kill", "test_kafka_outage"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "reliability" not in item.path.parts:
            continue
        item.add_marker(pytest.mark.reliability)
        item.add_marker(pytest.mark.integration)
        module = item.path.stem
        for service in _SERVICES_BY_MODULE.get(module, ()):
            item.add_marker(getattr(pytest.mark, service))
        if module in _SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def report_counts(capsys):
    """Prints the counts a fault test compared straight to the terminal (also under capture)."""
    from tests.reliability.faultkit import format_counts

    def report(scenario: str, rows: list[tuple[str, object, object]]) -> None:
        with capsys.disabled():
            print(format_counts(scenario, rows), flush=True)

    return report
