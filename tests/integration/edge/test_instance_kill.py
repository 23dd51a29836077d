"""nginx in front of two API instances (``deploy/edge.py``, as ``stack up --api-instances 2``
starts them): one instance is killed with SIGKILL while clients keep reading through nginx.
No request may fail beyond the ones in flight at the kill (nginx retries idempotent ones on
the other instance), and a notifications WebSocket that lived on the killed instance is
dropped, reconnects through nginx and keeps receiving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import websockets

from core.keys import notifications_channel
from core.redis import redis_client
from deploy.edge import Edge
from deploy.stack import Stack
from tests.integration.api.api_testkit import create_course, derive, sign_up
from tests.integration.edge.edge_testkit import free_ports

pytestmark = pytest.mark.integration
UPLOAD_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def edge(api_settings, tmp_path_factory) -> Iterator[Edge]:
    api_port, _, edge_port = free_ports(3)
    settings = derive(
        api_settings,
        stack={"state_dir": tmp_path_factory.mktemp("edge") / "state"},
        api={"port": api_port, "max_upload_bytes": UPLOAD_LIMIT},
        edge={"port": edge_port},
    )
    edge = Edge(Stack(settings))
    try:
        started = time.perf_counter()
        edge.up(instances=2)
        print(f"\n[edge] 2 API instances + nginx up in {time.perf_counter() - started:.1f} s")
        yield edge
    finally:
        edge.down()


@dataclass
class Load:
    """Client threads reading one course through nginx, counting what failed and what was in flight."""

    url: str
    headers: dict[str, str]
    path: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as client:
            while not self.stop.is_set():
                with self.lock:
                    self.in_flight += 1
                try:
                    response = client.get(self.path)
                    outcome = None if response.status_code == 200 else f"{response.status_code} {response.text[:80]}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.in_flight -= 1
                    if outcome is None:
                        self.ok += 1
                    else:
                        self.failed.append(outcome)


@dataclass
class Listener:
    """A notifications WebSocket client that reconnects (as the page does) and records events."""

    url: str
    connects: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    events: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        while not self.stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=5) as socket:
                    message = json.loads(await socket.recv())
                    assert message["type"] == "snapshot", message
                    self.connects += 1
                    self.connected.set()
                    while not self.stop.is_set():
                        try:
                            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=0.2))
                        except TimeoutError:
                            continue
                        if message.get("type") == "job":
                            self.events.append(message["job"]["job_id"])
            except (websockets.ConnectionClosed, OSError, TimeoutError):
                self.connected.clear()
                await asyncio.sleep(0.2)


def _publish(settings, user_id: str) -> str:
    job_id = uuid.uuid4().hex
    now = time.time()
    job = {"job_id": job_id, "kind": "edge_test", "user_id": user_id, "status": "running", "pages_done": 1,
           "pages_total": 2, "created_at": now, "updated_at": now}  # fmt: skip
    client = redis_client(settings.redis)
    try:
        client.publish(notifications_channel(user_id), json.dumps({"type": "job", "job": job}))
    finally:
        client.close()
    return job_id


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_nginx_serves_the_page_passes_request_ids_and_refuses_bodies_over_the_api_limit(edge):
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-cache" and page.headers["etag"]
        asset = page.text.split('src="', 1)[1].split('"', 1)[0]  # /assets/app.<sha>.js
        zipped = client.get(asset, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"]
        assert (
            client.get(asset, headers={"If-None-Match": zipped.headers["etag"], "Accept-Encoding": "gzip"}).status_code
            == 304
        )
        request_id = uuid.uuid4().hex
        assert client.get("/healthz", headers={"X-Request-ID": request_id}).headers["x-request-id"] == request_id
    # A declared body over the limit is refused from its headers, before any byte of it is read.
    assert _post_head_only(edge, f"/v1/courses/{uuid.uuid4()}/documents", UPLOAD_LIMIT + 1).startswith("HTTP/1.1 413")
    log: list[dict] = []

    def logged() -> bool:  # nginx writes a request's line when it has finished with it, not before
        log[:] = [json.loads(line) for line in (edge.prefix / "logs" / "access.json").read_text().splitlines()]
        return any(entry["status"] == 413 for entry in log)

    _wait(logged, 5, "the 413 in nginx's access log")
    assert any(entry["request_id"] == request_id and entry["upstream_addr"] for entry in log)
    refused = [entry for entry in log if entry["status"] == 413]
    assert refused and refused[-1]["upstream_addr"] == ""  # nginx refused it; no instance saw the body


def _post_head_only(edge: Edge, path: str, content_length: int) -> str:
    """The status line nginx answers to a POST that only declares its length."""
    import socket

    with socket.create_connection(("127.0.0.1", edge.settings.edge.port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n".encode()
        )
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_killing_one_instance_fails_no_request_beyond_those_in_flight_and_websockets_reconnect(edge):
    settings = edge.settings
    with httpx.Client(base_url=edge.url, timeout=10) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
    ws_url = edge.url.replace("http://", "ws://") + f"/v1/notifications?access_token={owner.access_token}"
    # Two sockets in a row: nginx's round robin puts them on different instances.
    listeners = [Listener(ws_url), Listener(ws_url)]
    threads = []
    for listener in listeners:
        threads.append(threading.Thread(target=listener.run, daemon=True))
        threads[-1].start()
        assert listener.connected.wait(10)
    before = _publish(settings, owner.user_id)
    _wait(lambda: all(before in listener.events for listener in listeners), 5, "both sockets get the first event")

    load = Load(edge.url, owner.headers, f"/v1/courses/{course['id']}")
    workers = [threading.Thread(target=load.run, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    ok_before_kill = load.ok
    victim = edge.stack.running_pid("api-1")
    assert victim is not None
    with load.lock:
        in_flight_at_kill = load.in_flight
        os.kill(victim, signal.SIGKILL)
    killed_at = time.perf_counter()
    _wait(
        lambda: (
            all(listener.connected.is_set() for listener in listeners)
            and sum(listener.connects for listener in listeners) >= 3
        ),
        15,
        "the dropped socket reconnects through nginx",
    )
    reconnect_s = time.perf_counter() - killed_at
    after = _publish(settings, owner.user_id)
    _wait(lambda: all(after in listener.events for listener in listeners), 5, "both sockets get the next event")
    time.sleep(2.0)
    load.stop.set()
    for worker in workers:
        worker.join(10)
    for listener in listeners:
        listener.stop.set()
    for thread in threads:
        thread.join(5)

    retried = _retried_requests(edge)
    print(
        f"\n[edge] {load.ok} requests ok ({ok_before_kill} before the kill), {len(load.failed)} failed, "
        f"{in_flight_at_kill} in flight at the kill, {retried} retried by nginx on the other instance; "
        f"the dropped WebSocket reconnected in {reconnect_s:.2f} s"
    )
    assert load.ok > ok_before_kill > 20
    assert len(load.failed) <= in_flight_at_kill, load.failed
    assert sorted(listener.connects for listener in listeners) == [1, 2]  # one socket lived on the killed instance


def _retried_requests(edge: Edge) -> int:
    """Requests nginx sent to two upstreams (``upstream_addr`` lists both), from its JSON access log."""
    lines = (edge.prefix / "logs" / "access.json").read_text().splitlines()
    return sum("," in json.loads(line)["upstream_addr"] for line in lines)
