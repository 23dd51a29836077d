"""The CLI commands run as a user runs them: `python -m cli ...` in a subprocess, against the real
shards, Redis and Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
from core.settings import PROJECT_ROOT
from processing.samples import short_pdf
from streaming.kafka import json_consumer
from tests.integration.api.api_testkit import create_course, derive, sign_up

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]

STRONG = "Correct-Horse-7-Battery"


def _env(settings) -> dict[str, str]:
    """The settings under test as the environment variables a CLI process reads."""
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_POSTGRES__SHARDS": str(settings.postgres.shards),
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "LAKEHOUSE_OBJECT_STORE__LOCAL_ROOT": str(settings.object_store.local_root),
        "LAKEHOUSE_API__JWT_SECRET": settings.api.jwt_secret.get_secret_value(),
    }


def _cli(settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(settings),
        cwd=PROJECT_ROOT,
        timeout=120,
        check=False,
    )


def test_create_admin_makes_an_admin_who_can_log_in_and_refuses_weak_passwords(api_settings, client):
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    for weak in ("short1A!", "alllowercaseletters", f"{email.split('@')[0]}-Aa1!xyzw", "Password-123456789"):
        refused = _cli(api_settings, "users", "create-admin", email, stdin=weak + "\n")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "password refused" in refused.stderr
    assert client.post("/v1/auth/login", json={"email": email, "password": STRONG}).status_code == 401

    created = _cli(api_settings, "users", "create-admin", email, "--name", "Root", stdin=STRONG + "\n")
    assert created.returncode == 0, created.stdout + created.stderr
    assert STRONG not in created.stdout + created.stderr  # the password is never echoed
    login = client.post("/v1/auth/login", json={"email": email, "password": STRONG})
    assert login.status_code == 200
    me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}).json()
    assert me["role"] == "admin" and me["display_name"] == "Root"

    again = _cli(api_settings, "users", "create-admin", email, stdin=STRONG + "\n")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_jobs_retry_requeues_failed_documents_with_a_new_job_and_attempt(api_settings, tmp_path):
    settings = derive(
        api_settings, kafka={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."}, object_store={"local_root": tmp_path}
    )
    kafka_down = derive(settings, kafka={"bootstrap_servers": "127.0.0.1:1"})
    with TestClient(create_app(kafka_down)) as client:
        owner = sign_up(client, role="instructor")
        course = create_course(client, owner)
        pdf = short_pdf(f"retry me {uuid.uuid4()}")
        files = [("files", ("a.pdf", pdf, "application/pdf"))]
        response = client.post(f"/v1/courses/{course['id']}/documents", files=files, headers=owner.headers)
        assert response.status_code == 503
        [failed] = client.get(f"/v1/courses/{course['id']}/documents", headers=owner.headers).json()["items"]
        assert failed["status"] == "failed"

    retried = _cli(settings, "jobs", "retry", "--failed", "--course", course["id"])
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "Re-queued 1 document" in retried.stdout

    with TestClient(create_app(settings)) as client:
        [queued] = client.get(f"/v1/courses/{course['id']}/documents", headers=owner.headers).json()["items"]
        assert (queued["id"], queued["version"], queued["status"], queued["error"]) == (
            failed["id"],
            failed["version"],
            "queued",
            None,
        )
    consumer = json_consumer(settings.kafka, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), group_id=None)
    events: list[DocumentUploaded] = []
    deadline = time.monotonic() + 30
    while not events and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            events += [DocumentUploaded.model_validate(m.value) for m in records]
    consumer.close()
    [event] = events
    assert (event.document_id, event.version, event.attempt) == (failed["id"], failed["version"], 2)

    nothing_left = _cli(settings, "jobs", "retry", "--failed", "--course", course["id"])
    assert nothing_left.returncode == 0 and "Re-queued 0 document" in nothing_left.stdout
    bad_course = _cli(settings, "jobs", "retry", "--failed", "--course", "not-a-uuid")
    assert bad_course.returncode == 2 and "UUID" in bad_course.stderr
