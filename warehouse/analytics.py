"""The analytics topic into the warehouse: a consumer group reads ``analytics.events`` up to the
end offsets it saw at the start, loads valid events in batches and commits the group's offsets
only after their batch is inserted (at least once; ``fact_api_events`` is keyed by event id, so a
redelivered event counts once). A malformed event goes to ``analytics.events.dlq`` with its
reason — before its offset is committed — and the load goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.events import SCHEMA_VERSION, TOPIC_ANALYTICS_DLQ, TOPIC_ANALYTICS_EVENTS
from core.settings import Settings
from warehouse.rows import MalformedEvent, event_row

log = logging.getLogger("warehouse.analytics")


@dataclass
class ConsumeResult:
    rows: int = 0
    dead_letters: int = 0
    offsets: str = ""


def dead_letter(reason: str, raw: bytes | None, *, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """The DLQ message of a refused event: the reason, where it was, and the message as text."""
    return {
        "schema_version": SCHEMA_VERSION,
        "reason": reason,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "raw": raw.decode("utf-8", errors="replace") if raw is not None else None,
    }


def consume_analytics(
    settings: Settings,
    insert: Callable[[list[list[Any]]], object],
    *,
    batch_rows: int,
    max_wait_s: float = 30.0,
) -> ConsumeResult:
    """Reads the topic from the group's committed offsets to the end offsets of the start;
    ``insert`` gets batches of ``fact_api_events`` rows."""
    from kafka import KafkaConsumer, TopicPartition

    from streaming.kafka import ensure_topics, json_producer

    kafka = settings.kafka
    topic = kafka.topic(TOPIC_ANALYTICS_EVENTS)
    ensure_topics(kafka, [topic, kafka.topic(TOPIC_ANALYTICS_DLQ)])
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.servers,
        group_id=kafka.topic(settings.warehouse.consumer_group),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=max(kafka.session_timeout_ms // 3, 500),
        max_poll_records=min(batch_rows, 50_000),
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    producer = None
    result = ConsumeResult()
    try:
        # Manual assignment: the group stores offsets, no rebalance wait for a batch reader.
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        pending: list[list[Any]] = []
        deadline = time.monotonic() + max_wait_s
        seen = -1

        def remaining() -> bool:
            return any(consumer.position(tp) < end[tp] for tp in partitions)

        while remaining() and time.monotonic() < deadline:
            progress = sum(consumer.position(tp) for tp in partitions)
            if progress != seen:  # the wait bounds a stall, not the whole load
                seen, deadline = progress, time.monotonic() + max_wait_s
            for tp, records in consumer.poll(timeout_ms=500, max_records=batch_rows).items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue  # arrived after the start: the next load takes it
                    try:
                        pending.append(event_row(record.value, partition=tp.partition, offset=record.offset))
                    except MalformedEvent as exc:
                        if producer is None:
                            producer = json_producer(kafka, client_id="warehouse-dlq")
                        producer.send(
                            kafka.topic(TOPIC_ANALYTICS_DLQ),
                            key=record.key,
                            value=dead_letter(str(exc), record.value, topic=topic, partition=tp.partition,
                                              offset=record.offset),
                        )  # fmt: skip
                        result.dead_letters += 1
            if len(pending) >= batch_rows:
                _flush(consumer, producer, insert, pending, result)
                pending = []
        if remaining():
            log.warning("analytics load stopped before the end offsets (no progress for %.0f s)", max_wait_s)
        _flush(consumer, producer, insert, pending, result)
        result.offsets = ",".join(f"{tp.partition}:{consumer.position(tp)}" for tp in partitions)
    finally:
        if producer is not None:
            producer.close(timeout=10)
        consumer.close(autocommit=False)
    return result


def _flush(consumer: Any, producer: Any, insert: Callable[[list[list[Any]]], object], rows: list[list[Any]],
           result: ConsumeResult) -> None:  # fmt: skip
    """Inserts the rows, makes sure the dead letters are on the broker, then commits the offsets."""
    if rows:
        insert(rows)
        result.rows += len(rows)
    if producer is not None:
        producer.flush(timeout=30)
    consumer.commit()
