"""One PostgreSQL shard down: requests routed to it get 503 with a reason, the other shards keep
answering, and the shard serves again once it is back.

The shards are databases of this test only (created, migrated and dropped here) on the stack's
server, which is never stopped: the broken shard is made unreachable the way a stopped server
looks to the API — new connections refused (``ALLOW_CONNECTIONS false``) and its open pooled
connections terminated.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.integration.api.api_testkit import PASSWORD, create_course, shard_conn, sign_up
from tests.integration.shard_testkit import migrated_shards
from tests.reliability.faultkit import derive


@pytest.fixture
def shard_settings(api_settings):
    settings = derive(
        api_settings,
        postgres={"shards": 2, "shard_db_prefix": f"lakehouse_rel_{uuid.uuid4().hex[:8]}_", "pool_timeout_s": 1.5},
        api={"cache_enabled": False},  # every read reaches its shard
    )
    with migrated_shards(settings):
        try:
            yield settings
        finally:
            _allow(settings, settings.postgres.shard_names(), True)


def _allow(settings, databases: list[str], allowed: bool) -> None:
    with psycopg.connect(settings.postgres.dsn("postgres"), autocommit=True) as conn:
        for name in databases:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(name), sql.SQL("true" if allowed else "false")
                )
            )
            if not allowed:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _shard_holding(settings, table: str, row_id: str, *, column: str = "id") -> int:
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            if conn.execute(f"SELECT 1 FROM {table} WHERE {column} = %s", (row_id,)).fetchone():
                return shard
    raise AssertionError(f"{table} {row_id} is on no shard")


def test_a_stopped_shard_answers_503_with_a_reason_and_the_other_shard_keeps_working(
    shard_settings, make_client, report_counts
):
    settings = shard_settings
    client = make_client(settings)
    while True:  # a teacher whose account and email index share a shard: logging in needs both
        teacher = sign_up(client, role="instructor")
        teacher_shard = _shard_holding(settings, "users", teacher.user_id)
        if _shard_holding(settings, "email_index", teacher.email.lower(), column="email") == teacher_shard:
            break
    down = 1 - teacher_shard  # the teacher's own rows stay reachable
    courses: dict[int, list[dict]] = {0: [], 1: []}
    while not courses[down] or not courses[teacher_shard]:
        course = create_course(client, teacher, title=f"Course {uuid.uuid4().hex[:6]}")
        courses[_shard_holding(settings, "courses", course["id"])].append(course)
    dead, alive = courses[down][0], courses[teacher_shard][0]

    _allow(settings, [settings.postgres.shard_names()[down]], False)
    started = time.monotonic()
    to_dead = [client.get(f"/v1/courses/{dead['id']}", headers=teacher.headers) for _ in range(3)]
    dead_seconds = (time.monotonic() - started) / 3
    to_dead.append(client.patch(f"/v1/courses/{dead['id']}", json={"title": "x"}, headers=teacher.headers))
    to_alive = [client.get(f"/v1/courses/{alive['id']}", headers=teacher.headers) for _ in range(3)]
    to_alive.append(client.patch(f"/v1/courses/{alive['id']}", json={"title": "Still here"}, headers=teacher.headers))
    login = client.post("/v1/auth/login", json={"email": teacher.email, "password": PASSWORD})

    _allow(settings, [settings.postgres.shard_names()[down]], True)
    deadline = time.monotonic() + 15
    while True:  # the pool reconnects on its own
        back = client.get(f"/v1/courses/{dead['id']}", headers=teacher.headers)
        if back.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)

    statuses_dead = [r.status_code for r in to_dead]
    statuses_alive = [r.status_code for r in to_alive]
    report_counts(
        "one PostgreSQL shard down",
        [
            ("requests to the down shard", 4, len(to_dead)),
            ("  answered 503", 4, statuses_dead.count(503)),
            ("  with Retry-After", 4, sum(1 for r in to_dead if r.headers.get("Retry-After"))),
            ("  seconds per refused read", "<=3", round(dead_seconds, 2)),
            ("requests to the other shard", 4, len(to_alive)),
            ("  answered 200", 4, statuses_alive.count(200)),
            ("login (account on the other shard)", 200, login.status_code),
            ("down shard after it is back", 200, back.status_code),
        ],
    )
    assert statuses_dead == [503] * 4, [r.text for r in to_dead]
    for response in to_dead:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers.get("Retry-After")
        assert "database" in response.json()["detail"].lower()
    assert statuses_alive == [200] * 4, [r.text for r in to_alive]
    assert to_alive[-1].json()["title"] == "Still here"
    assert login.status_code == 200, login.text
    assert back.status_code == 200 and back.json()["title"] == dead["title"], "a refused PATCH changed nothing"
