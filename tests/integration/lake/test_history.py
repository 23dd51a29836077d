"""Time travel and restore on a real Delta table and a real LanceDB table: earlier rows come back,
a vacuumed or pruned version is refused with a message that says so, the CLI prints both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lake import tables, vectors
from lake.history import UnknownTable, VersionUnavailable, read_version, restore_version, table_history
from lake.maintenance import maintain_lancedb, vacuum_delta_table
from tests.integration.lake.lake_testkit import (
    append_delta,
    checksum,
    lake_settings,
    lance_rows,
    page_rows,
    read_delta,
    read_lance,
)

pytestmark = [pytest.mark.integration]
PAGES = tables.SILVER_PAGES


def _three_versions(settings):
    """Versions 0, 1, 2 of silver/pages: one document more each."""
    for n in range(3):
        append_delta(settings, PAGES, page_rows("course-a", f"doc-{n}", 4))
    return [checksum(read_version(settings, PAGES, version=v)[1], "page_id") for v in range(3)]


def test_restore_to_an_earlier_version_returns_the_earlier_rows(tmp_path):
    settings = lake_settings(tmp_path)
    versions = _three_versions(settings)
    assert [v[0] for v in versions] == [4, 8, 12]
    history = table_history(settings, PAGES)
    assert [v.version for v in history] == [2, 1, 0] and history[0].operation == "WRITE"

    result = restore_version(settings, PAGES, 1)

    assert result["restored"] == 1 and result["version"] == 3
    assert checksum(read_delta(settings, PAGES), "page_id") == versions[1]
    assert table_history(settings, PAGES, limit=1)[0].operation == "RESTORE"
    version, rows = read_version(settings, PAGES, version=2)  # history is kept: the restore can be undone
    assert version == 2 and checksum(rows, "page_id") == versions[2]
    later, rows = read_version(settings, PAGES, as_of=datetime.now(UTC))
    assert later == 3 and checksum(rows, "page_id") == versions[1]
    assert read_version(settings, PAGES, version=2, limit=3)[1].num_rows == 3


def test_a_vacuumed_or_missing_version_is_refused_with_a_clear_message(tmp_path):
    settings = lake_settings(tmp_path)
    _three_versions(settings)
    restore_version(settings, PAGES, 0)  # v3 = v0: the files only v1 and v2 added are unreferenced
    vacuum_delta_table(settings, PAGES, retention_hours=0)

    with pytest.raises(VersionUnavailable, match=r"version 2 of silver/pages was vacuumed: 2 of its data files"):
        read_version(settings, PAGES, version=2)
    with pytest.raises(VersionUnavailable, match=r"was vacuumed.*Versions 3 to 5 are readable"):
        restore_version(settings, PAGES, 1)
    with pytest.raises(VersionUnavailable, match=r"silver/pages has no version 9: its versions are 0 to 5"):
        read_version(settings, PAGES, version=9)
    with pytest.raises(VersionUnavailable, match=r"had no version yet at 2020-01-01"):
        read_version(settings, PAGES, as_of=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(UnknownTable, match=r"unknown table 'silver/page'"):
        read_version(settings, "silver/page", version=0)
    assert read_version(settings, PAGES, version=0)[1].num_rows == 4  # v0's file is still referenced
    with pytest.raises(VersionUnavailable, match=r"version 5 is already the current version of silver/pages"):
        restore_version(settings, PAGES, 5)


def test_lancedb_versions_restore_and_a_pruned_version_is_refused(tmp_path):
    settings = lake_settings(tmp_path, keep_versions_hours=24)
    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    vectors.upsert_chunks(table, lance_rows("course-a", "doc-0", 3))
    first = int(table.version)
    vectors.upsert_chunks(table, lance_rows("course-a", "doc-1", 3))
    first_rows = checksum(read_version(settings, "lancedb/chunks", version=first)[1], "chunk_id")
    assert first_rows[0] == 3

    result = restore_version(settings, "chunks", first)

    assert result["version"] > first and checksum(read_lance(settings), "chunk_id") == first_rows
    assert table_history(settings, "lancedb/chunks", limit=1)[0].version == result["version"]
    with pytest.raises(VersionUnavailable, match=r"lancedb/chunks has no version 999: it does not exist"):
        read_version(settings, "lancedb/chunks", version=999)
    pruning = lake_settings(tmp_path, keep_versions_hours=0)
    maintain_lancedb(pruning)  # prunes every version but the latest
    with pytest.raises(VersionUnavailable, match=rf"no version {first}: it was cleaned up by maintenance"):
        restore_version(pruning, "lancedb/chunks", first)
    assert read_version(pruning, "chunks", as_of=datetime.now(UTC) + timedelta(seconds=1))[1].num_rows == 3


def test_lake_commands_show_history_restore_and_refuse_a_vacuumed_version(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import lake as cli_lake
    from cli.main import app

    settings = lake_settings(tmp_path)
    _three_versions(settings)
    monkeypatch.setattr(cli_lake, "_settings", lambda: settings)
    runner = CliRunner()
    done = runner.invoke(app, ["lake", "history", PAGES])
    assert done.exit_code == 0 and "WRITE" in done.output, done.output
    done = runner.invoke(app, ["lake", "show", PAGES, "--version", "0", "--limit", "2", "--json"])
    assert done.exit_code == 0 and len(done.output.splitlines()) == 2 and "doc-0" in done.output, done.output
    done = runner.invoke(app, ["lake", "restore", PAGES, "--version", "0"])
    assert done.exit_code == 0 and "restored version 0 as version 3" in done.output, done.output
    vacuum_delta_table(settings, PAGES, retention_hours=0)
    done = runner.invoke(app, ["lake", "show", PAGES, "--version", "2"])
    assert done.exit_code == 2 and "was vacuumed" in done.output, done.output
    done = runner.invoke(app, ["lake", "show", PAGES, "--version", "1", "--as-of", "2026-01-01"])
    assert done.exit_code == 2 and "not both" in done.output
