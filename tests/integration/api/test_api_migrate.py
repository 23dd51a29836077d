"""Migrations per shard: idempotent, and an edited applied migration is refused."""

import shutil

import psycopg
import pytest

from deploy.migrate import MIGRATIONS_DIR, MigrationError, create_databases, drop_databases, migrate
from tests.integration.api.api_testkit import derive

pytestmark = pytest.mark.integration


def test_migrate_is_idempotent_and_refuses_an_edited_migration(api_settings, run_id, tmp_path):
    pg = derive(api_settings, postgres={"shards": 2, "shard_db_prefix": f"lakehouse_migr_{run_id}_"}).postgres
    assert create_databases(pg) == pg.shard_names()
    try:
        first = migrate(pg)
        assert [r.applied for r in first] == [("0001_init.sql",)] * 2
        second = migrate(pg)
        assert [r.applied for r in second] == [()] * 2 and [r.skipped for r in second] == [("0001_init.sql",)] * 2
        with psycopg.connect(pg.dsn(pg.shard_names()[1])) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"users", "email_index", "enrolments", "courses", "course_members", "documents", "jobs"} <= tables

        edited = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, edited)
        (edited / "0001_init.sql").write_text((edited / "0001_init.sql").read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"0001_init\.sql was changed"):
            migrate(pg, directory=edited)
    finally:
        drop_databases(pg)
