"""Sampled request latencies reach the analytics topic as ``request.sampled`` events that the
warehouse loads into ``fact_api_events.latency_ms``."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.events import EVENT_REQUEST_SAMPLED, TOPIC_ANALYTICS_EVENTS
from streaming.kafka import json_consumer
from tests.integration.api.api_testkit import create_course, derive, sign_up, wait_ready
from warehouse.rows import event_row

pytestmark = pytest.mark.integration


def _sampled_events(settings, want: int) -> list[dict]:
    consumer = json_consumer(settings.kafka, settings.kafka.topic(TOPIC_ANALYTICS_EVENTS), group_id=None)
    found: list[dict] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < want and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found += [
                    {"value": m.value, "raw": m.value, "partition": m.partition, "offset": m.offset}
                    for m in records
                    if m.value.get("name") == EVENT_REQUEST_SAMPLED
                ]
    finally:
        consumer.close()
    return found


def test_every_request_sampled_at_rate_one_lands_with_its_route_and_latency(api_settings):
    import json

    settings = derive(
        api_settings, api={"request_sample_rate": 1.0}, kafka={"topic_prefix": f"s{uuid.uuid4().hex[:8]}."}
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
        for _ in range(3):
            assert client.get(f"/v1/courses/{course['id']}", headers=owner.headers).status_code == 200
        assert client.get(f"/v1/courses/{uuid.uuid4()}", headers=owner.headers).status_code == 404
        client.app.state.services.analytics.flush()
        events = _sampled_events(settings, want=4)
    reads = [e for e in events if e["value"]["properties"]["route"] == "/v1/courses/{course_id}"]
    print(f"request.sampled events: {len(events)}, course reads among them: {len(reads)}")
    assert sorted(e["value"]["properties"]["status"] for e in reads) == [200, 200, 200, 404]
    assert {e["value"]["course_id"] for e in reads if e["value"]["properties"]["status"] == 200} == {course["id"]}
    for event in reads:  # what the warehouse loads: the latency column filled
        row = event_row(json.dumps(event["raw"]).encode(), partition=event["partition"], offset=event["offset"])
        assert row[1] == EVENT_REQUEST_SAMPLED and row[7] == event["value"]["properties"]["latency_ms"] > 0
