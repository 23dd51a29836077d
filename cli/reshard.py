"""``lakehouse db reshard --to N`` and ``lakehouse db shard-map``: the recorded shard map and its changes."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
err = Console(stderr=True)


def register(db_app: typer.Typer) -> None:
    db_app.command("reshard")(reshard_command)
    db_app.command("shard-map")(shard_map_command)


def reshard_command(
    to: Annotated[int, typer.Option("--to", min=1, max=64, help="Shard count to move to")],
    batch_size: Annotated[int, typer.Option(min=1, help="Keys (users, courses, emails, codes) per copy batch")] = 200,
    pause_ms: Annotated[int, typer.Option(min=0, help="Sleep between batches (limits the load on the shards)")] = 0,
) -> None:
    """Move the rows whose shard changes to a map of N shards, online and resumably (rerun after a crash)."""
    from core.settings import Settings
    from core.shard_map import ShardMapMismatch
    from db.reshard import Resharder, ReshardError
    from deploy.migrate import MigrationError, create_databases, migrate_database

    settings = Settings()
    pg = settings.postgres
    target = pg.model_copy(update={"shards": to})
    try:
        created = create_databases(target)
        for name in target.shard_names():
            if name not in pg.shard_names():  # new shards: schema only, their map comes from the mover
                migrate_database(target.dsn(name), database=name)
    except MigrationError as exc:
        err.print(f"[red]preparing the new shard databases failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    if created:
        console.print(f"created {', '.join(created)}")
    started = time.monotonic()

    def progress(phase: str, done: int, total: int) -> None:
        # One plain line per step (a log, a pipe or a terminal alike): elapsed, phase, keys.
        counted = f": {done}/{total}" if total else ""
        console.print(f"[{time.monotonic() - started:7.2f}s] {phase}{counted}", highlight=False, markup=False)

    try:
        report = Resharder(pg, to=to, batch_size=batch_size, batch_pause_s=pause_ms / 1000, progress=progress).run()
    except (ShardMapMismatch, ReshardError) as exc:
        err.print(f"[red]reshard refused or stopped:[/red] {exc}")
        raise typer.Exit(1) from exc
    if report.keys_moved == 0 and not report.resumed_from:
        console.print(f"nothing to move: the recorded map is already {report.to_map}")
        return
    console.print(f"resharded {report.from_map} -> {report.to_map}")
    table = Table(title=f"Rows moved, verified on their new shard ({report.seconds:.1f} s)")
    for column in ("table", "rows moved", "checksum", "updated on the new shard since copied"):
        table.add_column(column)
    for name, figures in report.tables.items():
        table.add_row(name, str(figures.rows), f"{figures.checksum:x}", str(figures.updated_since_copy))
    console.print(table)
    resumed = f" (resumed from {report.resumed_from})" if report.resumed_from else ""
    console.print(f"{report.keys_moved} keys, {report.rows_moved} rows moved{resumed}")
    console.print(f"now set postgres.shards={to} (LAKEHOUSE_POSTGRES__SHARDS={to}) for every process")


def shard_map_command() -> None:
    """Show the shard map recorded in each configured shard database and the configured one."""
    import psycopg

    from core.settings import Settings
    from core.shard_map import configured_databases, describe, read_map

    pg = Settings().postgres
    console.print(f"configured: {describe(configured_databases(pg))}")
    for name in pg.shard_names():
        try:
            with psycopg.connect(pg.dsn(name), connect_timeout=pg.connect_timeout_s) as conn:
                recorded = read_map(conn)
        except psycopg.errors.UndefinedTable:
            console.print(f"{name}: no shard_map table (a schema before migration 0004: run lakehouse db migrate)")
            continue
        except psycopg.Error as exc:
            console.print(f"{name}: unreadable ({exc.__class__.__name__}: {str(exc).splitlines()[0]})")
            continue
        console.print(f"{name}: {recorded if recorded else 'no map recorded (run lakehouse db migrate)'}")
