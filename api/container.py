"""The API's composition root: builds every service once per app (in its lifespan) and closes them.

Domain modules (``api/services.py``, ``api/uploads.py``, ``api/course_search.py``) never import
this module; ``api/deps.py`` hands the built services to the routers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from api.auth import TokenService
from api.cache import CacheAside, RedisGateway
from api.course_search import SearchService
from api.metrics import Metrics
from api.notification_hub import NotificationHub
from api.ratelimit import RateLimiter
from api.services import CourseService, DocumentService, JobService, UserService
from api.study import StudyService
from api.uploads import UploadService
from core.db import ShardedPostgres, open_checked
from core.db_async import AsyncShards
from core.secrets import airflow_password, jwt_secret
from core.settings import Settings
from lake.store import object_store
from orchestration.airflow_api import AirflowClient
from records.courses import CourseRecords
from records.documents import DocumentRecords
from records.study import StudyRecords
from records.users import UserRecords
from streaming.analytics import AnalyticsPublisher
from streaming.kafka import EventPublisher


class AirflowConnection:
    """Airflow's REST client, made on first use (the API starts while Airflow is down) and shared."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AirflowClient | None = None
        self._lock = threading.Lock()

    def __call__(self) -> AirflowClient:
        with self._lock:
            if self._client is None:
                af = self.settings.airflow
                self._client = AirflowClient(
                    af.url, username=af.admin_user, password=airflow_password(self.settings), timeout_s=10.0
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@dataclass
class Services:
    """Everything a request needs."""

    settings: Settings
    metrics: Metrics
    db: ShardedPostgres
    adb: AsyncShards
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
    airflow: AirflowConnection
    analytics: AnalyticsPublisher
    hub: NotificationHub

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics) -> Services:
        db = open_checked(settings.postgres)  # refuses a shard map other than the recorded one
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
        adb = AsyncShards(db, max_size=settings.postgres.async_pool_max_size)
        courses = CourseService(CourseRecords(db, adb), cache)
        if settings.api.cache_enabled:
            limiter.edge_reads = courses.edge_reads  # a course read: one Redis round trip in all
        documents = DocumentService(document_records, courses, cache)
        jobs = JobService(document_records, redis, courses)
        publisher = EventPublisher(settings.kafka, client_id="lakehouse-api")
        airflow = AirflowConnection(settings)
        analytics = AnalyticsPublisher(
            settings.kafka, on_drop=metrics.analytics_dropped.inc, flush_interval_s=settings.api.analytics_flush_s
        )
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
            adb=adb,
            redis=redis,
            cache=cache,
            limiter=limiter,
            tokens=TokenService(settings.api, redis, secret=jwt_secret(settings)),
            users=users,
            courses=courses,
            documents=documents,
            jobs=jobs,
            uploads=uploads,
            search=SearchService(settings, courses, analytics=analytics),
            study=StudyService(
                settings,
                documents=document_records,
                courses=courses,
                records=StudyRecords(db),
                cache=cache,
                jobs=jobs,
                orchestrator=airflow,
                analytics=analytics,
            ),
            publisher=publisher,
            airflow=airflow,
            analytics=analytics,
            hub=NotificationHub(settings.redis),
        )

    async def aclose(self) -> None:
        """Closes the clients that live on the event loop (before ``close``, on the same loop)."""
        await self.hub.close()
        await self.redis.aclose()
        await self.adb.aclose()

    def close(self) -> None:
        self.analytics.close()
        self.airflow.close()
        self.publisher.close()
        self.redis.close()
        self.db.close()
