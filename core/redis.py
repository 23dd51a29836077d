"""Redis behind one factory: a single server or a Redis Cluster, per Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.settings import RedisSettings

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def redis_client(settings: RedisSettings, *, timeout_s: float = 2.0) -> redis.Redis | redis.RedisCluster:
    import redis

    if settings.cluster:
        return redis.RedisCluster.from_url(settings.dsn, socket_timeout=timeout_s, decode_responses=True)
    return redis.Redis.from_url(settings.dsn, socket_timeout=timeout_s, decode_responses=True)


def async_subscriber(settings: RedisSettings) -> redis.asyncio.Redis:
    """An asyncio connection for pub/sub. A plain connection even in cluster mode: PUBLISH
    reaches subscribers on every node. No read timeout: a subscriber waits for messages."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.dsn, decode_responses=True, socket_timeout=None, socket_connect_timeout=2)


def invalidate_document_cache(client: Any, *, key_prefix: str, course_id: str, document_id: str) -> None:
    """Deletes the API's cache entries of one document (after a worker changed its row)."""
    from core.keys import document_cache_keys

    for key in document_cache_keys(course_id, document_id):
        client.delete(key_prefix + key)
