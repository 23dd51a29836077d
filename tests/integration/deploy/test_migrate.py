"""Migrations per shard: idempotent, and an edited applied migration is refused."""

import shutil

import psycopg
import pytest

from deploy.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    create_databases,
    drop_databases,
    migrate,
    migration_files,
)
from tests.integration.api.api_testkit import derive

pytestmark = pytest.mark.integration


def test_migrate_is_idempotent_and_refuses_an_edited_migration(api_settings, run_id, tmp_path):
    pg = derive(api_settings, postgres={"shards": 2, "shard_db_prefix": f"lakehouse_migr_{run_id}_"}).postgres
    assert create_databases(pg) == pg.shard_names()
    try:
        names = tuple(path.name for path in migration_files())
        assert names[:2] == ("0001_init.sql", "0002_status_checks.sql")
        first = migrate(pg)
        assert [r.applied for r in first] == [names] * 2
        second = migrate(pg)
        assert [r.applied for r in second] == [()] * 2 and [r.skipped for r in second] == [names] * 2
        with psycopg.connect(pg.dsn(pg.shard_names()[1])) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"users", "email_index", "enrolments", "courses", "course_members", "documents", "jobs"} <= tables
        with psycopg.connect(pg.dsn(pg.shard_names()[0])) as conn:
            course = conn.execute(
                "INSERT INTO courses (id, title, owner_id, join_code) VALUES (gen_random_uuid(), 't',"
                " gen_random_uuid(), 'CHECK234') RETURNING id"
            ).fetchone()[0]
            insert = (
                "INSERT INTO documents (id, course_id, filename, sha256, size_bytes, object_key, status, uploaded_by)"
                " VALUES (gen_random_uuid(), %s, 'a.pdf', %s, 1, 'k', %s, gen_random_uuid())"
            )
            conn.execute(insert, (course, "a" * 64, "queued"))
            with pytest.raises(psycopg.errors.CheckViolation, match="documents_status_check"):
                conn.execute(insert, (course, "b" * 64, "uploaded"))  # the old free-text default

        edited = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, edited)
        (edited / "0001_init.sql").write_text((edited / "0001_init.sql").read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"0001_init\.sql was changed"):
            migrate(pg, directory=edited)
    finally:
        drop_databases(pg)
