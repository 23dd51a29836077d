"""Kafka behind a small interface: JSON producers and consumers configured from Settings."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from core.settings import KafkaSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer


def json_producer(settings: KafkaSettings, *, client_id: str = "lakehouse", **options: Any) -> KafkaProducer:
    """An idempotent producer (acks=all): a retried send is written once. ``options`` are more
    KafkaProducer settings (e.g. timeouts)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        **options,
        bootstrap_servers=settings.servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        key_serializer=lambda key: key.encode() if isinstance(key, str) else key,
        value_serializer=lambda value: json.dumps(value, separators=(",", ":"), default=str).encode(),
    )


def close_producer(producer: Any, *, timeout_s: float = 5.0) -> None:
    """Closes ``producer`` (if any) without raising: kafka-python's ``close`` flushes first, and
    that raises when the broker is gone, which once killed the analytics sender's thread."""
    if producer is None:
        return
    try:
        producer.close(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - the broker is gone; what was unsent is the caller's to keep
        log.warning("Kafka producer closed uncleanly (%s)", type(exc).__name__)


def json_consumer(settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer of JSON values; offsets start at the earliest message for a new group."""
    from kafka import KafkaConsumer

    options: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": max(settings.session_timeout_ms // 3, 500),
        "value_deserializer": lambda raw: json.loads(raw),
        "key_deserializer": lambda raw: raw.decode() if raw is not None else None,
    }
    options.update(overrides)
    return KafkaConsumer(*topics, **options)


def ensure_topics(settings: KafkaSettings, names: list[str], *, partitions: int = 2) -> None:
    """Creates the topics that do not exist yet (idempotent)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.servers, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


class EventPublisher:
    """A JSON event publisher on one idempotent producer, created on first use (so a runtime starts
    even while Kafka is down) and shared by threads. ``publish`` waits for the broker's ack.

    The producer gives up on a record after ``DELIVERY_TIMEOUT_MS`` (less than ``publish``'s
    default wait): a record whose publish failed is dropped, never delivered once the broker
    is back (the caller was told it failed; ``tests/reliability/test_kafka_outage.py``)."""

    DELIVERY_TIMEOUT_MS = 8000
    REQUEST_TIMEOUT_MS = 5000

    def __init__(self, settings: KafkaSettings, *, client_id: str) -> None:
        self.settings = settings
        self.client_id = client_id
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                self._producer = json_producer(
                    self.settings,
                    client_id=self.client_id,
                    delivery_timeout_ms=self.DELIVERY_TIMEOUT_MS,
                    request_timeout_ms=self.REQUEST_TIMEOUT_MS,
                )
            return self._producer

    def publish(
        self,
        topic: str,
        *,
        key: str,
        value: dict[str, Any],
        timeout_s: float = 10.0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Sends to ``topic`` (the logical name; the configured prefix is added) and waits for acks=all.
        ``headers`` ride beside the value (e.g. ``traceparent``)."""
        self._get().send(self.settings.topic(topic), key=key, value=value, headers=headers).get(timeout=timeout_s)

    def close(self) -> None:
        with self._lock:
            close_producer(self._producer)
            self._producer = None
