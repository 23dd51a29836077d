"""Redis down (a private redis-server; the shared one is never stopped) during uploads and reads:
reads keep answering from PostgreSQL (degraded, logged, metric), uploads are accepted with their
jobs recorded in PostgreSQL only, sessions and the WebSocket say 503 / 1011; once Redis is back,
a reconnected WebSocket gets the workers' reports and the jobs show their final status."""

import asyncio
import json
import logging
import time
import uuid

import pytest
import websockets

from deploy.stack import Stack
from processing.samples import short_pdf
from tests.integration.api.api_testkit import (
    PASSWORD,
    LiveServer,
    create_course,
    derive,
    free_port,
    sign_up,
    wait_ready,
)

PDF = "application/pdf"


@pytest.fixture
def private_redis(api_settings, tmp_path):
    """A redis-server of this test only (the shared one is never stopped)."""
    port = free_port()
    settings = derive(
        api_settings,
        stack={"state_dir": tmp_path / "state", "services": ("redis",), "install_missing": False},
        redis={"port": port},
        kafka={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."},
        object_store={"local_root": tmp_path / "objects"},
    )
    private = Stack(settings)
    private.up()
    yield private, settings
    private.down()


def test_reads_and_uploads_keep_working_while_redis_is_down_and_jobs_recover(
    private_redis, make_client, caplog, report_counts
):
    private, settings = private_redis
    client = make_client(settings)
    wait_ready(client)
    teacher = sign_up(client, role="instructor")
    student = sign_up(client)
    course = create_course(client, teacher, title="Survives outages")
    client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    assert client.get(f"/v1/courses/{course['id']}", headers=student.headers).status_code == 200  # now cached

    assert private.stop("redis")
    with caplog.at_level(logging.WARNING, logger="api.cache"):
        reads = [client.get(f"/v1/courses/{course['id']}", headers=student.headers) for _ in range(3)]
        for read in reads:
            assert read.status_code == 200, read.text
            assert read.json()["title"] == "Survives outages"
        listed = client.get("/v1/courses", headers=student.headers)
        reads.append(listed)
        assert listed.status_code == 200 and [c["id"] for c in listed.json()["items"]] == [course["id"]]
        # writes go on too (their cache invalidation is logged and left to the TTL)
        renamed = client.patch(
            f"/v1/courses/{course['id']}", json={"title": "Renamed offline"}, headers=teacher.headers
        )
        assert renamed.status_code == 200
        reads.append(client.get(f"/v1/courses/{course['id']}", headers=student.headers))
        assert reads[-1].json()["title"] == "Renamed offline"
        # uploads go on: the job is recorded in PostgreSQL only, and readable from there
        uploads = [
            client.post(
                f"/v1/courses/{course['id']}/documents",
                files=[("files", (f"outage{i}.pdf", short_pdf(f"Written while Redis was down, {i}."), PDF))],
                headers=teacher.headers,
            )
            for i in range(2)
        ]
        assert [u.status_code for u in uploads] == [202, 202], [u.text for u in uploads]
        jobs = [u.json()["jobs"][0]["job_id"] for u in uploads]
        during = [client.get(f"/v1/jobs/{job}", headers=teacher.headers) for job in jobs]
        assert [(r.status_code, r.json()["status"]) for r in during] == [(200, "queued")] * 2
    assert any("degraded" in r.getMessage() for r in caplog.records)
    assert any("recorded in PostgreSQL only" in r.getMessage() for r in caplog.records)

    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert [d["ok"] for d in body["dependencies"] if d["name"] == "redis"] == [False]
    metrics = client.get("/metrics").text
    assert "lakehouse_redis_up 0.0" in metrics
    assert any(line.startswith("lakehouse_redis_errors_total") for line in metrics.splitlines())

    # Sessions live in Redis: login cannot start one, and says so in the error model.
    login = client.post("/v1/auth/login", json={"email": student.email, "password": PASSWORD})
    assert login.status_code == 503 and login.headers.get("Retry-After")
    login_while_down = login.status_code
    assert login.headers["content-type"] == "application/problem+json"

    # Live notifications need Redis: the WebSocket closes with 1011 and says why.
    import asyncio

    import websockets

    with LiveServer(settings) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token={student.access_token}"

        async def close_code() -> int | None:
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=10)
                return closed.value.rcvd.code if closed.value.rcvd else None

        ws_code_while_down = asyncio.run(close_code())
        assert ws_code_while_down == 1011

    # Redis comes back: once the breaker's back-off has passed, sessions and the cache work again.
    private.up()
    deadline = time.monotonic() + settings.redis.down_backoff_s + 15
    while time.monotonic() < deadline:
        login = client.post("/v1/auth/login", json={"email": student.email, "password": PASSWORD})
        if login.status_code == 200:
            break
        time.sleep(0.5)
    assert login.status_code == 200, login.text
    assert client.get("/readyz").json()["status"] == "ready"

    # The WebSocket reconnects, then the worker reports the uploads done (the ingest stream's own
    # status sinks): the messages reach the socket and the jobs show their final status.
    recovered = _worker_reports_after_recovery(settings, teacher=teacher, jobs=jobs)
    final = [client.get(f"/v1/jobs/{job}", headers=teacher.headers).json() for job in jobs]
    documents = client.get(f"/v1/courses/{course['id']}/documents", headers=teacher.headers).json()["items"]
    report_counts(
        "Redis stopped during uploads and reads",
        [
            ("reads while down answered 200", 5, sum(1 for r in reads if r.status_code == 200)),
            ("uploads while down answered 202", 2, len(jobs)),
            ("jobs readable while down (PostgreSQL)", 2, sum(1 for r in during if r.status_code == 200)),
            ("login while down (sessions need Redis)", 503, login_while_down),
            ("WebSocket close code while down", 1011, ws_code_while_down),
            ("WebSocket reconnected, snapshot", 1, recovered["snapshots"]),
            ("  jobs in the snapshot", "0..2", recovered["snapshot_jobs"]),
            ("  job messages after recovery", 2, len(recovered["messages"])),
            ("jobs succeeded afterwards (GET)", 2, sum(1 for j in final if j["status"] == "succeeded")),
            ("documents indexed afterwards", 2, sum(1 for d in documents if d["status"] == "indexed")),
        ],
    )
    assert recovered["snapshots"] == 1
    assert sorted(m["job"]["job_id"] for m in recovered["messages"]) == sorted(jobs)
    assert {m["job"]["status"] for m in recovered["messages"]} == {"succeeded"}
    assert [(j["status"], j["stage"]) for j in final] == [("succeeded", "indexed")] * 2
    assert sorted(d["status"] for d in documents) == ["indexed", "indexed"]


