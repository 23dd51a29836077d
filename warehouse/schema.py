"""Versioned SQL migrations of the warehouse (``warehouse/migrations/NNNN_name.sql``): each file is
applied once, in order, and recorded in ``schema_migrations`` with its checksum; an applied file
that changed afterwards is an error (write a new migration instead)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A migration file was changed after it was applied, or is misnamed."""


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[str, Path]]:
    """(version, path) of every migration, in order."""
    files = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_words.sql")
        files.append((match.group(1), path))
    return files


def statements(sql: str) -> list[str]:
    """The statements of a migration file: ``--`` comment lines dropped, split on ``;`` at a line end."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in re.split(r";\s*$", text, flags=re.MULTILINE) if part.strip()]


def migrate(client: Client, *, folder: Path = MIGRATIONS) -> list[str]:
    """Applies the migrations not applied yet; returns their file names."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version String, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    applied: dict[str, str] = {str(row[0]): str(row[1]) for row in rows}
    done = []
    for version, path in migration_files(folder):
        sql = path.read_text()
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if version in applied:
            if applied[version] != checksum:
                raise MigrationError(f"{path.name} changed after it was applied: add a new migration instead")
            continue
        for statement in statements(sql):
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[version, path.name, checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        done.append(path.name)
    return done
