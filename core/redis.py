"""Redis behind one factory: a single server or a Redis Cluster, per Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import RedisSettings

if TYPE_CHECKING:
    import redis


def redis_client(settings: RedisSettings, *, timeout_s: float = 2.0) -> redis.Redis | redis.RedisCluster:
    import redis

    if settings.cluster:
        return redis.RedisCluster.from_url(settings.dsn, socket_timeout=timeout_s, decode_responses=True)
    return redis.Redis.from_url(settings.dsn, socket_timeout=timeout_s, decode_responses=True)
