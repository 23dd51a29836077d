"""Analytics events off the request's critical path: ``emit`` puts an event in a bounded buffer
and returns; one background thread sends the buffer to ``analytics.events`` on Kafka.

A Kafka outage loses no request: events wait in the buffer (the producer retries), and once
the buffer is full new events are dropped and *counted* (``dropped``, and the ``on_drop``
callback the API wires to a Prometheus counter), never silently.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.events import TOPIC_ANALYTICS_EVENTS, AnalyticsEvent
from core.settings import KafkaSettings

log = logging.getLogger("streaming.analytics")
_STOP = object()


class AnalyticsPublisher:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        capacity: int = 10_000,
        on_drop: Callable[[], None] = lambda: None,
        client_id: str = "lakehouse-analytics",
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.on_drop = on_drop
        self.dropped = 0
        self.sent = 0
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def emit(self, name: str, *, user_id: str | None, course_id: str | None, **properties: Any) -> None:
        """Buffers one event and returns at once (drops and counts it when the buffer is full)."""
        event = AnalyticsEvent(
            event_id=str(uuid.uuid4()),
            occurred_at=datetime.now(UTC),
            name=name,
            user_id=user_id,
            course_id=course_id,
            properties=properties,
        )
        self._start()
        try:
            self._buffer.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            self.on_drop()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="analytics-publisher", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        from streaming.kafka import json_producer

        producer = None
        pending: AnalyticsEvent | None = None
        while not (self._closing.is_set() and pending is not None):
            event = pending or self._buffer.get()
            if event is _STOP:
                break
            try:
                if producer is None:
                    producer = json_producer(self.settings, client_id=self.client_id)
                producer.send(
                    self.settings.topic(TOPIC_ANALYTICS_EVENTS),
                    key=event.course_id,
                    value=event.model_dump(mode="json"),
                ).get(timeout=10)
                self.sent += 1
                pending = None
            except Exception as exc:  # noqa: BLE001 - Kafka down: keep the event, wait, try again
                log.warning("analytics event not sent yet (%s); retrying", type(exc).__name__)
                pending = event
                if producer is not None:
                    producer.close(timeout=1)
                    producer = None
                self._closing.wait(1.0)
        if pending is not None:
            log.warning("closing with an unsent analytics event (Kafka unreachable)")
        if producer is not None:
            producer.close(timeout=5)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until the buffer is empty (for tests and shutdown); True when it is."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._buffer.empty():
                return True
            time.sleep(0.05)
        return self._buffer.empty()

    def close(self) -> None:
        """Sends what is buffered (while Kafka answers), then stops the sender."""
        self._closing.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            try:
                self._buffer.put(_STOP, timeout=1)
            except queue.Full:
                pass
            thread.join(timeout=5)
