"""Private shard databases on the stack's PostgreSQL for a test or a session: created and migrated
on entry, dropped on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from core.settings import Settings


@contextlib.contextmanager
def migrated_shards(settings: Settings) -> Iterator[Settings]:
    """``settings``' shard databases, created and migrated; dropped afterwards, whatever happened
    after they were created. Yields ``settings``."""
    from deploy.migrate import create_databases, drop_databases, migrate

    create_databases(settings.postgres)
    try:
        migrate(settings.postgres)
        yield settings
    finally:
        drop_databases(settings.postgres)
