"""`lakehouse kafka topics|consume|groups`: Kafka's own tools against the running local broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def _lakehouse(*args: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {"LAKEHOUSE_ENVIRONMENT": "test", "LAKEHOUSE_KAFKA__TOPIC_PREFIX": prefix, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "kafka", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_topics_consume_and_group_lag_with_kafkas_tools(settings, stack, run_id):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    prefix = f"kt{run_id}."
    topic = f"{prefix}documents.failed"
    group = f"kt-{run_id}"
    producer = KafkaProducer(bootstrap_servers=settings.kafka.servers, acks="all")
    try:
        for i in range(5):
            value = json.dumps({"document_id": f"doc-{i}", "reason": "corrupt PDF"}).encode()
            producer.send(topic, key=f"doc-{i}".encode(), value=value, partition=0).get(timeout=10)
    finally:
        producer.close()
    # A consumer group that has read 2 of the 5 messages: lag 3 on partition 0.
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.servers, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        consumer.close()

    listed = _lakehouse("topics", prefix=prefix)
    assert listed.returncode == 0, listed.stderr
    assert topic in listed.stdout.split()

    read = _lakehouse("consume", "documents.failed", "--from-beginning", "--max", "5", "--keys", prefix=prefix)
    assert read.returncode == 0, read.stderr
    lines = [line for line in read.stdout.splitlines() if line.strip()]
    assert len(lines) == 5
    keys_and_values = [line.split("\t", 1) for line in lines]
    assert [k for k, _ in keys_and_values] == [f"doc-{i}" for i in range(5)]
    assert json.loads(keys_and_values[0][1]) == {"document_id": "doc-0", "reason": "corrupt PDF"}

    groups = _lakehouse("groups", prefix=prefix)
    assert groups.returncode == 0, groups.stderr
    assert group in groups.stdout.split()

    described = _lakehouse("groups", "--describe", group, prefix=prefix)
    assert described.returncode == 0, described.stderr
    header, *rows = [line.split() for line in described.stdout.splitlines() if line.strip()]
    row = dict(zip(header, next(r for r in rows if topic in r), strict=False))
    assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == ("2", "5", "3")


def test_a_missing_topic_is_a_clear_failure(settings, stack, run_id):
    described = _lakehouse("topics", "--describe", "no.such.topic", prefix=f"kt{run_id}.")
    assert described.returncode != 0
    assert "does not exist" in (described.stdout + described.stderr)
