"""The event loop's PostgreSQL pools: the API's hot reads without a thread-pool hop.

``AsyncShards`` holds one small psycopg ``AsyncConnectionPool`` per shard database of a
``ShardedPostgres`` and routes with its ``shard_of`` (the sync pools' router, which follows the
recorded shard map), so both kinds of pool always agree on where a key lives. A pool is created
and opened on first use, on the running loop (psycopg's async pools belong to one loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from core.db import ShardedPostgres

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import DictRow
    from psycopg_pool import AsyncConnectionPool


class AsyncShards:
    """One small ``AsyncConnectionPool`` per shard database of ``db``, for reads on the event loop.

    ``connection`` routes with ``db.shard_of`` (the sync pools' router), so both kinds of pool
    always agree on where a key lives. A pool is created and opened on first use, on the running
    loop (psycopg's async pools belong to one loop); ``aclose`` closes them on the same loop.
    Connections are in autocommit: a read is one round trip, no BEGIN/ROLLBACK around it.
    """

    def __init__(self, db: ShardedPostgres, *, max_size: int) -> None:
        self.db = db
        self.max_size = max_size
        self._pools: dict[str, AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]] = {}
        self._opening: asyncio.Lock | None = None

    @asynccontextmanager
    async def connection(self, key: uuid.UUID | str) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        """A connection of the shard ``key`` hashes to."""
        database = self.db.databases[self.db.shard_of(key)]
        pool = self._pools.get(database) or await self._open(database)
        async with pool.connection() as conn:
            yield conn

    async def _open(self, database: str) -> AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]:
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            known = self._pools.get(database)
            if known is not None:
                return known
            settings = self.db.settings
            pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
                settings.dsn(database),
                min_size=1,
                max_size=self.max_size,
                timeout=settings.pool_timeout_s,
                kwargs={"row_factory": dict_row, "connect_timeout": settings.connect_timeout_s, "autocommit": True},
                name=f"{database}-async",
                open=False,
            )
            await pool.open(wait=False)
            self._pools[database] = pool
            return pool

    @property
    def open_databases(self) -> list[str]:
        """The shard databases whose async pool has been opened (by a read on it)."""
        return sorted(self._pools)

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.close()
