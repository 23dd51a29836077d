"""Shared helpers of the records adapters: the shard pool of a key, rows as JSON-ready values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast, overload

from core.db import ShardedPostgres

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool


def pool_for(db: ShardedPostgres, key: uuid.UUID | str) -> ConnectionPool[Connection[DictRow]]:
    """The pool of ``key``'s shard, typed as ``ShardedPostgres`` builds it: its connections have
    ``row_factory=dict_row``, which the declared ``ConnectionPool`` (tuple rows by default) does not say."""
    return cast("ConnectionPool[Connection[DictRow]]", db.for_key(key))


def returned(row: DictRow | None) -> DictRow:
    """The row of a statement that always yields one (``... RETURNING`` of an insert or upsert,
    a read of the row just written on the same connection): ``None`` there is a broken invariant."""
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


@overload
def jsonable(row: dict[str, Any]) -> dict[str, Any]: ...
@overload
def jsonable(row: None) -> None: ...
@overload
def jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None: ...
def jsonable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as JSON-ready values, the same shape whether it came from PostgreSQL or the cache."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, uuid.UUID):
            out[key] = str(value)
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
