"""Helpers of the course-service integration tests (accounts, direct shard access, a live server)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from fastapi.testclient import TestClient

from api.main import create_app, uvicorn_proxy_options
from core.settings import Settings

TEST_SHARDS = 3
PASSWORD = "correct horse battery staple"


def derive(settings: Settings, **sections: dict) -> Settings:
    """``settings`` with some section fields replaced, e.g. ``derive(s, api={"cache_enabled": False})``."""
    data = settings.model_dump()
    for section, values in sections.items():
        data[section].update(values)
    return Settings(**data)


@dataclass
class Account:
    user_id: str
    email: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def sign_up(client: TestClient, *, role: str = "student", email: str | None = None) -> Account:
    email = email or f"{role}-{uuid.uuid4().hex[:10]}@example.com"
    created = client.post(
        "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": role.title(), "role": role}
    )
    assert created.status_code == 201, created.text
    tokens = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(created.json()["id"], email, role, body["access_token"], body["refresh_token"])


def create_course(client: TestClient, owner: Account, title: str = "Linear Algebra") -> dict:
    response = client.post("/v1/courses", json={"title": title, "description": "vectors"}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


def shard_conn(settings: Settings, shard: int) -> psycopg.Connection:
    """A direct connection to one shard database (bypassing the app), for checking placement."""
    return psycopg.connect(settings.postgres.dsn(settings.postgres.shard_names()[shard]), autocommit=True)


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows per table summed over every shard (to prove a refused request wrote nothing)."""
    tables = ("users", "email_index", "enrolments", "courses", "course_members", "join_codes", "documents", "jobs")
    totals = dict.fromkeys(tables, 0)
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            for table in tables:
                totals[table] += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return totals


def wait_ready(client: TestClient, *, timeout_s: float = 60) -> dict:
    """The /readyz body once it no longer says `starting` (search loads in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get("/readyz").json()
        if body["status"] != "starting" or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app under uvicorn in a thread, on a free loopback port (for WebSocket tests)."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        self.app = create_app(settings)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                ws="websockets-sansio",
                **uvicorn_proxy_options(settings.api),
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
