"""Cache-aside: reads are served from Redis, writes invalidate, a miss stampede loads once."""

import json
import threading

import pytest

from api.cache import CacheAside, RedisGateway
from api.metrics import Metrics
from core.redis import redis_client
from core.sharding import shard_for
from tests.integration.api.api_testkit import create_course, derive, shard_conn, sign_up

pytestmark = pytest.mark.integration


@pytest.fixture
def redis(api_settings):
    client = redis_client(api_settings.redis)
    yield client
    client.close()


def _write_title_behind_the_apps_back(settings, course_id: str, title: str) -> None:
    with shard_conn(settings, shard_for(course_id, settings.postgres.shards)) as conn:
        conn.execute("UPDATE courses SET title = %s WHERE id = %s", (title, course_id))


def test_cached_read_is_served_from_redis_and_a_write_invalidates_it(client, api_settings, redis):
    teacher = sign_up(client, role="instructor")
    course = create_course(client, teacher, title="Original")
    key = f"{api_settings.redis.key_prefix}course:{course['id']}"
    assert redis.get(key) is None

    first = client.get(f"/v1/courses/{course['id']}", headers=teacher.headers)
    assert first.status_code == 200
    cached = json.loads(redis.get(key))
    assert cached["title"] == "Original"
    assert 0 < redis.ttl(key) <= api_settings.redis.cache_ttl_s

    # Change the row in PostgreSQL directly: a read that still shows the old title came from Redis.
    _write_title_behind_the_apps_back(api_settings, course["id"], "Changed in PostgreSQL")
    assert client.get(f"/v1/courses/{course['id']}", headers=teacher.headers).json()["title"] == "Original"

    updated = client.patch(f"/v1/courses/{course['id']}", json={"title": "Renamed"}, headers=teacher.headers)
    assert updated.status_code == 200 and updated.json()["title"] == "Renamed"
    assert redis.get(key) is None  # the write deleted the entry

    assert client.get(f"/v1/courses/{course['id']}", headers=teacher.headers).json()["title"] == "Renamed"
    assert json.loads(redis.get(key))["title"] == "Renamed"


def test_course_list_is_cached_and_invalidated_by_join_and_by_course_update(client, api_settings, redis):
    teacher = sign_up(client, role="instructor")
    student = sign_up(client)
    course = create_course(client, teacher, title="Listed")
    list_key = f"{api_settings.redis.key_prefix}user:{student.user_id}:courses"

    assert client.get("/v1/courses", headers=student.headers).json()["items"] == []
    assert json.loads(redis.get(list_key)) == []
    client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    assert redis.get(list_key) is None
    assert [c["title"] for c in client.get("/v1/courses", headers=student.headers).json()["items"]] == ["Listed"]
    assert redis.get(list_key) is not None

    client.patch(f"/v1/courses/{course['id']}", json={"title": "Listed, renamed"}, headers=teacher.headers)
    assert redis.get(list_key) is None  # every member's list holds the title: all are invalidated
    titles = [c["title"] for c in client.get("/v1/courses", headers=student.headers).json()["items"]]
    assert titles == ["Listed, renamed"]


def test_cache_disabled_reads_postgres_every_time(make_client, api_settings, redis):
    uncached = make_client(derive(api_settings, api={"cache_enabled": False}))
    teacher = sign_up(uncached, role="instructor")
    course = create_course(uncached, teacher, title="Uncached")
    uncached.get(f"/v1/courses/{course['id']}", headers=teacher.headers)
    assert redis.get(f"{api_settings.redis.key_prefix}course:{course['id']}") is None
    _write_title_behind_the_apps_back(api_settings, course["id"], "Fresh")
    assert uncached.get(f"/v1/courses/{course['id']}", headers=teacher.headers).json()["title"] == "Fresh"


def test_concurrent_misses_load_once(api_settings, run_id):
    metrics = Metrics()
    gateway = RedisGateway(api_settings.redis, metrics)
    cache = CacheAside(gateway, metrics, enabled=True, ttl_s=30, lock_ttl_ms=2000)
    loads = []
    readers = 8
    arrived = threading.Semaphore(0)
    # All readers set off together: a thread that started late under load would otherwise ask
    # after the waiters' bounded wait (<= 1 s) ran out, and make them load for themselves.
    together = threading.Barrier(readers)

    def slow_loader():
        loads.append(1)
        # The load lasts until every reader has asked for the key (not a guessed sleep): without
        # single-flight each of them would miss too and run its own load.
        for _ in range(readers):
            assert arrived.acquire(timeout=10), "a reader never arrived"
        return {"value": 42}

    def read():
        together.wait(timeout=30)
        arrived.release()
        results.append(cache.get_or_load("t", f"stampede:{run_id}", slow_loader))

    results = []
    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert results == [{"value": 42}] * readers
        assert len(loads) == 1
    finally:
        cache.invalidate(f"stampede:{run_id}")
        gateway.close()


def test_metrics_report_cache_hits(client):
    teacher = sign_up(client, role="instructor")
    course = create_course(client, teacher)
    for _ in range(3):
        client.get(f"/v1/courses/{course['id']}", headers=teacher.headers)
    text = client.get("/metrics").text
    hits = [
        line
        for line in text.splitlines()
        if line.startswith('lakehouse_cache_requests_total{cache="course",result="hit"}')
    ]
    assert hits and float(hits[0].split()[-1]) >= 2
    assert 'lakehouse_cache_hit_ratio{cache="course"}' in text
