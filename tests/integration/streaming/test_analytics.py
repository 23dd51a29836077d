"""Analytics events against the real broker: delivered in the background; with Kafka unreachable
the caller is never blocked and what does not fit in the buffer is dropped and counted."""

from __future__ import annotations

import time
import uuid

import pytest

from core.events import TOPIC_ANALYTICS_EVENTS, AnalyticsEvent
from streaming.analytics import AnalyticsPublisher
from streaming.kafka import json_consumer

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_events_reach_the_analytics_topic(settings, stack):
    kafka = settings.kafka.model_copy(update={"topic_prefix": f"a{uuid.uuid4().hex[:8]}."})
    publisher = AnalyticsPublisher(kafka)
    course = str(uuid.uuid4())
    for n in range(3):
        publisher.emit("quiz.attempted", user_id="u", course_id=course, score=float(n), max_score=3.0)
    try:
        consumer = json_consumer(kafka, kafka.topic(TOPIC_ANALYTICS_EVENTS), group_id=None)
        events: list[AnalyticsEvent] = []
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                events += [AnalyticsEvent.model_validate(m.value) for m in records]
        consumer.close()
    finally:
        publisher.close()
    assert sorted(e.properties["score"] for e in events) == [0.0, 1.0, 2.0]
    assert {e.course_id for e in events} == {course} and len({e.event_id for e in events}) == 3


def test_events_gathered_within_the_interval_go_in_one_batch(settings, stack):
    """One acknowledged batch per interval, not a round trip per event: sent one by one, each event
    cost ~2.5 ms of the API's GIL (kafka-python is pure Python)."""
    kafka = settings.kafka.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}."})
    publisher = AnalyticsPublisher(kafka, flush_interval_s=0.5)
    try:
        for n in range(40):
            publisher.emit("search.performed", user_id="u", course_id="c", n=n)
        assert publisher.flush(20)
        assert publisher.sent == 40
        assert publisher.batches <= 2, f"40 events took {publisher.batches} batches"
        for n in range(5):  # later events: a batch of their own, delivered too
            publisher.emit("search.performed", user_id="u", course_id="c", n=40 + n)
        assert publisher.flush(20)
        assert publisher.sent == 45
        consumer = json_consumer(kafka, kafka.topic(TOPIC_ANALYTICS_EVENTS), group_id=None)
        received: list[int] = []
        deadline = time.monotonic() + 30
        while len(received) < 45 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received += [AnalyticsEvent.model_validate(m.value).properties["n"] for m in records]
        consumer.close()
    finally:
        publisher.close()
    assert sorted(received) == list(range(45))


def test_an_unreachable_broker_drops_only_what_the_buffer_cannot_hold_and_counts_it(settings):
    down = settings.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    drops: list[int] = []
    publisher = AnalyticsPublisher(down, capacity=2, on_drop=lambda: drops.append(1))
    try:
        for n in range(6):
            publisher.emit("search", user_id=None, course_id=None, n=n)  # returns at once: nothing waits on Kafka
        # The sender holds one event while it retries; the buffer holds 2; the rest are counted.
        assert publisher.sent == 0
        assert publisher.dropped == len(drops) >= 3
        assert publisher.dropped + 2 + 1 >= 6
    finally:
        publisher.close()
