"""The cached course read in one Redis round trip (the edge script reads the route's cache
entries) and the uncached read on the event loop's PostgreSQL pools: same answers as before."""

import asyncio
import uuid

import pytest

from api.cache import RedisGateway, prefetched, set_prefetched
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from core.keys import revoked_session_key
from core.redis import redis_client
from core.sharding import shard_for
from tests.integration.api.api_testkit import create_course, derive, sign_up

pytestmark = pytest.mark.integration


def _answer(response) -> tuple[int, object]:
    """Status and body without the per-request id."""
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, body


def test_cached_read_is_one_round_trip_with_the_answers_of_the_two_trip_path(client, monkeypatch):
    services = client.app.state.services
    teacher, student, outsider = sign_up(client, role="instructor"), sign_up(client), sign_up(client)
    course = create_course(client, teacher, title="One trip")
    joined = client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    assert joined.status_code == 200
    url = f"/v1/courses/{course['id']}"
    expired = services.tokens._encode(
        {"sub": student.user_id, "role": "student", "sid": "gone", "typ": "access"}, ttl_s=-5
    )
    callers = {"teacher": teacher.headers, "student": student.headers, "outsider": outsider.headers}
    callers["expired"] = {"Authorization": f"Bearer {expired}"}

    commands: list[str] = []
    send = services.redis.wire.execute

    async def counted(*args):
        commands.append(args[0])
        return await send(*args)

    monkeypatch.setattr(services.redis.wire, "execute", counted)
    one_trip = services.limiter.edge_reads
    assert one_trip is not None
    answers: dict[str, dict] = {}
    try:
        for mode, edge_reads in (("one trip", one_trip), ("two trips", None)):
            services.limiter.edge_reads = edge_reads
            for headers in callers.values():  # warm: every entry cached
                client.get(url, headers=headers)
            per_read = {}
            for name, headers in callers.items():
                commands.clear()
                answers.setdefault(name, {})[mode] = _answer(client.get(url, headers=headers))
                per_read[name] = list(commands)
            expected = ["EVALSHA"] if mode == "one trip" else ["EVALSHA", "MGET"]
            assert per_read["teacher"] == expected and per_read["student"] == expected, (mode, per_read)
            assert per_read["outsider"] == expected  # a non-member's entry is cached too: still 404
        for mode, edge_reads in (("one trip", one_trip), ("two trips", None)):
            services.limiter.edge_reads = edge_reads
            # A write invalidates: the next read misses, loads from PostgreSQL and is cached again.
            title = f"Renamed ({mode})"
            assert client.patch(url, json={"title": title}, headers=teacher.headers).status_code == 200
            answers.setdefault("after write", {})[mode] = _answer(client.get(url, headers=student.headers))
            assert answers["after write"][mode][1]["title"] == title
            answers["after write"][mode][1].pop("title")
            answers["after write"][mode][1].pop("updated_at")
    finally:
        services.limiter.edge_reads = one_trip
    for name, by_mode in answers.items():
        assert by_mode["one trip"] == by_mode["two trips"], name
    assert answers["teacher"]["one trip"][0] == 200 and answers["student"]["one trip"][0] == 200
    assert answers["outsider"]["one trip"][0] == 404 and answers["expired"]["one trip"][0] == 401

    # Revocation: after logout the access token answers 401 at once, in both modes.
    logout = client.post("/v1/auth/logout", json={"refresh_token": student.refresh_token})
    assert logout.status_code == 204
    try:
        revoked = {}
        for mode, edge_reads in (("one trip", one_trip), ("two trips", None)):
            services.limiter.edge_reads = edge_reads
            revoked[mode] = _answer(client.get(url, headers=student.headers))
    finally:
        services.limiter.edge_reads = one_trip
    assert revoked["one trip"] == revoked["two trips"] and revoked["one trip"][0] == 401


def test_edge_script_reads_entries_only_for_an_allowed_request(api_settings):
    """Against the real Redis: the same decisions and revocation answer with and without the
    reads; a refused request reads nothing."""
    redis = redis_client(api_settings.redis)
    course_id, prefix = str(uuid.uuid4()), api_settings.redis.key_prefix
    redis.set(f"{prefix}course:{course_id}", '{"id": "x"}', ex=60)
    session = uuid.uuid4().hex
    redis.set(prefix + revoked_session_key(session), "1", ex=60)

    async def decisions(with_reads: bool) -> list[tuple]:
        gateway = RedisGateway(api_settings.redis, Metrics())
        limiter = RateLimiter(
            gateway,
            Metrics(),
            per_user=2,
            per_ip=1000,
            edge_reads=(lambda _path, user: [f"course:{course_id}", f"member:{course_id}:{user}"])
            if with_reads
            else None,
        )
        user, out = str(uuid.uuid4()), []
        try:
            for session_id in (None, session, None):  # the third takes the user bucket's last-but-none
                set_prefetched({})
                decision, revoked = await limiter.acheck_edge(
                    ip="10.9.8.7", user_id=user, session_id=session_id, path=f"/v1/courses/{course_id}"
                )
                assert decision is not None
                out.append((decision.allowed, decision.scope, revoked, prefetched()))
        finally:
            await gateway.aclose()
            gateway.close()
        return out

    try:
        with_reads, without = asyncio.run(decisions(True)), asyncio.run(decisions(False))
    finally:
        redis.delete(f"{prefix}course:{course_id}", prefix + revoked_session_key(session))
        for key in redis.scan_iter(match=f"{prefix}ratelimit:*"):
            redis.delete(key)
        redis.close()
    assert [row[:3] for row in with_reads] == [row[:3] for row in without]
    assert [row[:3] for row in with_reads] == [(True, "user", None), (True, "user", True), (False, "user", None)]
    entries = {f"{prefix}course:{course_id}": '{"id": "x"}'}
    assert with_reads[0][3] is not None and with_reads[0][3][f"{prefix}course:{course_id}"] == '{"id": "x"}'
    assert {k: v for k, v in with_reads[0][3].items() if v is not None} == entries  # the member entry: a miss
    assert with_reads[2][3] == {}  # refused: nothing read, nothing handed on
    assert all(row[3] == {} for row in without)


def test_uncached_read_goes_through_the_event_loops_pools(make_client, api_settings, client):
    uncached = make_client(derive(api_settings, api={"cache_enabled": False}))
    services = uncached.app.state.services
    teacher, outsider = sign_up(uncached, role="instructor"), sign_up(uncached)
    course = create_course(uncached, teacher, title="Straight from PostgreSQL")
    url = f"/v1/courses/{course['id']}"
    assert services.adb.open_databases == []  # nothing read on the loop yet
    mine, theirs = uncached.get(url, headers=teacher.headers), uncached.get(url, headers=outsider.headers)
    shard = shard_for(course["id"], api_settings.postgres.shards)
    assert services.adb.open_databases == [api_settings.postgres.shard_names()[shard]]
    assert theirs.status_code == 404
    # The cached app (another instance on the same stores) gives the same course.
    assert _answer(mine) == _answer(client.get(url, headers=teacher.headers))
    assert mine.json()["title"] == "Straight from PostgreSQL" and mine.json()["my_role"] == "instructor"
