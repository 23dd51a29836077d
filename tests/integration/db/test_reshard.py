"""Resharding online (``lakehouse db reshard``) on private shard databases of the stack's PostgreSQL.

Data on 2 shards, the API (configured for 2) serving reads in a loop; ``reshard --to 3`` is
SIGKILLed mid-copy and rerun: every user and course answers before, during and after, every
table's row count and checksum are unchanged, no key's rows are on two shards, and a process
configured for 2 shards then refuses to start, naming both maps.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.db import ShardedPostgres, open_checked
from core.jobs import JobState
from core.settings import PROJECT_ROOT, Settings
from core.shard_map import ShardMapMismatch, read_map
from core.sharding import shard_for
from db.reshard import BOOKKEEPING_TABLES, SHARDED_TABLES
from records.courses import CourseRecords
from records.documents import DocumentRecords
from records.study import StudyRecords
from records.users import UserRecords
from tests.integration.api.api_testkit import LiveServer, derive

USERS, COURSES = 48, 16


@pytest.fixture
def two_shards(settings: Settings, stack, run_id: str) -> Iterator[Settings]:
    """Settings for 2 private shard databases (lake_test_reshard_<run>_0..1); all 3 dropped after."""
    from deploy.migrate import create_databases, drop_databases, migrate

    private = derive(
        settings,
        postgres={"shards": 2, "shard_db_prefix": f"lake_test_reshard_{run_id}_", "shard_map_refresh_s": 0.2},
        redis={"key_prefix": f"test:reshard:{run_id}:"},
        api={
            "cache_enabled": False,
            "rate_limit_enabled": False,
            "jwt_secret": f"reshard-test-{run_id}-{uuid.uuid4().hex}",
        },
    )
    create_databases(private.postgres)
    try:
        migrate(private.postgres)
        yield private
    finally:
        drop_databases(private.postgres.model_copy(update={"shards": 3}))


def _seed(settings: Settings) -> tuple[list[dict], list[dict]]:
    """Users with enrolments, quiz attempts and card reviews; courses with members, documents and jobs."""
    db = ShardedPostgres(settings.postgres)
    try:
        users_records, courses_records = UserRecords(db), CourseRecords(db)
        study, documents = StudyRecords(db), DocumentRecords(db)
        users = [
            users_records.create(
                email=f"u{i}-{uuid.uuid4().hex[:6]}@example.com",
                password_hash="x",
                role="instructor",
                display_name=f"User {i}",
            )
            for i in range(USERS)
        ]
        courses = []
        for i in range(COURSES):
            owner = users[i]
            course = courses_records.create(owner_id=owner["id"], title=f"Course {i}", description="")
            course["owner"] = owner
            courses.append(course)
            document_id, now = uuid.uuid4(), time.time()
            job = JobState(
                job_id=str(uuid.uuid4()),
                kind="ingest",
                user_id=str(owner["id"]),
                course_id=str(course["id"]),
                document_id=str(document_id),
                created_at=now,
                updated_at=now,
            )
            documents.insert_version(
                {
                    "id": document_id,
                    "course_id": course["id"],
                    "version": 1,
                    "filename": "a.pdf",
                    "sha256": uuid.uuid4().hex * 2,
                    "size_bytes": 10,
                    "object_key": f"raw/{document_id}",
                    "uploaded_by": owner["id"],
                },
                job=job,
            )
        for i, user in enumerate(users):
            course = courses[(i * 7) % COURSES]
            courses_records.join(course_id=course["id"], user_id=user["id"])
            study.add_attempt(
                attempt_id=uuid.uuid4(),
                user_id=str(user["id"]),
                course_id=str(course["id"]),
                document_id=str(uuid.uuid4()),
                version=1,
                quiz_id="q1",
                score=1,
                max_score=2,
                answers=[{"item": 1, "correct": True}],
            )
            at = datetime(2026, 1, 1, tzinfo=UTC)
            study.record_review(
                review_id=uuid.uuid4(),
                user_id=str(user["id"]),
                card_id=f"c{i}",
                course_id=str(course["id"]),
                rating=3,
                reviewed_at=at,
                due_before=None,
                state_after={"s": i},
                due_after=at + timedelta(days=1),
            )
        return users, courses
    finally:
        db.close()


def _conn(settings: Settings, shards: int, index: int) -> psycopg.Connection:
    pg = settings.postgres.model_copy(update={"shards": shards})
    return psycopg.connect(pg.dsn(pg.shard_names()[index]), autocommit=True)


def _figures(settings: Settings, shards: int, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Per table over every shard: (rows, sum of the first 60 bits of md5(row)), leaving out the
    rows of the routing keys in ``skip`` (the ones written during the move)."""
    totals = {table.name: (0, 0) for table in SHARDED_TABLES}
    for index in range(shards):
        with _conn(settings, shards, index) as conn:
            for table in SHARDED_TABLES:
                rows, checksum = conn.execute(
                    f"SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
                    f" FROM {table.name} t WHERE NOT ({table.key} = ANY(%s))",
                    (list(skip),),
                ).fetchone()
                totals[table.name] = (totals[table.name][0] + rows, totals[table.name][1] + int(checksum))
    return totals


