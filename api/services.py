"""Domain logic of the course service: access rules, cache-aside reads, invalidation on writes.

Access rule of every course-scoped call: the caller must be a member of the course (or an
admin); otherwise the course, and everything under it, is 404 — exactly as if it did not
exist, so ids of other people's courses reveal nothing.

Cache keys (all under ``redis.key_prefix``, one key per operation so Redis Cluster works):
``course:{id}``, ``member:{course}:{user}``, ``user:{id}:courses``, ``course:{id}:documents``,
``document:{course}:{id}``. Each write deletes the keys it makes stale after its commit.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.cache import CacheAside, RedisDown, RedisGateway
from api.errors import Conflict, Forbidden, NotFound
from core.ids import uuid7
from core.jobs import JobReporter, JobState
from core.keys import (
    course_key,
    course_list_key,
    document_cache_keys,
    document_key,
    document_list_key,
    member_key,
    open_jobs_key,
)
from records.courses import CourseRecords
from records.documents import DocumentRecords
from records.rows import jsonable
from records.users import EmailTaken, UserRecords

log = logging.getLogger("api.services")


class UserService:
    def __init__(self, repo: UserRecords) -> None:
        self.repo = repo

    def sign_up(self, *, email: str, password_hash: str, role: str, display_name: str) -> dict[str, Any]:
        try:
            return jsonable(
                self.repo.create(email=email, password_hash=password_hash, role=role, display_name=display_name)
            )
        except EmailTaken as exc:
            raise Conflict("An account with this email already exists.") from exc

    def credentials(self, email: str) -> dict[str, Any] | None:
        """The account owning ``email`` with its password hash (for login only)."""
        return self.repo.credentials_by_email(email)

    def get(self, user_id: uuid.UUID) -> dict[str, Any]:
        row = self.repo.get(user_id)
        if row is None:
            raise NotFound("No such user.")
        return jsonable(row)


class CourseService:
    def __init__(self, repo: CourseRecords, cache: CacheAside) -> None:
        self.repo = repo
        self.cache = cache

    # ---- reads --------------------------------------------------------------------------------
    def _course(self, course_id: str) -> dict[str, Any] | None:
        return self.cache.get_or_load("course", course_key(course_id), lambda: jsonable(self.repo.get(course_id)))

    def role_of(self, course_id: str, principal: Principal) -> str | None:
        if principal.is_admin:
            return "admin"
        user_id = str(principal.user_id)
        entry = self.cache.get_or_load(
            "membership",
            member_key(course_id, user_id),
            lambda: {"role": self.repo.member_role(course_id, user_id)},  # non-members are cached too
        )
        return entry["role"]

    def require_visible(self, course_id: uuid.UUID | str, principal: Principal) -> tuple[dict[str, Any], str]:
        """The course and the caller's role in it; 404 when the caller is not a member."""
        course_id = str(course_id)
        role = self.role_of(course_id, principal)
        course = self._course(course_id) if role else None
        if role is None or course is None:
            raise NotFound("No course with this id.")
        return course, role

    def view(self, course_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        course, role = self.require_visible(course_id, principal)
        return present_course(course, role)

    def edge_reads(self, path: str, user_id: str) -> list[str]:
        """The cache entries ``arequire_visible`` reads for ``GET path`` (``/v1/courses/{id}`` and
        its ``/search``), for the request edge to read in its own round trip; [] for any other path."""
        parts = path.split("/")
        if len(parts) == 5 and parts[4] == "search":  # a search checks the same membership
            parts = parts[:4]
        if len(parts) != 4 or parts[:3] != ["", "v1", "courses"] or len(parts[3]) < 32:
            return []
        try:
            cid = str(uuid.UUID(parts[3]))  # the route's own form of the id
        except ValueError:
            return []
        return [course_key(cid), member_key(cid, user_id)]

    async def aview(self, course_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        """``view`` on the event loop (``arequire_visible``)."""
        return present_course(*await self.arequire_visible(course_id, principal))

    async def arequire_visible(self, course_id: uuid.UUID, principal: Principal) -> tuple[dict[str, Any], str]:
        """``require_visible`` on the event loop: membership and course in one Redis round trip
        when both are cached (none when the request edge read them: ``edge_reads``); with the
        cache off, both PostgreSQL reads in one thread-pool hop."""
        cid = str(course_id)
        user_id = str(principal.user_id)
        if not self.cache.enabled:
            self.cache.metrics.cache_requests.labels("course", "bypass").inc()
            if self.repo.adb is not None:
                row = await self.repo.awith_member_role(cid, user_id)
            else:
                row = await run_in_threadpool(self.repo.with_member_role, cid, user_id)
            role = "admin" if principal.is_admin else (row or {}).get("member_role")
            if row is None or role is None:
                raise NotFound("No course with this id.")
            course = jsonable({k: v for k, v in row.items() if k != "member_role"})
            return course, role
        on_loop = self.repo.adb is not None  # misses load on the event loop's pools

        async def amembership() -> dict[str, Any]:
            return {"role": await self.repo.amember_role(cid, user_id)}  # non-members are cached too

        async def acourse() -> dict[str, Any] | None:
            return jsonable(await self.repo.aget(cid))

        reads: list[tuple[str, str, Any]] = [("course", course_key(cid), None)]
        if not principal.is_admin:
            membership = amembership if on_loop else lambda: {"role": self.repo.member_role(cid, user_id)}
            reads.append(("membership", member_key(cid, user_id), membership))
        values = await self.cache.aget_many(reads)
        role = "admin" if principal.is_admin else values[1]["role"]
        course = values[0]
        if role is not None and course is None:  # a miss: load it (single-flight) for a member only
            load = acourse if on_loop else lambda: jsonable(self.repo.get(cid))
            course = (await self.cache.aget_many([("course", course_key(cid), load)]))[0]
        if role is None or course is None:
            raise NotFound("No course with this id.")
        return course, role

    def my_courses(self, principal: Principal) -> list[dict[str, Any]]:
        """The caller's courses: enrolments on the user shard, then a bounded fan-out to course shards."""
        user_id = str(principal.user_id)

        def load() -> list[dict[str, Any]]:
            enrolments = self.repo.enrolments(user_id)
            courses = self.repo.get_many([str(e["course_id"]) for e in enrolments])
            items = []
            for enrolment in enrolments:
                course = courses.get(str(enrolment["course_id"]))
                if course is not None:  # a half-created course (crash between shards) is skipped
                    items.append({**jsonable(course), "my_role": enrolment["role"]})
            return items

        return [
            present_course(c, c["my_role"])
            for c in self.cache.get_or_load("course_list", course_list_key(user_id), load)
        ]

    # ---- writes -------------------------------------------------------------------------------
    def create(self, principal: Principal, *, title: str, description: str) -> dict[str, Any]:
        if principal.role not in ("instructor", "admin"):
            raise Forbidden("Only instructors can create courses.")
        row = jsonable(self.repo.create(owner_id=principal.user_id, title=title, description=description))
        self.cache.invalidate(course_list_key(str(principal.user_id)), member_key(row["id"], str(principal.user_id)))
        return present_course(row, "instructor")

    def update(self, course_id: uuid.UUID, principal: Principal, *, changes: dict[str, Any]) -> dict[str, Any]:
        _course, role = self.require_visible(course_id, principal)
        if role not in ("instructor", "admin"):
            raise Forbidden("Only the course's instructors can change it.")
        row = jsonable(self.repo.update(course_id, changes=changes))
        if row is None:
            raise NotFound("No course with this id.")
        members = self.repo.members(course_id)
        self.cache.invalidate(course_key(str(course_id)), *(course_list_key(m) for m in members))
        return present_course(row, role)

    def join(self, principal: Principal, *, join_code: str) -> dict[str, Any]:
        course_id = self.repo.course_for_code(join_code)
        course = jsonable(self.repo.get(course_id)) if course_id else None
        if course_id is None or course is None:
            raise NotFound("No course has this join code.")
        role = self.repo.join(course_id=course_id, user_id=principal.user_id)
        user_id = str(principal.user_id)
        self.cache.invalidate(member_key(course["id"], user_id), course_list_key(user_id))
        return present_course(course, role)


def present_course(course: dict[str, Any], role: str) -> dict[str, Any]:
    """The course as the caller may see it: the join code only for its instructors."""
    shown = {**course, "my_role": role}
    if role not in ("instructor", "admin"):
        shown["join_code"] = None
    return shown


class DocumentService:
    """Document metadata: cached reads, and the API's writes (new versions, publish failures)."""

    def __init__(self, records: DocumentRecords, courses: CourseService, cache: CacheAside) -> None:
        self.records = records
        self.courses = courses
        self.cache = cache

    def list(self, course_id: uuid.UUID, principal: Principal) -> list[dict[str, Any]]:
        self.courses.require_visible(course_id, principal)
        cid = str(course_id)
        return self.cache.get_or_load(
            "document_list", document_list_key(cid), lambda: [jsonable(r) for r in self.records.latest_versions(cid)]
        )

    def get(self, course_id: uuid.UUID, document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        self.courses.require_visible(course_id, principal)
        cid, did = str(course_id), str(document_id)
        row = self.cache.get_or_load("document", document_key(cid, did), lambda: jsonable(self.records.get(cid, did)))
        if row is None:
            raise NotFound("No document with this id in this course.")
        return row

    def same_content(self, course_id: str, sha256: str) -> dict[str, Any] | None:
        """The latest version in the course with these exact bytes, if any (read uncached)."""
        return jsonable(self.records.find_by_sha256(course_id, sha256))

    def create_version(self, document: dict[str, Any], *, job: JobState) -> dict[str, Any]:
        """Records a new version and its job in one transaction, then drops the stale cache entries.

        Raises ``psycopg.errors.UniqueViolation`` if a concurrent upload recorded the same bytes."""
        row = jsonable(self.records.insert_version(document, job=job))
        self.cache.invalidate(*document_cache_keys(row["course_id"], row["id"]))
        return row

    def fail(self, *, course_id: str, document_id: str, version: int, job: JobState, reason: str) -> None:
        """Marks a version (and its job) failed with ``reason``: nothing will process it."""
        self.records.transition(
            course_id=course_id,
            document_id=document_id,
            version=version,
            job_id=job.job_id,
            status="failed",
            at=time.time(),
            error=reason,
        )
        self.cache.invalidate(*document_cache_keys(course_id, document_id))


class JobService:
    """Jobs: live state in Redis (core.jobs.JobReporter), durable record in PostgreSQL (written by
    ``records.documents`` when the API creates a job and by the worker that finishes it)."""

    def __init__(self, records: DocumentRecords, redis: RedisGateway, courses: CourseService) -> None:
        self.records = records
        self.redis = redis
        self.courses = courses
        self.reporter = JobReporter(redis.client)

    @staticmethod
    def new(*, kind: str, user_id: str, course_id: str | None = None, document_id: str | None = None) -> JobState:
        """A queued job, not yet recorded anywhere."""
        now = time.time()
        return JobState(
            job_id=str(uuid7()),
            kind=kind,
            user_id=user_id,
            course_id=course_id,
            document_id=document_id,
            created_at=now,
            updated_at=now,
        )

    def create(
        self,
        *,
        kind: str,
        user_id: str,
        course_id: str | None = None,
        document_id: str | None = None,
        pages_total: int | None = None,
    ) -> JobState:
        """A job that owns no document version (those are recorded with their version): durable
        first, so a job never exists only in Redis, then announced."""
        state = self.new(kind=kind, user_id=user_id, course_id=course_id, document_id=document_id)
        state = state.model_copy(update={"pages_total": pages_total})
        self.records.save_job(state)
        self.announce(state)
        return state

    def announce(self, state: JobState) -> None:
        """Puts a recorded job state in Redis and on its owner's notification channel; with Redis
        down the durable record still answers ``GET /v1/jobs/{id}``."""
        try:
            self.redis.call("job_save", lambda _c: self.reporter.save(state))
        except RedisDown:
            log.warning("job %s recorded in PostgreSQL only (redis down)", state.job_id)

    def get(self, job_id: str, principal: Principal) -> JobState:
        """Live state from Redis, else the durable record. A read never writes."""
        try:
            state = self.redis.call("job_get", lambda _c: self.reporter.get(job_id))
        except RedisDown:
            state = None
        if state is None:
            state = self.records.job(job_id)
        if state is None or not self._may_see(state, principal):
            raise NotFound("No job with this id.")
        return state

    def _may_see(self, state: JobState, principal: Principal) -> bool:
        if principal.is_admin or state.user_id == str(principal.user_id):
            return True
        if state.course_id is None:
            return False
        return self.courses.role_of(state.course_id, principal) in ("instructor", "admin")

    def open_jobs(self, user_id: str) -> list[JobState]:
        ids = self.redis.call("open_jobs", lambda c: c.smembers(open_jobs_key(user_id)))
        states = [self.reporter.get(job_id) for job_id in sorted(ids)]
        return [s for s in states if s is not None and s.status in ("queued", "running")]
