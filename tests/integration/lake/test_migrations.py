"""Schema evolution on a real Delta table: a table written with the old schema is migrated, read
with the new one (old rows have null), and written with a new row; a rerun changes nothing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake import tables
from lake.migrations import AddColumn, LakeMigrationError, apply_migrations
from tests.integration.lake.lake_testkit import append_delta, lake_settings, page_rows, read_delta

pytestmark = [pytest.mark.integration]
PAGES = tables.SILVER_PAGES
LANGUAGE = AddColumn("0001_pages_language", PAGES, pa.field("language", pa.string()))


def test_an_old_schema_table_is_migrated_and_read_and_written_with_the_new_schema(tmp_path):
    settings = lake_settings(tmp_path)
    append_delta(settings, PAGES, page_rows("course-a", "doc-old", 3))  # the old schema: no language
    old_version = read_delta(settings, PAGES)
    assert "language" not in old_version.column_names

    assert apply_migrations(settings, [LANGUAGE]) == ["0001_pages_language silver/pages"]
    assert apply_migrations(settings, [LANGUAGE]) == []  # idempotent: the column is there

    migrated = read_delta(settings, PAGES)
    new_schema = pa.schema([*tables.SILVER_PAGES_SCHEMA, LANGUAGE.column])
    assert migrated.schema.equals(new_schema, check_metadata=False), migrated.schema
    assert migrated.column("language").to_pylist() == [None, None, None]  # old rows: null
    assert migrated.drop_columns(["language"]).equals(old_version)  # nothing else changed
    new_rows = page_rows("course-a", "doc-new", 1).append_column("language", pa.array(["fr"]))
    append_delta(settings, PAGES, new_rows)
    after = read_delta(settings, PAGES).to_pylist()
    assert sorted((r["document_id"], r["language"]) for r in after) == [
        ("doc-new", "fr"), ("doc-old", None), ("doc-old", None), ("doc-old", None)
    ]  # fmt: skip


def test_a_migration_whose_column_exists_with_another_type_is_an_error(tmp_path):
    settings = lake_settings(tmp_path)
    append_delta(settings, PAGES, page_rows("course-a", "doc-old", 1))
    clash = AddColumn("0001_pages_text", PAGES, pa.field("text", pa.int64()))
    with pytest.raises(LakeMigrationError, match=r"silver/pages.text exists as string, the migration adds int64"):
        apply_migrations(settings, [clash])
    assert apply_migrations(settings, [AddColumn("0002_x", tables.SILVER_CHUNKS, LANGUAGE.column)]) == []  # no table
