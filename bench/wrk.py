"""What the API benches share: wrk, the native load generator, as they drive it (the Lua script that
reads the token from the environment and prints one JSON summary line, one run), the account and
course the runs read, the private stores a bench API runs on and the uvicorn process itself
(started, waited for until ready, stopped)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.redis import redis_client
from core.settings import Settings
from deploy.migrate import create_databases, drop_databases, migrate

ROOT = Path(__file__).resolve().parent.parent
# The options every bench uvicorn process gets unless a bench says otherwise.
UVICORN_ARGS = "--workers 1 --no-access-log --log-level warning --loop uvloop --http httptools".split()

# wrk: the token from the environment; the summary as one JSON line (latencies in microseconds).
WRK_SCRIPT = """
local token = os.getenv("BENCH_TOKEN")
if token and #token > 0 then wrk.headers["Authorization"] = "Bearer " .. token end
wrk.headers["Accept"] = "application/json"
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d,'
    .. ' "non_2xx": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def seed(base_url: str, *, title: str) -> tuple[str, str]:
    """An instructor and a course: returns (access token, course id)."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    password = "benchmark password 123"  # noqa: S105 - a throwaway account on private databases
    with httpx.Client(base_url=base_url, timeout=10) as http:
        http.post(
            "/v1/auth/signup", json={"email": email, "password": password, "display_name": "B", "role": "instructor"}
        ).raise_for_status()
        token = http.post("/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]
        course = http.post(
            "/v1/courses",
            json={"title": title, "description": "x" * 500},
            headers={"Authorization": f"Bearer {token}"},
        )
        course.raise_for_status()
    return token, course.json()["id"]


def run_wrk(url: str, *, token: str, seconds: float, connections: int, script: Path) -> dict[str, Any]:
    """One ``wrk -t1`` run; returns req/s, p50/p99 (ms) and error counts."""
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    proc = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url],
        env={**os.environ, "BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
    }


@dataclass(frozen=True)
class PrivateStack:
    """Private stores for one bench run: ``settings`` for this process, ``env`` for an API process."""

    settings: Settings
    env: dict[str, str]
    lance_dir: Path


@contextmanager
def private_stack(*, lance_prefix: str) -> Iterator[PrivateStack]:
    """Two private PostgreSQL shards (created and migrated), a private Redis key prefix and a temporary
    LanceDB directory (named ``lance_prefix``...), with the rate limits out of the way; all removed on exit."""
    run = uuid.uuid4().hex[:8]
    lance_dir = Path(tempfile.mkdtemp(prefix=lance_prefix))
    settings = Settings(
        postgres={"shards": 2, "shard_db_prefix": f"lakehouse_bench_{run}_"},
        redis={"key_prefix": f"bench:{run}:"},
        lancedb={"uri": str(lance_dir)},
    )
    env = {
        "LAKEHOUSE_POSTGRES__SHARDS": "2",
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_LANCEDB__URI": str(lance_dir),
        "LAKEHOUSE_API__RATE_LIMIT_PER_MINUTE": "100000000",
        "LAKEHOUSE_API__RATE_LIMIT_IP_PER_MINUTE": "100000000",
        "LAKEHOUSE_API__LOG_LEVEL": "WARNING",
    }
    create_databases(settings.postgres)
    try:
        migrate(settings.postgres)
        yield PrivateStack(settings=settings, env=env, lance_dir=lance_dir)
    finally:
        drop_databases(settings.postgres)
        client = redis_client(settings.redis)
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}*"):
            client.delete(key)
        client.close()
        shutil.rmtree(lance_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``uvicorn <app> --factory`` in a subprocess with the bench's uvicorn options, ready on enter."""

    def __init__(self, app: str, env: dict[str, str], *, ready_path: str, uvicorn_args: list[str]) -> None:
        self.app = app
        self.port = _free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.ready_path = ready_path
        self.uvicorn_args = uvicorn_args
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # not a pipe: a chatty server never blocks on it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "uvicorn", self.app, "--factory", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, *self.uvicorn_args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"{self.app} exited: {self._log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.app} did not become ready")

    def rss_mb(self) -> float:
        import psutil

        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def pss_mb(self) -> float:
        """Proportional set size: shared pages counted once across processes."""
        import psutil

        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_full_info().pss / 2**20

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
