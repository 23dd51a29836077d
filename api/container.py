"""The API's composition root: builds every service once per app (in its lifespan) and closes them.

Domain modules (``api/services.py``, ``api/uploads.py``, ``api/course_search.py``) never import
this module; ``api/deps.py`` hands the built services to the routers.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.auth import TokenService
from api.cache import CacheAside, RedisGateway
from api.course_search import SearchService
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.services import CourseService, DocumentService, JobService, UserService
from api.study import StudyService
from api.uploads import UploadService
from core.db import ShardedPostgres
from core.secrets import jwt_secret
from core.settings import Settings
from lake.store import object_store
from records.courses import CourseRecords
from records.documents import DocumentRecords
from records.study import StudyRecords
from records.users import UserRecords
from streaming.kafka import EventPublisher


@dataclass
class Services:
    """Everything a request needs."""

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
    study: StudyService
    publisher: EventPublisher

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
        document_records = DocumentRecords(db)
        users = UserService(UserRecords(db))
        courses = CourseService(CourseRecords(db), cache)
        documents = DocumentService(document_records, courses, cache)
        jobs = JobService(document_records, redis, courses)
        publisher = EventPublisher(settings.kafka, client_id="lakehouse-api")
        uploads = UploadService(
            max_upload_bytes=settings.api.max_upload_bytes,
            store=object_store(settings.object_store),
            courses=courses,
            documents=documents,
            jobs=jobs,
            publisher=publisher,
        )
        return cls(
            settings=settings,
            metrics=metrics,
            db=db,
            redis=redis,
            cache=cache,
            limiter=limiter,
            tokens=TokenService(settings.api, redis, secret=jwt_secret(settings)),
            users=users,
            courses=courses,
            documents=documents,
            jobs=jobs,
            uploads=uploads,
            search=SearchService(settings, courses),
            study=StudyService(
                settings, documents=document_records, courses=courses, records=StudyRecords(db), cache=cache
            ),
            publisher=publisher,
        )

    def close(self) -> None:
        self.publisher.close()
        self.redis.close()
        self.db.close()
