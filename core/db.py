"""Sharded PostgreSQL: one psycopg connection pool per shard database, an explicit router.

Rows live on the shard their key hashes to (``core.sharding.shard_for`` over the shard map
``PostgresSettings.shard_names()``): users and their rows on the shard of ``user_id``,
courses and their rows on the shard of ``course_id``. There are no cross-shard transactions;
a cross-shard read ("my courses") is a fan-out over a small, bounded thread pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from core.settings import PostgresSettings
from core.sharding import shard_for

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

T = TypeVar("T")


@dataclass(frozen=True)
class PoolUsage:
    shard: int
    database: str
    size: int
    available: int
    waiting: int
    max_size: int


class ShardedPostgres:
    """One ``ConnectionPool`` per shard, built from Settings; ``for_key`` routes a key to its pool."""

    def __init__(self, settings: PostgresSettings, *, open_pools: bool = True) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.settings = settings
        self.databases = settings.shard_names()
        self.pools: list[ConnectionPool] = [
            ConnectionPool(
                settings.dsn(name),
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                timeout=settings.pool_timeout_s,
                kwargs={"row_factory": dict_row, "connect_timeout": settings.connect_timeout_s},
                name=name,
                open=False,
            )
            for name in self.databases
        ]
        self._fanout = ThreadPoolExecutor(max_workers=settings.fanout_workers, thread_name_prefix="shard-fanout")
        if open_pools:
            self.open()

    @property
    def shards(self) -> int:
        return len(self.pools)

    def open(self) -> None:
        """Opens every pool without waiting for its first connection (the server may be starting)."""
        for pool in self.pools:
            pool.open(wait=False)

    def close(self) -> None:
        self._fanout.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools:
            pool.close()

    def shard_of(self, key: uuid.UUID | str) -> int:
        """Shard index of a key: an entity id, or a lookup key such as a lowercased email."""
        return shard_for(key, self.shards)

    def for_key(self, key: uuid.UUID | str) -> ConnectionPool:
        """The pool of the shard ``key`` hashes to."""
        return self.pools[self.shard_of(key)]

    def fan_out(self, work: Callable[[int, psycopg.Connection], T], *, shards: Iterable[int] | None = None) -> list[T]:
        """Runs ``work(shard, conn)`` on each shard (all by default) through the bounded pool, in shard order."""
        targets = sorted(set(range(self.shards) if shards is None else shards))

        def run(shard: int) -> T:
            with self.pools[shard].connection() as conn:
                return work(shard, conn)

        return list(self._fanout.map(run, targets))

    def group_by_shard(self, keys: Iterable[uuid.UUID | str]) -> dict[int, list[uuid.UUID | str]]:
        groups: dict[int, list[uuid.UUID | str]] = {}
        for key in keys:
            groups.setdefault(self.shard_of(key), []).append(key)
        return groups

    def usage(self) -> list[PoolUsage]:
        """Per-shard pool statistics (for metrics and readiness)."""
        result = []
        for index, (name, pool) in enumerate(zip(self.databases, self.pools, strict=True)):
            stats = pool.get_stats()
            result.append(
                PoolUsage(
                    shard=index,
                    database=name,
                    size=stats.get("pool_size", 0),
                    available=stats.get("pool_available", 0),
                    waiting=stats.get("requests_waiting", 0),
                    max_size=pool.max_size,
                )
            )
        return result
