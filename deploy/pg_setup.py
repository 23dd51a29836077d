"""One-time set-up of the local PostgreSQL cluster: initdb, the platform's role, the databases."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from core.settings import PostgresSettings

SUPERUSER = "postgres"


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def init_cluster(*, bin_dir: Path, data_dir: Path, socket_dir: Path) -> None:
    """Runs initdb once; the cluster belongs to the `postgres` OS user (the server refuses root)."""
    socket_dir.mkdir(parents=True, exist_ok=True)
    _chown_tree(socket_dir, SUPERUSER)
    if (data_dir / "PG_VERSION").exists():
        return
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a half-made cluster from an interrupted initdb
    data_dir.mkdir(parents=True)
    _chown_tree(data_dir.parent, SUPERUSER)
    proc = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        user=SUPERUSER,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"postgres: initdb failed:\n{proc.stdout}{proc.stderr}")


def _superuser_conn(socket_dir: Path, port: int) -> psycopg.Connection:
    return psycopg.connect(
        host=str(socket_dir), port=port, user=SUPERUSER, dbname="postgres", autocommit=True, connect_timeout=2
    )


def ping(*, socket_dir: Path, port: int) -> None:
    with _superuser_conn(socket_dir, port) as conn:
        conn.execute("SELECT 1")


def create_role_and_databases(pg: PostgresSettings, *, socket_dir: Path, migrate: bool = False) -> None:
    """Creates the platform's role, one database per shard and Airflow's (idempotent); with
    ``migrate`` also brings every shard to the latest schema, so a fresh stack is usable."""
    with _superuser_conn(socket_dir, pg.port) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (pg.user,)).fetchone()
        statement = (
            "ALTER ROLE {} WITH LOGIN CREATEDB PASSWORD {}"
            if exists
            else "CREATE ROLE {} WITH LOGIN CREATEDB PASSWORD {}"
        )
        conn.execute(sql.SQL(statement).format(sql.Identifier(pg.user), sql.Literal(pg.password.get_secret_value())))
        present = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in [*pg.shard_names(), pg.airflow_db]:
            if name not in present:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(pg.user))
                )
    if migrate:
        from deploy.migrate import migrate as migrate_shards

        migrate_shards(pg)