def _uploaded_events(settings, jobs: list[str]) -> list:
    from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
    from streaming.kafka import json_consumer

    consumer = json_consumer(
        settings.kafka, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), group_id=None, consumer_timeout_ms=4000
    )
    try:
        events = [DocumentUploaded.model_validate(m.value) for m in consumer]
    finally:
        consumer.close()
    return [e for e in events if e.job_id in jobs]


def _worker_reports_after_recovery(settings, *, teacher, jobs: list[str]) -> dict:
    from spark_jobs.ingest.status_sinks import FanOutSink, RedisKafkaStatusSink
    from spark_jobs.status_postgres import PostgresStatusSink

    events = _uploaded_events(settings, jobs)
    assert len(events) == 2, f"{len(events)} upload events of 2 on the topic"
    with LiveServer(settings) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token={teacher.access_token}"

        async def scenario() -> dict:
            async with websockets.connect(url) as ws:
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                sink = FanOutSink(PostgresStatusSink(settings), RedisKafkaStatusSink(settings))
                try:
                    for event in events:
                        await asyncio.to_thread(sink.indexed, event, pages=1, chunks=1, seconds=0.1)
                    await asyncio.to_thread(sink.flush)
                finally:
                    sink.close()
                messages = []
                while len(messages) < 2:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                    if message["type"] == "job" and message["job"]["status"] == "succeeded":
                        messages.append(message)
                return {
                    "snapshots": int(snapshot["type"] == "snapshot"),
                    "snapshot_jobs": len(snapshot.get("jobs", [])),
                    "messages": messages,
                }

        return asyncio.run(scenario())
