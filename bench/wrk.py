"""wrk, the native load generator, as the API and edge benches drive it: the Lua script that reads
the token from the environment and prints one JSON summary line, one run, and the account and
course the runs read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx

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