def _placement(settings: Settings, shards: int) -> dict[str, set[int]]:
    """Routing key -> the shards holding any of its rows."""
    where: dict[str, set[int]] = {}
    for index in range(shards):
        with _conn(settings, shards, index) as conn:
            for table in SHARDED_TABLES:
                for (key,) in conn.execute(f"SELECT DISTINCT {table.key} FROM {table.name}"):
                    where.setdefault(key, set()).add(index)
    return where


class Reader(threading.Thread):
    """Reads every user (/v1/users/me), course (/v1/courses/{id}) and "my courses" in a loop."""

    def __init__(self, url: str, calls: list[tuple[str, dict, str]]) -> None:
        super().__init__(name="reshard-reader", daemon=True)
        self.url, self.calls = url, calls
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                for path, headers, expect in self.calls:
                    response = client.get(path, headers=headers)
                    if response.status_code == 200 and expect in response.text:
                        self.ok += 1
                    else:
                        self.failures.append(f"{path}: {response.status_code} {response.text[:200]}")


class Writer(threading.Thread):
    """Signs users up during the move (new keys) and records attempts of existing users (keys that
    move), through a checked ``ShardedPostgres`` configured for 2 shards; a write refused because its
    key just moved (SQLSTATE 55000) is retried, as the API's client would."""

    def __init__(self, settings: Settings, users: list[dict]) -> None:
        super().__init__(name="reshard-writer", daemon=True)
        self.settings, self.users = settings, users
        self.stop = threading.Event()
        self.attempts: list[tuple[str, str]] = []  # (attempt id, user id)
        self.new_users: list[dict] = []
        self.retries = 0
        self.errors: list[str] = []

    def run(self) -> None:
        db = open_checked(self.settings.postgres)
        try:
            study, accounts = StudyRecords(db), UserRecords(db)
            for i in itertools.count():
                if self.stop.is_set():
                    return
                user = self.users[i % len(self.users)]
                attempt = uuid.uuid4()
                self._retrying(
                    functools.partial(
                        study.add_attempt,
                        attempt_id=attempt,
                        user_id=str(user["id"]),
                        course_id=str(uuid.uuid4()),
                        document_id=str(uuid.uuid4()),
                        version=1,
                        quiz_id="during",
                        score=0,
                        max_score=1,
                        answers=[],
                    )
                )
                self.attempts.append((str(attempt), str(user["id"])))
                if i % 5 == 0:
                    email = f"new{i}-{uuid.uuid4().hex[:6]}@example.com"
                    self.new_users.append(
                        self._retrying(
                            functools.partial(
                                accounts.create, email=email, password_hash="x", role="student", display_name="New"
                            )
                        )
                    )
                time.sleep(0.02)
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        finally:
            db.close()

    def _retrying(self, write):
        for _ in range(50):
            try:
                return write()
            except psycopg.errors.ObjectNotInPrerequisiteState:
                self.retries += 1
                time.sleep(0.05)
        raise AssertionError("a write was refused 50 times")


