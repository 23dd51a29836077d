"""The ClickHouse warehouse behind clickhouse-connect: chdb in-process or a server over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import WarehouseSettings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


def warehouse_client(settings: WarehouseSettings) -> Client:
    """A client for the DSN. chdb allows one process per data path at a time."""
    import clickhouse_connect

    dsn = settings.dsn
    if dsn.startswith("chdb:///"):
        path = Path(dsn.removeprefix("chdb:///"))
        if not path.is_absolute():
            dsn = f"chdb:///{path.resolve()}"
    client = clickhouse_connect.get_client(dsn=dsn)
    client.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    return client
