"""The ClickHouse warehouse behind clickhouse-connect: chdb in-process or a server over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import WarehouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def warehouse_client(settings: WarehouseSettings) -> Client:
    """A client for the DSN (`chdb:///abs/path` is in-process; one process per path at a time)."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=settings.dsn)
    client.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    return client
