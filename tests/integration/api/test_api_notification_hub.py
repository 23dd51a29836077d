"""WS /v1/notifications over the instance's one Redis subscriber: fan-out to the right user's
sockets, one Redis connection however many sockets, delivery resumes after the subscriber's
connection is killed."""

import asyncio
import json
import time

import httpx
import pytest
import websockets

from core.keys import notifications_channel
from core.redis import redis_client
from tests.integration.api.api_testkit import PASSWORD, LiveServer

pytestmark = pytest.mark.integration


def _login(base_url: str, suffix: str) -> tuple[str, str]:
    email = f"hub-{suffix}@example.com"
    with httpx.Client(base_url=base_url, timeout=10) as http:
        user = http.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "H", "role": "student"}
        )
        assert user.status_code == 201, user.text
        token = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    return user.json()["id"], token


def _hub_clients(redis, name: str) -> list[dict]:
    return [c for c in redis.client_list() if c.get("name") == name]


def test_one_subscriber_fans_out_per_user_and_survives_a_killed_connection(api_settings, run_id):
    redis = redis_client(api_settings.redis)
    with LiveServer(api_settings) as server:
        hub = server.app.state.services.hub
        alice, alice_token = _login(server.url, f"a-{run_id}")
        bob, bob_token = _login(server.url, f"b-{run_id}")
        ws = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token="

        def publish(user_id: str, marker: str) -> None:
            event = {"type": "job", "job": {"job_id": marker, "user_id": user_id}}
            redis.publish(notifications_channel(user_id), json.dumps(event))

        async def next_job(socket, timeout_s: float = 10) -> str:
            return json.loads(await asyncio.wait_for(socket.recv(), timeout_s))["job"]["job_id"]

        async def scenario() -> dict:
            sockets = [await websockets.connect(ws + alice_token) for _ in range(3)]
            sockets += [await websockets.connect(ws + bob_token) for _ in range(2)]
            try:
                for socket in sockets:
                    assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "snapshot"
                seen: dict = {"hub_connections": len(_hub_clients(redis, hub.client_name))}
                seen["listeners"] = hub.listeners

                publish(alice, "for-alice")
                publish(bob, "for-bob")
                seen["alice"] = [await next_job(s) for s in sockets[:3]]
                seen["bob"] = [await next_job(s) for s in sockets[3:]]

                # Kill the hub's Redis connection: the reader reconnects and subscribes again.
                killed = _hub_clients(redis, hub.client_name)
                seen["killed_id"] = killed[0]["id"]
                redis.client_kill_filter(_id=killed[0]["id"])
                started = time.monotonic()
                delivered = None
                while delivered is None and time.monotonic() - started < 20:
                    publish(alice, "after-kill")
                    try:
                        delivered = await next_job(sockets[0], timeout_s=0.3)
                    except TimeoutError:
                        continue
                seen["after_kill"] = delivered
                seen["reconnects"] = hub.reconnects
                seen["hub_connections_after"] = _hub_clients(redis, hub.client_name)
                await sockets[1].send("ping")
                while (message := json.loads(await asyncio.wait_for(sockets[1].recv(), 10)))["type"] != "pong":
                    pass  # "after-kill" events may be queued ahead of the pong
                seen["pong"] = message
            finally:
                for socket in sockets:
                    await socket.close()
            return seen

        seen = asyncio.run(scenario())
        deadline = time.monotonic() + 10
        while hub.listeners and time.monotonic() < deadline:
            time.sleep(0.05)
        listeners_after_close = hub.listeners
    redis.close()

    assert seen["hub_connections"] == 1  # five sockets, one Redis connection
    assert seen["listeners"] == 5
    assert seen["alice"] == ["for-alice"] * 3 and seen["bob"] == ["for-bob"] * 2  # nobody gets another's
    assert seen["after_kill"] == "after-kill" and seen["reconnects"] >= 1
    assert len(seen["hub_connections_after"]) == 1
    assert seen["hub_connections_after"][0]["id"] != seen["killed_id"]
    assert seen["pong"] == {"type": "pong"}
    assert listeners_after_close == 0  # closed sockets leave nothing behind
