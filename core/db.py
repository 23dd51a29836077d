"""Sharded PostgreSQL: one psycopg connection pool per shard database, an explicit router.

Rows live on the shard their key hashes to (``core.sharding.shard_for`` over the shard map
``PostgresSettings.shard_names()``): users and their rows on the shard of ``user_id``,
courses and their rows on the shard of ``course_id``. There are no cross-shard transactions;
a cross-shard read ("my courses") is a fan-out over a small, bounded thread pool.

The shard map the data was written with is recorded in the databases (``core/shard_map.py``):
``open_checked`` (every entry point) refuses a configured map that differs from it, then
follows it — ``shard_of`` routes by the recorded map, and during a reshard by where each key
is now; pools for the databases a reshard adds are created on the way.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from core.settings import PostgresSettings
from core.shard_map import ShardMap, ShardMapMismatch, check_map, configured_databases, read_map, route
from core.sharding import shard_for

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

T = TypeVar("T")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolUsage:
    shard: int
    database: str
    size: int
    available: int
    waiting: int
    max_size: int


def open_checked(settings: PostgresSettings) -> ShardedPostgres:
    """The shard pools of an entry point (API, stream, DAG task), after checking the configured shard
    map against the recorded one (``ShardMapMismatch`` naming both); routing then follows the
    recorded map, re-read every ``shard_map_refresh_s`` (so a running process follows a reshard)."""
    db = ShardedPostgres(settings)
    try:
        db.load_map()
    except BaseException:
        db.close()
        raise
    if not db.map_missing:  # a schema before migration 0004 keeps the configured routing
        db.watch_map(settings.shard_map_refresh_s)
    return db


class ShardedPostgres:
    """One ``ConnectionPool`` per shard, built from Settings; ``for_key`` routes a key to its pool."""

    def __init__(self, settings: PostgresSettings, *, open_pools: bool = True) -> None:
        self.settings = settings
        self.databases = settings.shard_names()
        self.pools: list[ConnectionPool] = [self._new_pool(name) for name in self.databases]
        self._pool_by_name = dict(zip(self.databases, self.pools, strict=True))
        self.shard_map: ShardMap | None = None  # None: route by the configured count (no map read)
        self._map_lock = threading.Lock()
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        self._opened = open_pools
        self.map_missing = False
        self._fanout = ThreadPoolExecutor(max_workers=settings.fanout_workers, thread_name_prefix="shard-fanout")
        if open_pools:
            self.open()

    def _new_pool(self, name: str) -> ConnectionPool:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        settings = self.settings
        return ConnectionPool(
            settings.dsn(name),
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout_s,
            kwargs={"row_factory": dict_row, "connect_timeout": settings.connect_timeout_s},
            name=name,
            open=False,
        )

    @property
    def shards(self) -> int:
        """Shards that may hold rows: the map's (both ends of it during a reshard), else the configured."""
        shard_map = self.shard_map
        return len(self.pools) if shard_map is None else len(shard_map.all_databases())

    def open(self) -> None:
        """Opens every pool without waiting for its first connection (the server may be starting)."""
        for pool in self.pools:
            pool.open(wait=False)

    def close(self) -> None:
        self._stop_watch.set()
        self._fanout.shutdown(wait=False, cancel_futures=True)
        for pool in self._pool_by_name.values():
            pool.close()

    def shard_of(self, key: uuid.UUID | str) -> int:
        """Shard index of a key: an entity id, or a lookup key such as a lowercased email.

        With the recorded map loaded, the index (in ``databases``) of the database holding the key
        now: during a reshard the new shard once the key's move is done, the old one before."""
        shard_map = self.shard_map
        if shard_map is None:
            return shard_for(key, self.shards)
        return route(shard_map, str(key), self._registry_state)

    def for_key(self, key: uuid.UUID | str) -> ConnectionPool:
        """The pool of the shard ``key`` hashes to."""
        return self.pools[self.shard_of(key)]

    # ---- the recorded shard map ---------------------------------------------------------------
    def load_map(self) -> ShardMap | None:
        """Reads the recorded map from the configured shards, checks it against the configured one
        (``ShardMapMismatch``) and routes by it. A server that cannot be reached is not a refusal:
        routing stays on the configured map until ``refresh_map`` reads one."""
        import psycopg

        def read(index: int) -> ShardMap | None:
            try:
                with psycopg.connect(
                    self.settings.dsn(self.databases[index]), connect_timeout=self.settings.connect_timeout_s
                ) as conn:
                    return read_map(conn)
            except psycopg.errors.UndefinedTable:
                return None
            except psycopg.OperationalError:
                if index == 0:
                    raise
                return None  # another shard down is /readyz's business, not a refusal: shard 0 decides

        try:
            recorded = check_map(self.settings, read)
        except psycopg.OperationalError as exc:
            _log.warning("shard map not read (%s); routing by the configured map until it is", exc)
            return None
        if recorded is None:
            self.map_missing = True
            _log.warning(
                "no shard map recorded in %s: routing by the configured %d shard(s); `lakehouse db migrate` records it",
                self.databases[0],
                len(self.databases),
            )
            return None
        self._adopt(recorded)
        return recorded

    def refresh_map(self, *, timeout_s: float = 2.0) -> ShardMap | None:
        """Re-reads the map from shard 0 (the authority) and follows it; errors keep the last map."""
        try:
            with self.pools[0].connection(timeout=timeout_s) as conn:
                recorded = read_map(conn)
        except Exception:  # noqa: BLE001 - a restarting server: keep routing by the last map read
            return self.shard_map
        if recorded is not None and recorded != self.shard_map:
            if self.shard_map is None and not recorded.accepts(configured_databases(self.settings)):
                _log.error(
                    "%s", ShardMapMismatch(f"routing by the recorded shard map {recorded}, not the configured one")
                )
            self._adopt(recorded)
        return recorded

    def watch_map(self, interval_s: float) -> None:
        """Re-reads the recorded map every ``interval_s`` in a daemon thread (until ``close``)."""
        if self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop_watch.wait(interval_s):
                self.refresh_map(timeout_s=interval_s)

        self._watcher = threading.Thread(target=loop, name="shard-map", daemon=True)
        self._watcher.start()

    def _adopt(self, shard_map: ShardMap) -> None:
        """Routes by ``shard_map``: pools for its databases exist first (the list only grows, in an
        order the map's databases are a prefix of), then the map is swapped in."""
        wanted = [identity.rsplit("/", 1)[1] for identity in shard_map.all_databases()]
        with self._map_lock:
            names = list(self.databases)
            names += [name for name in wanted if name not in names]
            if names[: len(wanted)] != wanted:
                names = wanted + [name for name in names if name not in wanted]
            for name in names:
                if name not in self._pool_by_name:
                    pool = self._new_pool(name)
                    if self._opened:
                        pool.open(wait=False)
                    self._pool_by_name[name] = pool
            self.pools = [self._pool_by_name[name] for name in names]
            self.databases = names
            self.shard_map = shard_map

    def _registry_state(self, shard: int, key: str) -> str | None:
        """A key's ``reshard_keys`` state on its old shard (only asked during a reshard)."""
        from psycopg.rows import tuple_row

        with self.pools[shard].connection() as conn:
            row = conn.cursor(row_factory=tuple_row).execute("SELECT state FROM reshard_keys WHERE key = %s", (key,))
            found = row.fetchone()
        return None if found is None else str(found[0])

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
