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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.auth import Principal, TokenService
from api.cache import CacheAside, RedisDown, RedisGateway
from api.errors import Conflict, Forbidden, NotFound
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.repositories import (
    CourseRepository,
    DocumentRepository,
    EmailTaken,
    JobRepository,
    UserRepository,
    jsonable,
)
from core.keys import course_key, course_list_key, document_key, document_list_key, member_key, open_jobs_key
from core.db import ShardedPostgres
from core.ids import uuid7
from core.jobs import JobReporter, JobState
from core.settings import Settings

if TYPE_CHECKING:
    from api.search import SearchService
    from api.uploads import UploadService

log = logging.getLogger("api.services")


class UserService:
    def __init__(self, repo: UserRepository) -> None:
        self.repo = repo

    def sign_up(self, *, email: str, password_hash: str, role: str, display_name: str) -> dict[str, Any]:
        try:
            return jsonable(
                self.repo.create(email=email, password_hash=password_hash, role=role, display_name=display_name)
            )
        except EmailTaken as exc:
            raise Conflict("An account with this email already exists.") from exc

    def get(self, user_id: uuid.UUID) -> dict[str, Any]:
        row = self.repo.get(user_id)
        if row is None:
            raise NotFound("No such user.")
        return jsonable(row)


class CourseService:
    def __init__(self, repo: CourseRepository, cache: CacheAside) -> None:
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
    """Document metadata reads (cached) and the write the ingestion service records through."""

    def __init__(self, repo: DocumentRepository, courses: CourseService, cache: CacheAside) -> None:
        self.repo = repo
        self.courses = courses
        self.cache = cache

    def list(self, course_id: uuid.UUID, principal: Principal) -> list[dict[str, Any]]:
        self.courses.require_visible(course_id, principal)
        cid = str(course_id)
        return self.cache.get_or_load(
            "document_list", document_list_key(cid), lambda: [jsonable(r) for r in self.repo.list(cid)]
        )

    def get(self, course_id: uuid.UUID, document_id: uuid.UUID, principal: Principal) -> dict[str, Any]:
        self.courses.require_visible(course_id, principal)
        cid, did = str(course_id), str(document_id)
        row = self.cache.get_or_load("document", document_key(cid, did), lambda: jsonable(self.repo.get(cid, did)))
        if row is None:
            raise NotFound("No document with this id in this course.")
        return row

    def record(self, document: dict[str, Any]) -> dict[str, Any]:
        """Upserts a document version and invalidates its cache entries (for the ingestion path)."""
        row = jsonable(self.repo.upsert(document))
        self.cache.invalidate(document_key(row["course_id"], row["id"]), document_list_key(row["course_id"]))
        return row


class JobService:
    """Jobs: live state in Redis (core.jobs.JobReporter), durable record in PostgreSQL."""

    def __init__(self, repo: JobRepository, redis: RedisGateway, courses: CourseService) -> None:
        self.repo = repo
        self.redis = redis
        self.courses = courses
        self.reporter = JobReporter(redis.client)

    def create(
        self,
        *,
        kind: str,
        user_id: str,
        course_id: str | None = None,
        document_id: str | None = None,
        pages_total: int | None = None,
    ) -> JobState:
        now = time.time()
        state = JobState(
            job_id=str(uuid7()),
            kind=kind,
            user_id=user_id,
            course_id=course_id,
            document_id=document_id,
            pages_total=pages_total,
            created_at=now,
            updated_at=now,
        )
        self.repo.upsert(state)  # durable first: a job never exists only in Redis
        try:
            self.redis.call("job_save", lambda _c: self.reporter.save(state))
        except RedisDown:
            log.warning("job %s recorded in PostgreSQL only (redis down)", state.job_id)
        return state

    def record(self, state: JobState) -> None:
        """Mirrors a state reported to Redis into the durable record (idempotent, monotonic)."""
        self.repo.upsert(state)

    def get(self, job_id: str, principal: Principal) -> JobState:
        try:
            state = self.redis.call("job_get", lambda _c: self.reporter.get(job_id))
        except RedisDown:
            state = None
        if state is None:
            state = self.repo.get(job_id)
        elif state.status in ("succeeded", "failed"):
            self.record(state)  # a worker finished it: make the outcome durable
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


@dataclass
class Services:
    """Everything a request needs, built once per app (in its lifespan) and closed with it."""

    settings: Settings
    metrics: Metrics
    db: ShardedPostgres
    redis: RedisGateway
    cache: CacheAside
    limiter: RateLimiter
    tokens: TokenService
    users: UserService
    courses: CourseService
    documents: DocumentService
    jobs: JobService
    uploads: UploadService
    search: SearchService

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> Services:
        db = ShardedPostgres(settings.postgres)
        metrics.attach_pools(db.usage)
        redis = RedisGateway(settings.redis, metrics)
        cache = CacheAside(
            redis,
            metrics,
            enabled=settings.api.cache_enabled,
            ttl_s=settings.redis.cache_ttl_s,
            lock_ttl_ms=settings.redis.lock_ttl_ms,
        )
        limiter = RateLimiter(
            redis, metrics, per_user=settings.api.rate_limit_per_minute, per_ip=settings.api.rate_limit_ip_per_minute
        )
        courses = CourseService(CourseRepository(db), cache)
        documents = DocumentService(DocumentRepository(db), courses, cache)
        jobs = JobService(JobRepository(db), redis, courses)
        from api.search import SearchService
        from api.uploads import EventPublisher, UploadService
        from lake.store import object_store

        uploads = UploadService(
            settings,
            store=object_store(settings.object_store),
            courses=courses,
            documents=documents,
            jobs=jobs,
            publisher=EventPublisher(settings),
        )
        return cls(
            settings=settings,
            metrics=metrics,
            db=db,
            redis=redis,
            cache=cache,
            limiter=limiter,
            tokens=TokenService(settings.api, redis),
            users=UserService(UserRepository(db)),
            courses=courses,
            documents=documents,
            jobs=jobs,
            uploads=uploads,
            search=SearchService(settings, courses),
        )

    def close(self) -> None:
        self.uploads.publisher.close()
        self.redis.close()
        self.db.close()
