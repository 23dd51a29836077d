"""Schema migrations per shard: plain SQL files in ``deploy/migrations`` applied in name order.

Each shard database records what it has applied in ``schema_migrations`` (name, checksum);
a file already applied is skipped, so ``lakehouse db migrate`` is idempotent and safe to run
from several processes at once (a transaction-scoped advisory lock serialises them per shard).
An applied file whose contents changed is refused: write a new file instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from core.settings import PostgresSettings
from core.shard_map import configured_databases

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x1A4E_0001  # advisory lock key: "lakehouse migrations"


class MigrationError(RuntimeError):
    """A migration failed or an applied migration was edited; the message names the file and shard."""


@dataclass(frozen=True)
class MigrationResult:
    database: str
    applied: tuple[str, ...]
    skipped: tuple[str, ...]


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migrate_database(dsn: str, *, database: str, directory: Path = MIGRATIONS_DIR) -> MigrationResult:
    """Applies the pending migrations to one database, each file in its own transaction."""
    applied: list[str] = []
    skipped: list[str] = []
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        for path in migration_files(directory):
            text = path.read_text()
            checksum = _checksum(text)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                row = conn.execute("SELECT checksum FROM schema_migrations WHERE name = %s", (path.name,)).fetchone()
                if row is not None:
                    if row[0] != checksum:
                        raise MigrationError(
                            f"{database}: migration {path.name} was changed after it was applied; "
                            "add a new migration file instead"
                        )
                    skipped.append(path.name)
                    continue
                try:
                    conn.execute(text)  # type: ignore[arg-type]  # trusted file from the checkout
                except psycopg.Error as exc:
                    raise MigrationError(f"{database}: migration {path.name} failed: {exc}") from exc
                conn.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (path.name, checksum))
                applied.append(path.name)
    return MigrationResult(database, tuple(applied), tuple(skipped))


def migrate(pg: PostgresSettings, *, directory: Path = MIGRATIONS_DIR) -> list[MigrationResult]:
    """Applies pending migrations to every shard database of the shard map, then records the map
    on each shard that has none (``record_shard_map``)."""
    results = [migrate_database(pg.dsn(name), database=name, directory=directory) for name in pg.shard_names()]
    record_shard_map(pg)
    return results


def record_shard_map(pg: PostgresSettings) -> None:
    """Records the configured shard map (version 1, stable) where none is recorded: a new
    installation, or the first migrate after upgrading (then the configured shard count must be
    the one the data was written with). A recorded map is never changed here: only
    ``lakehouse db reshard`` changes it."""
    databases = list(configured_databases(pg))
    for name in pg.shard_names():
        with psycopg.connect(pg.dsn(name), connect_timeout=5) as conn:
            exists = conn.execute("SELECT to_regclass('shard_map') IS NOT NULL").fetchone()
            if exists and exists[0]:
                conn.execute(
                    "INSERT INTO shard_map (version, databases, state) VALUES (1, %s, 'stable')"
                    " ON CONFLICT (singleton) DO NOTHING",
                    (databases,),
                )


def create_databases(pg: PostgresSettings) -> list[str]:
    """Creates the shard databases that do not exist (the platform's role has CREATEDB)."""
    created = []
    with psycopg.connect(pg.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
        present = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in pg.shard_names():
            if name not in present:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
    return created


def drop_databases(pg: PostgresSettings) -> None:
    """Drops the shard databases of ``pg`` (tests and benchmarks use a private shard map)."""
    with psycopg.connect(pg.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
        for name in pg.shard_names():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
