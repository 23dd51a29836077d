"""The lake's schema migration list: append-only, nullable columns, each in its table's declared schema."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake.migrations import MIGRATIONS, AddColumn, LakeMigrationError, check_order, declared_schemas


def test_every_migration_adds_a_nullable_column_the_declared_schema_has():
    check_order(MIGRATIONS)
    schemas = declared_schemas()
    for migration in MIGRATIONS:
        declared = schemas[migration.table]
        assert migration.column.name in declared.names, f"{migration.id}: add the column to {migration.table}'s schema"
        assert declared.field(migration.column.name).type.equals(migration.column.type), migration.id
        assert declared.field(migration.column.name).nullable, migration.id


def test_a_not_nullable_column_is_not_a_migration():
    with pytest.raises(ValueError, match="language must be nullable"):
        AddColumn("0001_language", "silver/documents", pa.field("language", pa.string(), nullable=False))


def test_migration_ids_must_be_unique_and_in_order():
    column = pa.field("language", pa.string())
    with pytest.raises(LakeMigrationError, match="unique and in order"):
        check_order([AddColumn("0002_b", "silver/documents", column), AddColumn("0001_a", "silver/pages", column)])
