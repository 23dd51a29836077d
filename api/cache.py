"""Redis at the API: a guarded client (degrades instead of failing) and a cache-aside helper.

``RedisGateway.call`` runs one Redis operation; when Redis errors it records the failure
(log line, metric), opens a short breaker (``redis.down_backoff_s``) during which Redis is
not tried at all, and raises ``RedisDown``. Callers decide: reads fall back to PostgreSQL,
rate limits fail open, sessions (login/refresh) answer 503.

``CacheAside.get_or_load`` reads through Redis with a TTL, protects a miss with a single-flight
lock (one loader per key; the others wait briefly for its value) and never lets Redis trouble
break the read. Every write path calls ``invalidate`` after its PostgreSQL commit.

The hot read paths use the asyncio twins (``RedisGateway.acall``, ``CacheAside.aget_many``):
they run on the event loop (no thread-pool hop per Redis call), share the breaker with the
sync client and read several keys in one round trip (MGET; one GET per key on a cluster). When
the request edge already read a route's entries in its own round trip (``set_prefetched``),
``aget_many`` takes them from there instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool

from api.metrics import Metrics
from api.redis_wire import WireRedis
from core.settings import RedisSettings

log = logging.getLogger("api.cache")
T = TypeVar("T")

# Deletes the lock only if we still own it (another loader may hold it after our TTL ran out).
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# Cache entries the request edge read in its own round trip (``api.ratelimit``): key -> raw
# value (None: not cached). Set per request on the request's task; ``aget_many`` uses them once.
_PREFETCHED: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "prefetched_cache_entries", default=None
)


def set_prefetched(values: dict[str, str | None]) -> None:
    """Hands the entries the edge read to this request's cache reads (same task, same context)."""
    _PREFETCHED.set(values)


def prefetched() -> dict[str, str | None] | None:
    """The entries the edge read for this request and no cache read has taken yet (or None)."""
    return _PREFETCHED.get()


def _take_prefetched(keys: list[str]) -> list[str | None] | None:
    """The prefetched values of ``keys`` if the edge read every one of them (then forgotten: a
    later read in the same request, e.g. after a write, goes to Redis)."""
    prefetched = _PREFETCHED.get()
    if prefetched is None or any(key not in prefetched for key in keys):
        return None
    _PREFETCHED.set(None)
    return [prefetched[key] for key in keys]


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
        self.aclient = _async_client(settings)
        # The hot path's commands (the edge script, cache MGETs) on one pipelined connection;
        # on a cluster they go through redis-py, which routes each key to its node.
        self.wire = None if settings.cluster else WireRedis(settings.dsn, timeout_s=settings.socket_timeout_s)

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

    async def acall(self, operation: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``call`` on the event loop: awaits ``fn(async_client)`` under the same breaker."""
        from redis import exceptions as rx

        if self.degraded:
            raise RedisDown("breaker open")
        try:
            result = await fn(self.aclient)
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

    async def aget_many(self, keys: list[str]) -> list[str | None]:
        """Values of ``keys`` in one round trip (MGET), or one GET each on a cluster (keys of
        different slots); raises RedisDown."""
        wire = self.wire
        if wire is None:
            return await self.acall("cache_get", lambda c: asyncio.gather(*(c.get(key) for key in keys)))
        return await self.acall("cache_get", lambda _c: wire.execute("MGET", *keys))

    async def aeval(self, operation: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Runs a Lua script by its SHA (loading it on first use); raises RedisDown."""
        from redis import exceptions as rx

        sha = _sha(script)
        wire = self.wire
        if wire is not None:
            return await self.acall(operation, lambda _c: wire.evalsha_or_eval(sha, script, keys, args))

        async def run(client: Any) -> Any:
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except rx.NoScriptError:
                return await client.eval(script, len(keys), *keys, *args)

        return await self.acall(operation, run)

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

    async def aclose(self) -> None:
        if self.wire is not None:
            self.wire.close()
        try:
            await self.aclient.aclose()
        except Exception:
            log.debug("closing the asyncio redis client failed", exc_info=True)


async def _run(loader: Callable[[], Any]) -> Any:
    """A loader's value: an ``async def`` is awaited on the loop, anything else runs in the thread pool."""
    if inspect.iscoroutinefunction(loader):
        return await loader()
    return await run_in_threadpool(loader)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _async_client(settings: RedisSettings) -> Any:
    """The asyncio client of the hot paths: same server(s), same fail-fast policy (no retries)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "decode_responses": True,
    }
    if settings.cluster:
        client: Any = aioredis.RedisCluster.from_url(settings.dsn, **options)
    else:
        client = aioredis.Redis.from_url(settings.dsn, **options)
    client.set_retry(Retry(NoBackoff(), 0))
    return client


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

    async def aget_many(self, reads: list[tuple[str, str, Callable[[], Any] | None]]) -> list[Any]:
        """``get_or_load`` of several entries on the event loop: one Redis round trip when every
        entry is cached. ``reads`` holds (cache, name, loader); a loader (an ``async def`` awaited
        on the loop, or a plain function run in the thread pool) may be None: a miss then answers
        None without loading."""
        if not self.enabled:
            for cache, _name, _loader in reads:
                self.metrics.cache_requests.labels(cache, "bypass").inc()
            return [await _run(loader) if loader else None for _c, _n, loader in reads]
        keys = [self.redis.key(name) for _cache, name, _loader in reads]
        try:
            raws = _take_prefetched(keys) or await self.redis.aget_many(keys)
        except RedisDown:
            for cache, _name, _loader in reads:
                self.metrics.cache_requests.labels(cache, "error").inc()
            return [await _run(loader) if loader else None for _c, _n, loader in reads]
        values = []
        for (cache, _name, loader), key, raw in zip(reads, keys, raws, strict=True):
            if raw is not None:
                self.metrics.cache_requests.labels(cache, "hit").inc()
                values.append(orjson.loads(raw))
            elif loader is None:
                values.append(None)
            else:
                self.metrics.cache_requests.labels(cache, "miss").inc()
                values.append(await self._aload_single_flight(key, loader, self.ttl_s))
        return values

    async def _aload_single_flight(self, key: str, loader: Callable[[], T], ttl_s: int) -> T:
        """``_load_single_flight`` on the event loop (waiting never blocks the loop)."""
        lock_key = f"{key}:lock"
        token = uuid.uuid4().hex
        try:
            owner = await self.redis.acall("cache_lock", lambda c: c.set(lock_key, token, nx=True, px=self.lock_ttl_ms))
        except RedisDown:
            return await _run(loader)
        if not owner:
            deadline = time.monotonic() + min(self.lock_ttl_ms / 1000, 1.0)
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                try:
                    raw = await self.redis.acall("cache_get", lambda c: c.get(key))
                except RedisDown:
                    break
                if raw is not None:
                    return orjson.loads(raw)
            return await _run(loader)
        try:
            try:
                raw = await self.redis.acall("cache_get", lambda c: c.get(key))
            except RedisDown:
                raw = None
            if raw is not None:
                return orjson.loads(raw)
            value = await _run(loader)
            if value is not None:
                payload = json.dumps(value, default=str)
                try:
                    await self.redis.acall("cache_set", lambda c: c.set(key, payload, ex=ttl_s))
                except RedisDown:
                    pass
            return value
        finally:
            try:
                await self.redis.aeval("unlock", _RELEASE_LOCK, [lock_key], [token])
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
