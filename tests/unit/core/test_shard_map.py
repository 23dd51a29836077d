"""The shard map check and the routing while a reshard is in flight (no database: the recorded
map and the registry are given as functions)."""

from __future__ import annotations

import uuid

import pytest

from core.settings import PostgresSettings
from core.shard_map import ShardMap, ShardMapMismatch, check_map, configured_databases, route
from core.sharding import shard_for

TWO = configured_databases(PostgresSettings(shards=2))
THREE = configured_databases(PostgresSettings(shards=3))


def test_check_map_accepts_the_recorded_map_and_refuses_another_naming_both():
    pg2, pg3 = PostgresSettings(shards=2), PostgresSettings(shards=3)
    stable2 = ShardMap(1, TWO)
    assert check_map(pg2, lambda i: stable2) == stable2
    with pytest.raises(ShardMapMismatch) as refused:
        check_map(pg3, lambda i: stable2)
    message = str(refused.value)
    assert "configured shard map 3 shard(s)" in message and "v1 2 shard(s)" in message
    assert "lakehouse_shard_2" in message and "postgres.shards=2" in message


def test_check_map_during_a_move_accepts_either_end_and_nothing_recorded_is_not_a_refusal():
    moving = ShardMap(2, TWO, "moving", THREE)
    assert check_map(PostgresSettings(shards=2), lambda i: moving) == moving
    assert check_map(PostgresSettings(shards=3), lambda i: moving) == moving
    with pytest.raises(ShardMapMismatch, match="finish it with `lakehouse db reshard --to 3`"):
        check_map(PostgresSettings(shards=4), lambda i: moving)
    assert check_map(PostgresSettings(shards=2), lambda i: None) is None


def test_check_map_refuses_a_shard_ahead_of_shard_0():
    maps = {0: ShardMap(1, TWO), 1: ShardMap(3, THREE, "cleanup", TWO)}
    with pytest.raises(ShardMapMismatch, match="interrupted reshard"):
        check_map(PostgresSettings(shards=2), maps.__getitem__)


def test_route_follows_the_registry_of_the_old_shard_while_moving():
    keys = [str(uuid.UUID(int=i)) for i in range(300)]
    changing = [k for k in keys if shard_for(k, 2) != shard_for(k, 3)]
    staying = [k for k in keys if shard_for(k, 2) == shard_for(k, 3)]
    assert changing and staying
    moving = ShardMap(2, TWO, "moving", THREE)
    asked: list[str] = []

    def registry(state: str | None):
        def read(shard: int, key: str) -> str | None:
            assert shard == shard_for(key, 2)  # the old shard's registry is the one asked
            asked.append(key)
            return state

        return read

    for key in staying:
        assert route(moving, key, registry("pending")) == shard_for(key, 2)
    assert asked == []  # a key that stays put costs no lookup
    for key in changing:
        assert route(moving, key, registry("pending")) == shard_for(key, 2)
        assert route(moving, key, registry("moved")) == shard_for(key, 3)
        assert route(moving, key, registry(None)) == shard_for(key, 3)  # made during the move
        assert route(ShardMap(3, THREE, "cleanup", TWO), key, registry("moved")) == shard_for(key, 3)
        assert route(ShardMap(1, TWO), key, registry("moved")) == shard_for(key, 2)
