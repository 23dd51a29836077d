"""A small world for the security tests: two courses with an indexed document each (gold study
material written to a private lake), and one account per role. The API runs on the session's
private shard databases (tests/integration/conftest.py) with its own object store, Kafka topic
prefix and lake, and its log records are captured for the secret-leak test."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from processing.samples import short_pdf
from tests.integration.api.api_testkit import Account, create_course, derive, sign_up
from tests.integration.quality import quality_testkit


@dataclass
class Course:
    id: str
    join_code: str
    document_id: str
    job_id: str
    quiz_id: str
    item_id: str
    option_id: str
    card_id: str


@dataclass
class World:
    settings: Settings
    client: TestClient
    accounts: dict[str, Account | None]  # role name -> account (None: anonymous)
    own: Course  # the course of instructor_owner, with student_member in it
    other: Course  # instructor_other's course, with student_nonmember in it
    log: list[str]


class _Capture(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(self.format(record))
        except Exception:
            self.sink.append(repr(record.__dict__))


def _admin(settings: Settings, client: TestClient) -> Account:
    from cli.users import create_admin
    from core.db import ShardedPostgres
    from records.users import UserRecords

    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    password = f"Vq7#zR{uuid.uuid4().hex[:12]}!Lk"
    db = ShardedPostgres(settings.postgres)
    try:
        user = create_admin(UserRecords(db), email=email, password=password, display_name="Admin")
    finally:
        db.close()
    tokens = client.post("/v1/auth/login", json={"email": email, "password": password}).json()
    return Account(str(user["id"]), email, "admin", tokens["access_token"], tokens["refresh_token"])


def _course(settings: Settings, client: TestClient, owner: Account, title: str) -> Course:
    """A course with one uploaded document, marked indexed, with notes, a quiz and cards in gold."""
    from core.db import ShardedPostgres
    from lake import gold
    from records.documents import DocumentRecords

    course = create_course(client, owner, title=title)
    pdf = short_pdf(f"{title} {uuid.uuid4()}", pages=3)
    uploaded = client.post(
        f"/v1/courses/{course['id']}/documents",
        files=[("files", ("book.pdf", pdf, "application/pdf"))],
        headers=owner.headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    [job] = uploaded.json()["jobs"]
    db = ShardedPostgres(settings.postgres)
    try:
        records = DocumentRecords(db)
        for status in ("processing", "indexed"):
            records.transition(course_id=course["id"], document_id=job["document_id"], version=1, job_id=job["job_id"],
                               status=status, at=time.time(), pages=3, chunks=2)  # fmt: skip
    finally:
        db.close()
    quality_testkit.gold_rows(settings, job["document_id"], course["id"], ["chunk-a", "chunk-b"])
    [item, *_] = gold.read_where(settings, gold.GOLD_QUIZ_ITEMS, document_id=job["document_id"])
    [card] = gold.read_where(settings, gold.GOLD_FLASHCARDS, document_id=job["document_id"])
    return Course(course["id"], course["join_code"], job["document_id"], job["job_id"], item["quiz_id"],
                  item["item_id"], item["correct_option_id"], card["card_id"])  # fmt: skip


@pytest.fixture(scope="package")
def world(api_settings: Settings, tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("security")
    settings = derive(
        api_settings,
        kafka={"topic_prefix": f"s{uuid.uuid4().hex[:8]}."},
        object_store={"local_root": root / "objects"},
        lake={"root": str(root / "lake")},
        lancedb={"uri": str(root / "lancedb")},
    )
    log: list[str] = []
    handler = _Capture(log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        with TestClient(create_app(settings)) as client:
            owner = sign_up(client, role="instructor")
            other = sign_up(client, role="instructor")
            member = sign_up(client)
            nonmember = sign_up(client)
            own = _course(settings, client, owner, "Own course")
            theirs = _course(settings, client, other, "Other course")
            for student, course in ((member, own), (nonmember, theirs)):
                joined = client.post("/v1/courses/join", json={"join_code": course.join_code}, headers=student.headers)
                assert joined.status_code == 200, joined.text
            accounts: dict[str, Account | None] = {
                "anonymous": None,
                "student_member": member,
                "student_nonmember": nonmember,
                "instructor_owner": owner,
                "instructor_other": other,
                "admin": _admin(settings, client),
            }
            yield World(settings, client, accounts, own, theirs, log)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(previous)
