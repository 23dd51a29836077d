"""Redis down: reads keep answering from PostgreSQL (degraded, logged, metric); sessions say 503."""

import logging
import time

import pytest

from deploy.stack import Stack
from tests.integration.api.api_testkit import PASSWORD, create_course, derive, free_port, sign_up, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(api_settings, tmp_path):
    """A redis-server of this test only (the shared one is never stopped)."""
    port = free_port()
    settings = derive(
        api_settings,
        stack={"state_dir": tmp_path / "state", "services": ("redis",), "install_missing": False},
        redis={"port": port},
    )
    private = Stack(settings)
    private.up()
    yield private, settings
    private.down()


def test_reads_keep_working_while_redis_is_down(private_redis, make_client, caplog):
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
        for _ in range(3):
            read = client.get(f"/v1/courses/{course['id']}", headers=student.headers)
            assert read.status_code == 200, read.text
            assert read.json()["title"] == "Survives outages"
        listed = client.get("/v1/courses", headers=student.headers)
        assert listed.status_code == 200 and [c["id"] for c in listed.json()["items"]] == [course["id"]]
        # writes go on too (their cache invalidation is logged and left to the TTL)
        renamed = client.patch(
            f"/v1/courses/{course['id']}", json={"title": "Renamed offline"}, headers=teacher.headers
        )
        assert renamed.status_code == 200
        assert client.get(f"/v1/courses/{course['id']}", headers=student.headers).json()["title"] == "Renamed offline"
    assert any("degraded" in r.getMessage() for r in caplog.records)

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
    assert login.status_code == 503
    assert login.headers["content-type"] == "application/problem+json"

    # Live notifications need Redis: the WebSocket closes with 1011 and says why.
    import asyncio

    import websockets

    from tests.integration.api.api_testkit import LiveServer

    with LiveServer(settings) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token={student.access_token}"

        async def close_code() -> int | None:
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), timeout=10)
                return closed.value.rcvd.code if closed.value.rcvd else None

        assert asyncio.run(close_code()) == 1011

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
