"""The Kafka broker stopped and restarted while uploads go on (a private broker; the shared one
is never touched): uploads during the outage get 503 with ``Retry-After`` and a failed job that
says why; every upload that got a 202 — before, during or after — is on the topic exactly once;
none of the refused ones turns up later. The analytics sender, connected before the outage, keeps
the events emitted during it and delivers every one once the broker is back.

(``tests/integration/api/test_api_uploads.py`` covers a broker that is never reachable.)
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from core.events import TOPIC_DOCUMENTS_UPLOADED
from processing.samples import short_pdf
from tests.integration.api.api_testkit import create_course, sign_up
from tests.reliability.faultkit import derive, private_service


def _upload(client, account, course_id: str, name: str, data: bytes):
    return client.post(
        f"/v1/courses/{course_id}/documents",
        files=[("files", (name, data, "application/pdf"))],
        headers=account.headers,
    )


def _events(settings) -> list[dict]:
    from streaming.kafka import ensure_topics, json_consumer

    topic = settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED)
    ensure_topics(settings.kafka, [topic])
    consumer = json_consumer(settings.kafka, topic, group_id=None, consumer_timeout_ms=3000)
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


def _probe_events(settings) -> list[dict]:
    from core.events import TOPIC_ANALYTICS_EVENTS
    from streaming.kafka import json_consumer

    topic = settings.kafka.topic(TOPIC_ANALYTICS_EVENTS)
    consumer = json_consumer(settings.kafka, topic, group_id=None, consumer_timeout_ms=3000)
    try:
        return [m.value for m in consumer if m.value.get("name") == "outage.probe"]
    finally:
        consumer.close()


def test_uploads_during_a_broker_restart_are_refused_with_retry_after_and_none_accepted_is_lost(
    api_settings, make_client, tmp_path, report_counts
):
    from streaming.analytics import AnalyticsPublisher

    with private_service(api_settings, "kafka", tmp_path / "kafka-stack") as (broker, kafka_settings):
        settings = derive(
            kafka_settings,
            kafka={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."},
            object_store={"local_root": tmp_path / "objects"},
        )
        client = make_client(settings)
        teacher = sign_up(client, role="instructor")
        course = create_course(client, teacher, title="Broker restarts")
        pdf = {i: short_pdf(f"Upload number {i} of the broker restart test.", pages=1) for i in range(7)}
        accepted: dict[tuple[str, int], int] = {}  # (document id, version) -> upload number
        refused: dict[tuple[str, int], int] = {}

        def accept(i: int) -> None:
            response = _upload(client, teacher, course["id"], f"doc{i}.pdf", pdf[i])
            assert response.status_code == 202, response.text
            [job] = response.json()["jobs"]
            accepted[(job["document_id"], job["version"])] = i

        for i in range(3):
            accept(i)  # broker up
        analytics = AnalyticsPublisher(settings.kafka, flush_interval_s=0.2)
        for n in range(3):
            analytics.emit("outage.probe", user_id=None, course_id=course["id"], n=n)
        assert analytics.flush(30), "analytics events not delivered with the broker up"

        assert broker.stop("kafka")
        for n in range(3, 6):  # the sender is connected: these wait for the broker
            analytics.emit("outage.probe", user_id=None, course_id=course["id"], n=n)
        retry_after = []
        started = time.monotonic()
        for i in (3, 4):
            response = _upload(client, teacher, course["id"], f"doc{i}.pdf", pdf[i])
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            retry_after.append(response.headers.get("Retry-After"))
        refused_seconds = (time.monotonic() - started) / 2
        listed = client.get(f"/v1/courses/{course['id']}/documents", headers=teacher.headers).json()["items"]
        failed = [d for d in listed if d["status"] == "failed"]
        for d in failed:
            refused[(d["id"], d["version"])] = int(d["filename"].removeprefix("doc").removesuffix(".pdf"))
        assert all("could not queue" in d["error"] for d in failed)

        broker.up()  # same data dir and ports: the broker comes back with its log
        deadline = time.monotonic() + 30
        while True:  # the first upload after the restart may still meet the reconnecting producer
            response = _upload(client, teacher, course["id"], "doc5.pdf", pdf[5])
            if response.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        accepted[(job["document_id"], job["version"])] = 5
        accept(6)
        for i in (3, 4):  # the refused uploads, sent again as the 503 asked: a new version each
            accept(i)

        for n in range(6, 9):
            analytics.emit("outage.probe", user_id=None, course_id=course["id"], n=n)
        analytics_delivered = analytics.flush(60)
        analytics.close()
        time.sleep(2)  # a refused record still buffered in the producer would be delivered by now
        events = _events(settings)
        probes = _probe_events(settings)
    on_topic = Counter((e["document_id"], e["version"]) for e in events)
    lost = [key for key in accepted if on_topic[key] == 0]
    doubled = [key for key, n in on_topic.items() if n > 1]
    ghosts = [key for key in refused if on_topic[key] > 0]
    report_counts(
        "Kafka broker stopped and restarted during uploads",
        [
            ("uploads answered 202", 7, len(accepted)),
            ("uploads answered 503 (broker down)", 2, len(refused)),
            ("503s with Retry-After", 2, sum(1 for r in retry_after if r)),
            ("seconds per refused upload", "<=15", round(refused_seconds, 1)),
            ("events on the topic", 7, sum(on_topic.values())),
            ("accepted uploads lost", 0, len(lost)),
            ("events doubled", 0, len(doubled)),
            ("refused uploads delivered later", 0, len(ghosts)),
            ("analytics events delivered (distinct)", 9, len({e["properties"]["n"] for e in probes})),
        ],
    )
    assert analytics_delivered, "the analytics sender did not deliver what the outage held back"
    assert sorted({e["properties"]["n"] for e in probes}) == list(range(9))
    assert len(refused) == 2 and all(retry_after), retry_after
    assert lost == [] and doubled == []
    assert ghosts == [], "an upload answered 503 (and marked failed) reached the topic after all"
    assert set(on_topic) == set(accepted)
