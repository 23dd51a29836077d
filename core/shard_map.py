"""The shard map recorded in the shard databases, and routing while a reshard moves keys.

Every shard holds one ``shard_map`` row (migration ``0004_shard_map.sql``): a version, the
databases keys route over (as ``host:port/database`` identities) and a state:

* ``stable`` — a key lives on ``shard_for(key, len(databases))``;
* ``moving`` — ``lakehouse db reshard`` is moving keys to ``other_databases``. A key whose shard
  is the same in both maps stays put; otherwise the old shard's ``reshard_keys`` registry says
  where it is: ``pending`` -> still on the old shard, ``moved`` -> on the new one, absent -> a key
  made during the move, which goes straight to the new map;
* ``cleanup`` — switched to ``databases``; the old copies in ``other_databases`` are being
  deleted (reads already route by the new map).

Shard 0 is the authority (it exists in every map); the other shards carry copies so that each
database says which map it belongs to. ``check_map`` is the start-up check of every entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from core.settings import PostgresSettings
from core.sharding import shard_for

MapState = Literal["stable", "moving", "cleanup"]


class ShardMapMismatch(RuntimeError):
    """The configured shard map differs from the one recorded in the databases."""


def identity(pg: PostgresSettings, database: str) -> str:
    """A shard database as recorded: ``host:port/database`` (no user, no password)."""
    return f"{pg.host}:{pg.port}/{database}"


def configured_databases(pg: PostgresSettings) -> tuple[str, ...]:
    return tuple(identity(pg, name) for name in pg.shard_names())


def describe(databases: tuple[str, ...]) -> str:
    return f"{len(databases)} shard(s) [{', '.join(databases)}]"


@dataclass(frozen=True)
class ShardMap:
    version: int
    databases: tuple[str, ...]
    state: MapState = "stable"
    other_databases: tuple[str, ...] = ()

    @property
    def shards(self) -> int:
        return len(self.databases)

    def __str__(self) -> str:
        if self.state == "moving":
            return f"v{self.version} moving from {describe(self.databases)} to {describe(self.other_databases)}"
        if self.state == "cleanup":
            return f"v{self.version} {describe(self.databases)} (deleting moved rows left on the old shards)"
        return f"v{self.version} {describe(self.databases)}"

    def accepts(self, configured: tuple[str, ...]) -> bool:
        """A process configured with ``configured`` may run on this map: the same map, or during a
        move either end of it (its router follows the recorded map either way)."""
        return configured == self.databases or (self.state != "stable" and configured == self.other_databases)

    def all_databases(self) -> tuple[str, ...]:
        """Every database that may hold rows under this map, routing order first."""
        extra = tuple(db for db in self.other_databases if db not in self.databases)
        return self.databases + extra

    @classmethod
    def from_row(cls, row: Any) -> ShardMap:
        values = row if isinstance(row, dict) else dict(zip(_COLUMNS, row, strict=True))
        return cls(
            version=values["version"],
            databases=tuple(values["databases"]),
            state=values["state"],
            other_databases=tuple(values["other_databases"] or ()),
        )


_COLUMNS = ("version", "databases", "state", "other_databases")
SELECT_MAP = f"SELECT {', '.join(_COLUMNS)} FROM shard_map"


def read_map(conn: Any) -> ShardMap | None:
    """The map recorded in one database (None when none is recorded)."""
    row = conn.execute(SELECT_MAP).fetchone()
    return None if row is None else ShardMap.from_row(row)


def check_map(pg: PostgresSettings, read: Callable[[int], ShardMap | None]) -> ShardMap | None:
    """The recorded map, after checking it against the configured one on every configured shard.

    ``read(i)`` returns the map recorded in configured shard ``i`` (None: none recorded, e.g. a
    schema older than migration 0004; the caller routes by the configured map and says so).
    Raises ``ShardMapMismatch`` naming both maps when they differ."""
    configured = configured_databases(pg)
    recorded = read(0)
    if recorded is None:
        return None
    if not recorded.accepts(configured):
        hint = (
            f"finish it with `lakehouse db reshard --to {len(recorded.other_databases)}`"
            if recorded.state == "moving"
            else f"set postgres.shards={recorded.shards} or run `lakehouse db reshard --to {len(configured)}`"
        )
        raise ShardMapMismatch(
            f"configured shard map {describe(configured)} differs from the map recorded in the databases:"
            f" {recorded}; {hint}"
        )
    for index in range(1, len(configured)):
        other = read(index)
        if other is not None and other.version > recorded.version:
            raise ShardMapMismatch(
                f"{configured[index]} records shard map {other}, newer than {configured[0]}'s {recorded};"
                " an interrupted reshard: rerun it"
            )
    return recorded


def route(shard_map: ShardMap, key: str, registry_state: Callable[[int, str], str | None]) -> int:
    """Index (in ``shard_map.all_databases()``) of the database holding ``key``.

    ``registry_state(shard, key)`` reads the key's ``reshard_keys`` state on an old shard; it is
    only called while a move is in flight and only for keys whose shard changes."""
    old = shard_for(key, shard_map.shards)
    if shard_map.state != "moving":
        return old
    new_databases = shard_map.other_databases
    new = shard_for(key, len(new_databases))
    all_databases = shard_map.all_databases()
    new_index = all_databases.index(new_databases[new])
    if new_index == old:
        return old
    return old if registry_state(old, key) == "pending" else new_index
