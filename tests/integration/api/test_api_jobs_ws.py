"""Jobs: GET /v1/jobs/{id}, and WS /v1/notifications relaying progress published by another process."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest
import websockets

from core.settings import PROJECT_ROOT
from tests.integration.api.api_testkit import PASSWORD, LiveServer

pytestmark = pytest.mark.integration


def _account(base_url: str, role: str, suffix: str) -> tuple[str, str]:
    email = f"{role}-ws-{suffix}@example.com"
    with httpx.Client(base_url=base_url, timeout=10) as http:
        user = http.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "W", "role": role}
        )
        assert user.status_code == 201, user.text
        tokens = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return user.json()["id"], tokens["access_token"]


def _report_from_another_process(settings, job_id: str, updates: list[dict]) -> None:
    """A worker that is not the API: a separate Python process reporting through core.jobs."""
    code = textwrap.dedent(
        f"""
        import json, time
        from core.redis import redis_client
        from core.jobs import JobReporter
        from core.settings import RedisSettings
        redis = redis_client(RedisSettings(**json.loads({json.dumps(settings.redis.model_dump_json())})))
        reporter = JobReporter(redis)
        for change in json.loads({json.dumps(json.dumps(updates))}):
            assert reporter.update({job_id!r}, **change) is not None
            time.sleep(0.05)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


async def _receive(ws, count: int, timeout_s: float = 15) -> list[dict]:
    return [json.loads(await asyncio.wait_for(ws.recv(), timeout_s)) for _ in range(count)]


def test_websocket_receives_progress_published_by_a_separate_process(api_settings, run_id):
    with LiveServer(api_settings) as server:
        services = server.app.state.services
        user_id, token = _account(server.url, "instructor", run_id)
        course = httpx.post(
            f"{server.url}/v1/courses", json={"title": "Live"}, headers={"Authorization": f"Bearer {token}"}
        ).json()
        job = services.jobs.create(kind="ingest", user_id=user_id, course_id=course["id"], pages_total=3)
        ws_url = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token={token}"
        updates = [
            {"status": "running", "pages_done": 1, "eta_s": 2.0},
            {"pages_done": 2, "eta_s": 1.0},
            {"pages_done": 3, "status": "succeeded", "eta_s": 0.0},
        ]

        async def scenario() -> tuple[dict, list[dict]]:
            async with websockets.connect(ws_url) as ws:
                snapshot = (await _receive(ws, 1))[0]
                publisher = asyncio.to_thread(_report_from_another_process, api_settings, job.job_id, updates)
                events, _ = await asyncio.gather(_receive(ws, 3), publisher)
                return snapshot, events

        snapshot, events = asyncio.run(scenario())
        assert snapshot["type"] == "snapshot"
        assert [j["job_id"] for j in snapshot["jobs"]] == [job.job_id]
        assert [e["type"] for e in events] == ["job"] * 3
        assert [(e["job"]["status"], e["job"]["pages_done"]) for e in events] == [
            ("running", 1),
            ("running", 2),
            ("succeeded", 3),
        ]

        status = httpx.get(f"{server.url}/v1/jobs/{job.job_id}", headers={"Authorization": f"Bearer {token}"})
        assert status.status_code == 200
        assert (status.json()["status"], status.json()["pages_done"], status.json()["pages_total"]) == (
            "succeeded",
            3,
            3,
        )
        # A read never writes: the worker that finishes a job records the outcome itself
        # (spark_jobs/status_postgres.py through records.documents, tested in spark_jobs/).

        # someone else cannot see the job
        _, stranger = _account(server.url, "student", run_id)
        hidden = httpx.get(f"{server.url}/v1/jobs/{job.job_id}", headers={"Authorization": f"Bearer {stranger}"})
        assert hidden.status_code == 404


def test_reconnecting_client_gets_the_current_state_of_its_open_jobs_first(api_settings, run_id):
    with LiveServer(api_settings) as server:
        services = server.app.state.services
        user_id, token = _account(server.url, "student", run_id)
        open_job = services.jobs.create(kind="ingest", user_id=user_id, pages_total=10)
        done_job = services.jobs.create(kind="summarise", user_id=user_id)
        # progress while no client is connected
        _report_from_another_process(api_settings, open_job.job_id, [{"status": "running", "pages_done": 4}])
        _report_from_another_process(api_settings, done_job.job_id, [{"status": "failed", "error": "PDF is encrypted"}])
        ws_url = f"ws://127.0.0.1:{server.port}/v1/notifications?access_token={token}"

        async def first_message() -> dict:
            async with websockets.connect(ws_url) as ws:
                return (await _receive(ws, 1))[0]

        snapshot = asyncio.run(first_message())
        assert snapshot["type"] == "snapshot"
        assert [(j["job_id"], j["status"], j["pages_done"]) for j in snapshot["jobs"]] == [
            (open_job.job_id, "running", 4)
        ]
        failed = httpx.get(f"{server.url}/v1/jobs/{done_job.job_id}", headers={"Authorization": f"Bearer {token}"})
        assert failed.json()["status"] == "failed" and failed.json()["error"] == "PDF is encrypted"

        # jobs are found in PostgreSQL when Redis no longer has them (expired live state)
        services.redis.client.delete(f"job:{open_job.job_id}")
        durable = httpx.get(f"{server.url}/v1/jobs/{open_job.job_id}", headers={"Authorization": f"Bearer {token}"})
        assert durable.status_code == 200 and durable.json()["status"] == "queued"  # last durable state


def test_websocket_refuses_a_bad_token(api_settings):
    with LiveServer(api_settings) as server:

        async def attempt() -> tuple[dict, int]:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/v1/notifications?access_token=nope") as ws:
                message = json.loads(await ws.recv())
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                return message, closed.value.rcvd.code

        message, code = asyncio.run(attempt())
        assert message["status"] == 401
        assert code == 4401
