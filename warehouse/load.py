"""The warehouse's one writer: loads PostgreSQL shards, Delta tables and the analytics topic.

Every source is incremental and every write idempotent:

* **PostgreSQL** (``records.exports``): per shard and table, rows changed at or after the stored
  watermark minus ``warehouse.postgres_overlap_s`` (a transaction that committed late with an
  earlier timestamp is still seen); the watermark becomes the newest ``changed_at`` read.
* **Delta** (``warehouse.lake_source``): per table, only files added since the stored version
  (delta-rs reads the log); the engine reads those Parquet files itself (``INSERT … SELECT`` from
  ``file()`` or ``s3()``); the same version reads nothing.
* **Kafka** (``warehouse.analytics``): the consumer group's committed offsets.

Rows from PostgreSQL and Kafka go in with INSERTs of ``warehouse.batch_rows`` (>= 10k), all into
ReplacingMergeTree tables keyed by the source's key, so a re-run — a retried task, an overlap,
``full=True`` — leaves one row per key; the partitions a load touched are then merged
(``OPTIMIZE … PARTITION … FINAL``), so even a query without FINAL sees each row once. Each
source's watermark is stored right after its rows, and each run writes one
``warehouse_operations`` row per source.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from core.settings import Settings
from warehouse.rows import COLUMNS, CONVERTERS, EVENT_COLUMNS, PARTITION_COLUMN, partition_id
from warehouse.schema import migrate

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from records.exports import ShardExports

log = logging.getLogger("warehouse.load")
Source = Literal["postgres", "lake", "analytics"]
SOURCES: tuple[Source, ...] = ("postgres", "lake", "analytics")
# Delta table -> warehouse table (same columns, plus the Delta version the row was read at).
DELTA_TABLES = {"gold/quiz_items": "dim_quiz_items"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SourceReport:
    source: str
    rows: int = 0
    dead_letters: int = 0
    watermark: str = ""
    seconds: float = 0.0
    status: str = "ok"
    detail: str = ""


@dataclass
class LoadReport:
    run_id: str
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "rows": self.rows, "sources": [asdict(s) for s in self.sources]}


class WarehouseLoader:
    """Loads the warehouse through one client (a ``warehouse_session``)."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        exports: ShardExports | None = None,
        progress: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.exports = exports
        self.progress = progress
        self.batch_rows = settings.warehouse.batch_rows
        self._touched: dict[str, set[str]] = {}
        self._sequence = 0

    # ---- watermarks --------------------------------------------------------------------------
    def watermarks(self) -> dict[str, str]:
        rows = self.client.query(
            "SELECT source, argMax(value, sequence), max(sequence) FROM load_watermarks GROUP BY source"
        ).result_rows
        self._sequence = max((int(r[2]) for r in rows), default=0)
        return {r[0]: r[1] for r in rows}

    def _save_mark(self, source: str, value: str) -> None:
        self._sequence += 1
        self.client.insert("load_watermarks", [[source, value, self._sequence]], column_names=["source", "value",
                                                                                            "sequence"])  # fmt: skip

    # ---- inserts -----------------------------------------------------------------------------
    def insert_rows(self, table: str, columns: list[str], rows: list[list[Any]]) -> int:
        """INSERTs ``rows`` in batches of ``warehouse.batch_rows``; remembers the partitions touched."""
        if not rows:
            return 0
        key = PARTITION_COLUMN.get(table)
        if key is not None:
            at = columns.index(key)
            self._touched.setdefault(table, set()).update(partition_id(row[at]) for row in rows)
        else:
            self._touched.setdefault(table, set())
        for start in range(0, len(rows), self.batch_rows):
            self.client.insert(table, rows[start : start + self.batch_rows], column_names=columns)
        return len(rows)

    def _merge_touched(self) -> None:
        """Merges what this load touched, so each key is one row even without FINAL."""
        for table, partitions in sorted(self._touched.items()):
            if not partitions:
                self.client.command(f"OPTIMIZE TABLE {table} FINAL")
            for partition in sorted(partitions):
                self.client.command(f"OPTIMIZE TABLE {table} PARTITION ID '{partition}' FINAL")
        self._touched.clear()

    # ---- sources -----------------------------------------------------------------------------
    def load_postgres(self, marks: dict[str, str]) -> SourceReport:
        from records.exports import EXPORTS

        if self.exports is None:
            raise ValueError("the PostgreSQL load needs the shards' exports")
        report = SourceReport("postgres")
        overlap = timedelta(seconds=self.settings.warehouse.postgres_overlap_s)
        for name in EXPORTS:
            table, columns = COLUMNS[name]
            convert = CONVERTERS[name]
            for shard in range(self.exports.shards):
                source = f"pg:{shard}:{name}"
                mark = datetime.fromisoformat(marks[source]) if source in marks else None
                since = mark - overlap if mark is not None else _EPOCH
                newest = mark
                pending: list[list[Any]] = []
                for batch in self.exports.changed(name, shard=shard, since=since, batch_rows=self.batch_rows):
                    for row in batch:
                        pending.extend(convert(row, shard))
                    newest = max(newest or batch[-1]["changed_at"], batch[-1]["changed_at"])
                    if len(pending) >= self.batch_rows:
                        report.rows += self.insert_rows(table, columns, pending)
                        pending = []
                report.rows += self.insert_rows(table, columns, pending)
                if newest is not None and newest != mark:
                    self._save_mark(source, newest.isoformat())
        report.watermark = f"{len(EXPORTS)} tables x {self.exports.shards} shards"
        return report

    def load_lake(self, marks: dict[str, str]) -> SourceReport:
        from warehouse.lake_source import files_since

        report = SourceReport("lake")
        versions = []
        for name, table in DELTA_TABLES.items():
            source = f"delta:{name}"
            since = int(marks[source]) if source in marks else None
            changes = files_since(self.settings, name, since)
            if changes.files:
                report.rows += self.insert_delta_files(
                    table, changes.files, changes.columns, delta_version=changes.version or 0, rows=changes.rows
                )
                self._touched.setdefault(table, set())
            if changes.version is not None and changes.version != since:
                self._save_mark(source, str(changes.version))
            versions.append(f"{name}@{changes.version} (+{len(changes.files)} files)")
        report.watermark = ", ".join(versions)
        return report

    def insert_delta_files(
        self, table: str, files: list[str], columns: list[str], *, delta_version: int, rows: int | None
    ) -> int:
        """The engine reads the Delta data ``files`` itself (``INSERT … SELECT … FROM file()|s3()``)
        into ``table``, with their Delta version; no row passes through Python. The columns are the
        warehouse table's that the Delta table has, read with the warehouse's types. Returns the
        rows (the Delta statistics, else a count of the files)."""
        from warehouse.lake_source import table_functions

        types: dict[str, str] = {
            str(name): str(kind)
            for name, kind in self.client.query(
                "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}"
                " ORDER BY position",
                parameters={"t": table},
            ).result_rows
        }
        wanted = [c for c in columns if c in types and c != "delta_version"]
        if not wanted:
            raise ValueError(f"{table} shares no column with its Delta table ({', '.join(columns)})")
        structure = ", ".join(f"`{c}` {types[c]}" for c in wanted)
        names = ", ".join(f"`{c}`" for c in wanted)
        for function in table_functions(self.settings, files, structure=structure):
            self.client.command(
                f"INSERT INTO {table} ({names}, delta_version) SELECT {names}, toUInt64({int(delta_version)})"
                f" FROM {function}"
            )
        if rows is not None:
            return rows
        counted = 0
        for function in table_functions(self.settings, files):
            counted += int(self.client.query(f"SELECT count() FROM {function}").result_rows[0][0])
        return counted

    def load_analytics(self) -> SourceReport:
        from warehouse.analytics import consume_analytics

        report = SourceReport("analytics")
        result = consume_analytics(
            self.settings,
            lambda rows: self.insert_rows("fact_api_events", EVENT_COLUMNS, rows),
            batch_rows=self.batch_rows,
        )
        report.rows, report.dead_letters, report.watermark = result.rows, result.dead_letters, result.offsets
        return report

    # ---- a run -------------------------------------------------------------------------------
    def run(self, *, sources: Iterable[Source] = SOURCES, full: bool = False, run_id: str | None = None) -> LoadReport:
        """Loads each source once. ``full`` ignores the stored watermarks (PostgreSQL and Delta are
        read again from the start: the rows land on their keys, nothing doubles)."""
        migrate(self.client)
        report = LoadReport(run_id or str(uuid.uuid4()))
        marks = {} if full else self.watermarks()
        if full:
            self.watermarks()  # the sequence still grows, so the new marks win
        for source in sources:
            started_wall, started = datetime.now(UTC), time.perf_counter()
            self.progress(f"loading {source} …")
            if source == "postgres":
                part = self.load_postgres(marks)
            elif source == "lake":
                part = self.load_lake(marks)
            else:
                part = self.load_analytics()
            self._merge_touched()
            part.seconds = round(time.perf_counter() - started, 3)
            report.sources.append(part)
            self._record(report.run_id, part, started_wall)
            self.progress(f"{source}: {part.rows} rows, {part.dead_letters} dead letters in {part.seconds:.1f} s")
        return report

    def _record(self, run_id: str, part: SourceReport, started: datetime) -> None:
        self.client.insert(
            "warehouse_operations",
            [[run_id, part.source, started, part.seconds, part.rows, part.dead_letters, part.watermark, part.status,
              part.detail]],
            column_names=["run_id", "source", "started_at", "seconds", "rows", "dead_letters", "watermark", "status",
                          "detail"],
        )  # fmt: skip


