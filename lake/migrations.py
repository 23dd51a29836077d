"""Schema migrations of the lake's Delta tables: an ordered list of nullable columns added in code.

A Delta table keeps the schema it was created with; the declared schemas (``lake.tables``,
``lake.gold``) are what writers produce. When a declared schema gains a column, the change is
also appended here as an ``AddColumn``, so tables created before it get the column too:

    AddColumn("0001_documents_language", "silver/documents", pa.field("language", pa.string()))

``apply_migrations`` (``lakehouse lake migrate``, the ingestion stream's start-up, the first task
of the ``maintain_lake`` DAG) adds each missing column with delta-rs (``alter.add_columns``, a
metadata-only commit: no data file is rewritten). Old files have no such column, so readers see
null there; Spark and delta-rs readers of the new schema both read them. It is idempotent: a
table that has the column (a rerun, or a table created after the change) is left alone, one
whose column has another type is an error. Only nullable additions are migrations: renames,
drops and type changes need a rewrite and are refused here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa

from core.settings import Settings
from lake import gold, tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddColumn:
    """Adds the nullable ``column`` to Delta table ``table``; ``id`` orders and names it."""

    id: str
    table: str
    column: pa.Field

    def __post_init__(self) -> None:
        if not self.column.nullable:
            raise ValueError(f"migration {self.id}: {self.column.name} must be nullable (old rows have no value)")


class LakeMigrationError(RuntimeError):
    """A migration that cannot apply: unknown table, or the column exists with another type."""


# Ordered; append only. Each column must also be in the table's declared schema
# (tests/unit/lake/test_migrations.py checks both).
MIGRATIONS: tuple[AddColumn, ...] = ()


def declared_schemas() -> dict[str, pa.Schema]:
    return {**tables.TABLE_SCHEMAS, **gold.GOLD_SCHEMAS}


def check_order(migrations: Iterable[AddColumn]) -> None:
    """Ids are unique and sorted: the list is append-only history."""
    ids = [m.id for m in migrations]
    if ids != sorted(set(ids)):
        raise LakeMigrationError(f"lake migration ids must be unique and in order, got {ids}")


def apply_migrations(
    settings: Settings,
    migrations: Iterable[AddColumn] = MIGRATIONS,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Adds every missing migration column to its table; returns ``id table`` of those applied
    now. Tables that do not exist yet are skipped (they are created with the declared schema)."""
    from deltalake import DeltaTable, Field

    migrations = list(migrations)
    check_order(migrations)
    say = progress or (lambda message: log.info("%s", message))
    applied = []
    for migration in migrations:
        if migration.table not in declared_schemas():
            raise LakeMigrationError(f"migration {migration.id}: unknown table {migration.table!r}")
        path, options = tables.delta_location(settings, migration.table)
        if not DeltaTable.is_deltatable(path, storage_options=options):
            continue
        table = DeltaTable(path, storage_options=options)
        current = table.schema().to_arrow()  # type: ignore[attr-defined]
        name = migration.column.name
        if name in current.names:
            have = pa.field(current.field(name))
            if not have.type.equals(migration.column.type):
                raise LakeMigrationError(
                    f"migration {migration.id}: {migration.table}.{name} exists as {have.type}, "
                    f"the migration adds {migration.column.type}"
                )
            continue
        table.alter.add_columns([Field.from_arrow(migration.column)])
        applied.append(f"{migration.id} {migration.table}")
        say(f"lake migration {migration.id}: {migration.table} + {name} {migration.column.type}")
    return applied
