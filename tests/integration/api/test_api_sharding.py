"""Rows land on the shard their key hashes to: checked by querying every shard directly."""

import pytest

from core.sharding import shard_for
from tests.integration.api.api_testkit import create_course, shard_conn, sign_up

pytestmark = pytest.mark.integration


def _shards_holding(settings, sql: str, params: tuple) -> list[int]:
    found = []
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            if conn.execute(sql, params).fetchone()[0]:
                found.append(shard)
    return found


def test_users_courses_and_their_rows_land_on_the_shard_of_their_key(client, api_settings):
    shards = api_settings.postgres.shards
    instructors = [sign_up(client, role="instructor") for _ in range(4)]
    students = [sign_up(client) for _ in range(4)]
    courses = [create_course(client, teacher, title=f"Course {i}") for i, teacher in enumerate(instructors)]
    for student, course in zip(students, courses, strict=True):
        joined = client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
        assert joined.status_code == 200, joined.text

    for account in instructors + students:
        expected = [shard_for(account.user_id, shards)]
        assert _shards_holding(api_settings, "SELECT count(*) FROM users WHERE id = %s", (account.user_id,)) == expected
        assert (
            _shards_holding(api_settings, "SELECT count(*) FROM enrolments WHERE user_id = %s", (account.user_id,))
            == expected
        )
        assert _shards_holding(api_settings, "SELECT count(*) FROM email_index WHERE email = %s", (account.email,)) == [
            shard_for(account.email, shards)
        ]

    for course in courses:
        expected = [shard_for(course["id"], shards)]
        assert _shards_holding(api_settings, "SELECT count(*) FROM courses WHERE id = %s", (course["id"],)) == expected
        # owner + one student: the membership rows sit with the course, not with the users
        assert (
            _shards_holding(
                api_settings, "SELECT count(*) = 2 FROM course_members WHERE course_id = %s", (course["id"],)
            )
            == expected
        )
        assert _shards_holding(
            api_settings, "SELECT count(*) FROM join_codes WHERE code = %s", (course["join_code"],)
        ) == [shard_for(course["join_code"], shards)]

    # with 8 users and 4 courses over 3 shards, more than one shard is in use
    used = {shard_for(a.user_id, shards) for a in instructors + students} | {
        shard_for(c["id"], shards) for c in courses
    }
    assert len(used) > 1


def test_my_courses_reads_across_shards(client, api_settings):
    shards = api_settings.postgres.shards
    student = sign_up(client)
    teacher = sign_up(client, role="instructor")
    courses = [create_course(client, teacher, title=f"Fan-out {i}") for i in range(6)]
    assert len({shard_for(c["id"], shards) for c in courses}) > 1  # the list must come from several shards
    for course in courses:
        client.post("/v1/courses/join", json={"join_code": course["join_code"]}, headers=student.headers)
    listed = client.get("/v1/courses", headers=student.headers)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["items"]] == [c["id"] for c in courses]
    assert all(c["my_role"] == "student" and c["join_code"] is None for c in listed.json()["items"])


def test_signup_writes_nothing_twice_and_refuses_a_taken_email_in_any_case(client, api_settings):
    account = sign_up(client)
    again = client.post(
        "/v1/auth/signup",
        json={"email": account.email.upper(), "password": "another password!", "display_name": "Dup"},
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert _shards_holding(api_settings, "SELECT count(*) FROM users WHERE email = %s", (account.email,)) == [
        shard_for(account.user_id, api_settings.postgres.shards)
    ]