def load_warehouse(
    settings: Settings,
    *,
    sources: Iterable[Source] = SOURCES,
    full: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> LoadReport:
    """One load from the configured shards, lake and topic into the configured warehouse (the
    entry point of the DAG task and the CLI)."""
    from core.db import ShardedPostgres
    from records.exports import ShardExports
    from warehouse.client import warehouse_session

    sources = tuple(sources)
    db = ShardedPostgres(settings.postgres) if "postgres" in sources else None
    try:
        with warehouse_session(settings.warehouse) as client:
            loader = WarehouseLoader(settings, client, exports=ShardExports(db) if db else None, progress=progress)
            return loader.run(sources=sources, full=full)
    finally:
        if db is not None:
            db.close()


LAKE_MAINTENANCE_COLUMNS = [
    "run_id", "table_name", "step", "started_at", "seconds", "files_before", "files_after", "bytes_before",
    "bytes_after", "rows", "table_version", "detail",
]  # fmt: skip


def record_lake_maintenance(settings: Settings, rows: list[dict[str, Any]]) -> bool:
    """Writes lake maintenance steps (dicts with ``LAKE_MAINTENANCE_COLUMNS``) to
    ``fact_lake_maintenance`` when the warehouse exists (an embedded data path that was created by
    a load, or a reachable server); False when there is no warehouse to write to."""
    from warehouse.client import WarehouseError, parse_dsn, warehouse_session

    target = parse_dsn(settings.warehouse)
    if target.path is not None and not target.path.exists():
        return False
    try:
        with warehouse_session(settings.warehouse) as client:
            migrate(client)
            client.insert(
                "fact_lake_maintenance",
                [[row[column] for column in LAKE_MAINTENANCE_COLUMNS] for row in rows],
                column_names=LAKE_MAINTENANCE_COLUMNS,
            )
    except WarehouseError as exc:
        log.warning("lake maintenance not recorded in the warehouse: %s", exc)
        return False
    return True
