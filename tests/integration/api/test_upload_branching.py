"""The branches of an upload (new, duplicate, replace, publish failure, row failure), with the
real shards and Redis and an in-memory object store that records every put and delete."""

from __future__ import annotations

import io
import uuid
from typing import IO, Any

import pytest

from api.auth import Principal
from api.container import Services
from api.errors import ServiceUnavailable
from api.metrics import Metrics
from api.uploads import IncomingFile, UploadService
from processing.samples import short_pdf
from tests.integration.api.api_testkit import shard_conn


class MemoryObjectStore:
    """Satisfies ``lake.store.ObjectStore``; keeps what was stored and deleted."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        data = stream.read()
        self.objects[key] = data
        return len(data)

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.objects.pop(key, None)

    def uri(self, key: str) -> str:
        return f"memory:///{key}"


class RecordingPublisher:
    """Records events; ``refuse`` makes it fail as a broker outage does (the real outage is
    exercised against Kafka in test_api_uploads.py)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.refuse = False

    def publish(
        self, topic: str, *, key: str, value: dict[str, Any], timeout_s: float = 10.0, headers: list | None = None
    ) -> None:
        from kafka.errors import KafkaTimeoutError

        if self.refuse:
            raise KafkaTimeoutError("Unable to bootstrap")
        self.events.append(value)


@pytest.fixture
def world(api_settings):
    services = Services.build(api_settings, Metrics())
    store, publisher = MemoryObjectStore(), RecordingPublisher()
    uploads = UploadService(
        max_upload_bytes=api_settings.api.max_upload_bytes,
        store=store,
        courses=services.courses,
        documents=services.documents,
        jobs=services.jobs,
        publisher=publisher,
    )
    user = services.users.sign_up(
        email=f"b-{uuid.uuid4().hex[:8]}@example.com", password_hash="x", role="instructor", display_name="B"
    )
    principal = Principal(uuid.UUID(user["id"]), "instructor", "s")
    course = services.courses.create(principal, title="Branches", description="")
    yield services, uploads, store, publisher, principal, uuid.UUID(course["id"])
    services.close()


def _file(data: bytes, name: str = "notes.pdf") -> list[IncomingFile]:
    return [IncomingFile(filename=name, stream=io.BytesIO(data))]


def test_new_then_duplicate_then_replace(world):
    _services, uploads, store, publisher, principal, course_id = world
    pdf = short_pdf(f"branching {uuid.uuid4()}")
    [first] = uploads.upload(course_id, principal, _file(pdf), replace=False)
    assert (first["duplicate"], first["version"], first["status"]) == (False, 1, "queued")
    assert len(store.objects) == 1 and len(publisher.events) == 1

    [duplicate] = uploads.upload(course_id, principal, _file(pdf, "copy.pdf"), replace=False)
    assert (duplicate["duplicate"], duplicate["document_id"], duplicate["job_id"]) == (True, first["document_id"], None)
    assert len(store.objects) == 1 and len(publisher.events) == 1  # nothing stored, nothing queued

    [replaced] = uploads.upload(course_id, principal, _file(pdf), replace=True)
    assert (replaced["document_id"], replaced["version"]) == (first["document_id"], 2)
    assert len(store.objects) == 2 and publisher.events[-1]["replaces_version"] == 1


def test_publish_failure_fails_the_version_and_a_retry_upload_makes_the_next(world):
    services, uploads, store, publisher, principal, course_id = world
    pdf = short_pdf(f"queue down {uuid.uuid4()}")
    publisher.refuse = True
    with pytest.raises(ServiceUnavailable):
        uploads.upload(course_id, principal, _file(pdf), replace=False)
    [row] = services.documents.records.latest_versions(course_id)
    assert row["status"] == "failed" and "could not queue" in row["error"]
    assert list(store.objects) == [row["object_key"]]  # owned by the failed row, not an orphan

    publisher.refuse = False
    [again] = uploads.upload(course_id, principal, _file(pdf), replace=False)
    assert (again["document_id"], again["version"], again["duplicate"]) == (str(row["id"]), 2, False)
    assert publisher.events[-1]["replaces_version"] is None  # a failed version is not replaced


def test_a_row_that_cannot_be_written_leaves_no_stored_bytes(world, api_settings):
    services, uploads, store, _publisher, principal, course_id = world
    uploads.upload(course_id, principal, _file(short_pdf("warm the membership cache")), replace=False)
    before = dict(store.objects)
    # The course disappears behind the app's back (its membership is still cached): the
    # document insert then violates its foreign key after the bytes were stored.
    shard = services.db.shard_of(course_id)
    with shard_conn(api_settings, shard) as conn:
        conn.execute("DELETE FROM courses WHERE id = %s", (course_id,))
    with pytest.raises(Exception, match="foreign key"):
        uploads.upload(course_id, principal, _file(short_pdf(f"orphan {uuid.uuid4()}")), replace=False)
    assert store.objects == before  # the new bytes were deleted in the same request
    assert len(store.deleted) == 1 and store.deleted[0] not in before
