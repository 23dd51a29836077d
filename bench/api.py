"""Cached vs uncached `GET /v1/courses/{id}`: throughput and p50/p99 latency, in one run.

Starts the API twice under uvicorn (1 worker each, one after the other) on private shard
databases and a private Redis key prefix — once with the Redis cache-aside on, once with
``api.cache_enabled=false`` — and drives each with the same bounded async load (httpx).
Everything else (auth, rate-limit buckets in Redis, membership check) is identical, so the
difference is the cache. Prints a table with the ratio. Benchmarks never assert times.

    PYTHONPATH=. .venv/bin/python bench/api.py [--requests 3000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.redis import redis_client  # noqa: E402
from core.settings import Settings  # noqa: E402
from deploy.migrate import create_databases, drop_databases, migrate  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`uvicorn api.main:app_from_env --factory` in a subprocess, configured by environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app_from_env",
                "--factory",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("API did not become ready")

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def seed(base_url: str) -> tuple[str, str]:
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
            json={"title": "Benchmarks 101", "description": "x" * 500},
            headers={"Authorization": f"Bearer {token}"},
        )
        course.raise_for_status()
    return token, course.json()["id"]


async def load(base_url: str, path: str, token: str, *, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Sends ``requests`` GETs over ``concurrency`` keep-alive connections; returns (seconds, latencies).

    A minimal HTTP/1.1 client on asyncio streams: httpx costs more CPU per request than the
    API itself, and on 2 cores the load generator would otherwise be what is measured.
    """
    host, port = base_url.removeprefix("http://").split(":")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    remaining = requests

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"unexpected {status}: {body[:200]!r}")

    async def worker(measure: bool, count: int | None) -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            if count is not None:  # warm-up: connections, first cache fill
                for _ in range(count):
                    await one(reader, writer)
                return
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await one(reader, writer)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(worker(False, 20) for _ in range(concurrency)))
    started = time.perf_counter()
    await asyncio.gather(*(worker(True, None) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    settings = Settings(
        postgres={"shards": 2, "shard_db_prefix": f"lakehouse_bench_{run}_"},
        redis={"key_prefix": f"bench:{run}:"},
    )
    env = {
        "LAKEHOUSE_POSTGRES__SHARDS": "2",
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_API__RATE_LIMIT_PER_MINUTE": "100000000",
        "LAKEHOUSE_API__RATE_LIMIT_IP_PER_MINUTE": "100000000",
        "LAKEHOUSE_API__LOG_LEVEL": "WARNING",
    }
    create_databases(settings.postgres)
    results = {}
    try:
        migrate(settings.postgres)
        token = course_id = None
        for mode, cache_enabled in (("uncached (PostgreSQL)", "false"), ("cached (Redis)", "true")):
            with Server({**env, "LAKEHOUSE_API__CACHE_ENABLED": cache_enabled}) as server:
                if token is None:
                    token, course_id = seed(server.url)
                seconds, latencies = asyncio.run(
                    load(
                        server.url,
                        f"/v1/courses/{course_id}",
                        token,
                        requests=args.requests,
                        concurrency=args.concurrency,
                    )
                )
            results[mode] = (
                len(latencies) / seconds,
                percentile(latencies, 50) * 1000,
                percentile(latencies, 99) * 1000,
            )
    finally:
        drop_databases(settings.postgres)
        client = redis_client(settings.redis)
        for key in client.scan_iter(match=f"{settings.redis.key_prefix}*"):
            client.delete(key)
        client.close()

    print(
        f"\nGET /v1/courses/{{id}}: {args.requests} requests per mode, concurrency {args.concurrency}, "
        f"1 uvicorn worker, {os.cpu_count()} CPUs (load generator on the same machine)\n"
    )
    print(f"{'mode':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for mode, (rps, p50, p99) in results.items():
        print(f"{mode:<24}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    (u_rps, u_p50, u_p99), (c_rps, c_p50, c_p99) = results.values()
    print(f"{'ratio cached/uncached':<24}{c_rps / u_rps:>9.2f}x{c_p50 / u_p50:>9.2f}x{c_p99 / u_p99:>9.2f}x")


if __name__ == "__main__":
    main()