def _reshard(settings: Settings, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LAKEHOUSE_ENVIRONMENT": "test"}
    env |= {f"LAKEHOUSE_POSTGRES__{k.upper()}": str(v) for k, v in settings.postgres.model_dump(mode="json").items()}
    env["LAKEHOUSE_POSTGRES__PASSWORD"] = settings.postgres.password.get_secret_value()
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "db", "reshard", "--to", "3", *extra],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_reshard_2_to_3_online_survives_sigkill_and_refuses_the_old_map(two_shards: Settings):
    settings = two_shards
    users, courses = _seed(settings)
    before = _figures(settings, 2)
    assert before["users"][0] == USERS and before["documents"][0] == COURSES and before["card_reviews"][0] == USERS
    moving_keys = [k for k, shards in _placement(settings, 2).items() if shard_for(k, 3) not in shards]
    assert len(moving_keys) > 10  # about a third of the keys change shard

    with LiveServer(settings) as server:
        tokens = server.app.state.services.tokens
        calls = []
        for user in users:
            token = tokens.access_token(user_id=user["id"], role="instructor", session_id=uuid.uuid4().hex)
            calls.append(("/v1/users/me", {"Authorization": f"Bearer {token}"}, str(user["id"])))
        for course in courses:
            token = tokens.access_token(user_id=course["owner"]["id"], role="instructor", session_id="s")
            headers = {"Authorization": f"Bearer {token}"}
            calls.append((f"/v1/courses/{course['id']}", headers, str(course["id"])))
            calls.append(("/v1/courses", headers, str(course["id"])))  # enrolments on the user's shard
        reader = Reader(server.url, calls)
        reader.start()
        writer = Writer(settings, users)
        writer.start()
        while reader.ok < len(calls) and not reader.failures:  # one full round before the move
            time.sleep(0.05)

        first = _reshard(settings, "--batch-size", "3", "--pause-ms", "120")
        killed_at = None
        for line in first.stdout:  # type: ignore[union-attr]
            if line.split("]")[-1].strip().startswith("copy:"):
                done, total = map(int, line.rsplit(" ", 1)[-1].split("/"))
                if total and done >= total // 3:
                    first.send_signal(signal.SIGKILL)
                    killed_at = (done, total)
                    break
        first.wait(timeout=30)
        assert killed_at is not None and first.returncode == -signal.SIGKILL
        with _conn(settings, 2, 0) as conn:
            interrupted = read_map(conn)
            pending = conn.execute("SELECT count(*) FROM reshard_keys WHERE state = 'pending'").fetchone()[0]
        assert interrupted is not None and interrupted.state == "moving"
        assert _guarded(settings, 2, 0) == _guarded(settings, 2, 1) == {table.name for table in SHARDED_TABLES}
        reads_before_rerun = reader.ok
        time.sleep(0.5)  # reads go on while the move is half done

        second = _reshard(settings, "--batch-size", "10")
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert "resumed from" in output and "rows moved" in output
        time.sleep(0.5)
        reader.stop.set()
        writer.stop.set()
        reader.join(timeout=30)
        writer.join(timeout=30)
        assert writer.errors == [] and len(writer.attempts) > 20 and writer.new_users
        assert reader.failures == [], reader.failures[:5]
        assert reader.ok > reads_before_rerun > len(calls)
        print(
            f"\nkilled at copy {killed_at[0]}/{killed_at[1]} ({pending} keys pending on shard 0), reads served:"
            f" {reader.ok}, writes during the move: {len(writer.attempts)} attempts + {len(writer.new_users)} sign-ups"
            f" ({writer.retries} retried after their key moved)"
        )
        print(output)

    # Rows written during the move are all there, once, on their key's new shard; every other
    # row is unchanged (same count and checksum per table).
    new_keys = [str(user["id"]) for user in writer.new_users] + [user["email"] for user in writer.new_users]
    after = _figures(settings, 3, skip=tuple(new_keys))
    during = {attempt for attempt, _ in writer.attempts}
    expected = {**before, "quiz_attempts": (before["quiz_attempts"][0] + len(during), after["quiz_attempts"][1])}
    assert after == expected
    for index in range(3):
        with _conn(settings, 3, index) as conn:
            rows = conn.execute("SELECT id::text, user_id::text FROM quiz_attempts WHERE quiz_id = 'during'").fetchall()
            assert all(shard_for(user_id, 3) == index for _, user_id in rows)
            during -= {attempt for attempt, _ in rows}
    assert during == set()
    placement = _placement(settings, 3)
    assert set(moving_keys) <= set(placement)
    assert {k: s for k, s in placement.items() if len(s) != 1} == {}  # no key's rows on two shards
    assert {k: s for k, s in placement.items() if s != {shard_for(k, 3)}} == {}
    with _conn(settings, 3, 2) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0  # the new shard holds users
    for index in range(3):
        with _conn(settings, 3, index) as conn:
            recorded = read_map(conn)
            assert recorded is not None and recorded.state == "stable" and recorded.shards == 3
            assert conn.execute("SELECT count(*) FROM reshard_keys").fetchone()[0] == 0
        assert _guarded(settings, 3, index) == set()  # the write fence exists only during a move

    # The old configuration (2 shards) is refused, naming both maps; the new one starts.
    with pytest.raises(ShardMapMismatch) as refused:
        open_checked(settings.postgres)
    message = str(refused.value)
    assert "configured shard map 2 shard(s)" in message and "3 shard(s)" in message, message
    with pytest.raises(ShardMapMismatch), TestClient(create_app(settings)):
        pass  # the API's lifespan refuses to start
    db = open_checked(settings.postgres.model_copy(update={"shards": 3}))
    try:
        assert UserRecords(db).get(users[0]["id"]) is not None
    finally:
        db.close()


def _guarded(settings: Settings, shards: int, index: int) -> set[str]:
    with _conn(settings, shards, index) as conn:
        query = "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'reshard_guard'"
        return {row[0] for row in conn.execute(query)}


def test_every_table_of_the_shard_schema_is_resharded(two_shards: Settings):
    with _conn(two_shards, 2, 0) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables - set(BOOKKEEPING_TABLES) == {table.name for table in SHARDED_TABLES}
    assert _guarded(two_shards, 2, 0) == set()  # no write fence (and no cost) outside a move
