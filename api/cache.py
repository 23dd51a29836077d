"""Redis at the API: a guarded client (degrades instead of failing) and a cache-aside helper.

``RedisGateway.call`` runs one Redis operation; when Redis errors it records the failure
(log line, metric), opens a short breaker (``redis.down_backoff_s``) during which Redis is
not tried at all, and raises ``RedisDown``. Callers decide: reads fall back to PostgreSQL,
rate limits fail open, sessions (login/refresh) answer 503.

``CacheAside.get_or_load`` reads through Redis with a TTL, protects a miss with a single-flight
lock (one loader per key; the others wait briefly for its value) and never lets Redis trouble
break the read. Every write path calls ``invalidate`` after its PostgreSQL commit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from api.metrics import Metrics
from core.settings import RedisSettings

log = logging.getLogger("api.cache")
T = TypeVar("T")

# Deletes the lock only if we still own it (another loader may hold it after our TTL ran out).
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisDown(RuntimeError):
    """Redis is unavailable (or the breaker is open); the caller degrades."""


class RedisGateway:
    """The API's Redis client with a breaker, so an outage costs one failed call, not one per request."""

    def __init__(self, settings: RedisSettings, metrics: Metrics) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from core.redis import redis_client

        self.settings = settings
        self.metrics = metrics
        self.client = redis_client(settings, timeout_s=settings.socket_timeout_s)
        # Fail fast: redis-py's default retries for ~seconds, the breaker below is our policy.
        self.client.set_retry(Retry(NoBackoff(), 0))
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._release = self.client.register_script(_RELEASE_LOCK)

    def key(self, name: str) -> str:
        return f"{self.settings.key_prefix}{name}"

    @property
    def degraded(self) -> bool:
        return time.monotonic() < self._down_until

    def call(self, operation: str, fn: Callable[[Any], T]) -> T:
        """Runs ``fn(client)``; raises RedisDown (after logging once) if Redis is unavailable."""
        from redis import exceptions as rx

        if self.degraded:
            raise RedisDown("breaker open")
        try:
            result = fn(self.client)
        except (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.ClusterError, OSError) as exc:
            self._trip(operation, exc)
            raise RedisDown(str(exc)) from exc
        except rx.RedisError as exc:
            if "cluster" in type(exc).__name__.lower() or "CLUSTERDOWN" in str(exc):
                self._trip(operation, exc)
                raise RedisDown(str(exc)) from exc
            raise
        if self._down_until:
            with self._lock:
                if self._down_until:
                    log.warning("redis is answering again; leaving degraded mode")
                    self._down_until = 0.0
                    self.metrics.redis_up.set(1)
        return result

    def _trip(self, operation: str, exc: Exception) -> None:
        self.metrics.redis_errors.labels(operation).inc()
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + self.settings.down_backoff_s
            self.metrics.redis_up.set(0)
        if first:
            log.warning("redis unavailable during %s (%s); degraded: answering from PostgreSQL", operation, exc)

    def ping_latency_ms(self) -> float:
        """For /readyz: bypasses the breaker so readiness reflects Redis right now."""
        started = time.perf_counter()
        self.client.ping()
        return (time.perf_counter() - started) * 1000

    def release_lock(self, key: str, token: str) -> None:
        self.call("unlock", lambda _client: self._release(keys=[key], args=[token]))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            log.debug("closing redis client failed", exc_info=True)


class CacheAside:
    """Read-through JSON cache with TTL, single-flight on a miss and invalidation on write."""

    def __init__(self, redis: RedisGateway, metrics: Metrics, *, enabled: bool, ttl_s: int, lock_ttl_ms: int) -> None:
        self.redis = redis
        self.metrics = metrics
        self.enabled = enabled
        self.ttl_s = ttl_s
        self.lock_ttl_ms = lock_ttl_ms

    def get_or_load(self, cache: str, name: str, loader: Callable[[], T], *, ttl_s: int | None = None) -> T:
        """The cached value of ``name`` or, on a miss, ``loader()`` stored for the next reader.

        ``loader`` returns JSON-serialisable data; ``None`` (not found) is not cached.
        """
        if not self.enabled:
            self.metrics.cache_requests.labels(cache, "bypass").inc()
            return loader()
        key = self.redis.key(name)
        try:
            raw = self.redis.call("cache_get", lambda c: c.get(key))
        except RedisDown:
            self.metrics.cache_requests.labels(cache, "error").inc()
            return loader()
        if raw is not None:
            self.metrics.cache_requests.labels(cache, "hit").inc()
            return json.loads(raw)
        self.metrics.cache_requests.labels(cache, "miss").inc()
        return self._load_single_flight(key, loader, ttl_s or self.ttl_s)

    def _load_single_flight(self, key: str, loader: Callable[[], T], ttl_s: int) -> T:
        lock_key = f"{key}:lock"
        token = uuid.uuid4().hex
        try:
            owner = self.redis.call("cache_lock", lambda c: c.set(lock_key, token, nx=True, px=self.lock_ttl_ms))
        except RedisDown:
            return loader()
        if not owner:
            # Someone else is loading this key: wait a little for their value instead of
            # sending one more identical query to PostgreSQL (stampede protection).
            deadline = time.monotonic() + min(self.lock_ttl_ms / 1000, 1.0)
            while time.monotonic() < deadline:
                time.sleep(0.01)
                try:
                    raw = self.redis.call("cache_get", lambda c: c.get(key))
                except RedisDown:
                    break
                if raw is not None:
                    return json.loads(raw)
            return loader()
        try:
            # Double-checked: the previous owner may have stored the value between our miss and
            # our taking the lock; loading again would be the very stampede the lock prevents.
            try:
                raw = self.redis.call("cache_get", lambda c: c.get(key))
            except RedisDown:
                raw = None
            if raw is not None:
                return json.loads(raw)
            value = loader()
            if value is not None:
                payload = json.dumps(value, default=str)
                try:
                    self.redis.call("cache_set", lambda c: c.set(key, payload, ex=ttl_s))
                except RedisDown:
                    pass
            return value
        finally:
            try:
                self.redis.release_lock(lock_key, token)
            except RedisDown:
                pass

    def invalidate(self, *names: str) -> None:
        """Deletes cache entries after a write (one key per call: works on Redis Cluster too).

        If Redis is down the entry cannot be deleted; it then expires with its TTL. That bound
        (``redis.cache_ttl_s``) is the staleness we accept during an outage.
        """
        for name in names:
            key = self.redis.key(name)
            try:
                self._delete(key)
            except RedisDown:
                log.warning("could not invalidate %s (redis down); it expires within its TTL", key)

    def _delete(self, key: str) -> None:
        self.redis.call("cache_invalidate", lambda c: c.delete(key))
