"""Lake maintenance: layout, compaction and clean-up of the Delta tables and the LanceDB chunks table.

Streaming writes many small files: each micro-batch adds Parquet files to every silver table and
a fragment to LanceDB, each gold write a file per table. Reads slow down as those pile up, so
maintenance (``lakehouse lake maintain`` and the daily ``maintain_lake`` DAG) runs, per table:

- **optimize**: Z-ORDER on (course_id, document_id) for the silver and gold tables — searches,
  loads and generation all filter by course or document, so co-locating their rows lets readers
  skip files by min/max stats — and plain bin-packing for bronze (no such columns). Written with
  delta-rs (``optimize.z_order`` / ``optimize.compact``, ``dataChange=false``: Change Data Feed
  readers see nothing new); a table with one file, or with no data written since its last
  OPTIMIZE, is skipped (Z-ORDER rewrites every file it is given).
- **checkpoint**: ``create_checkpoint`` (readers replay one Parquet file instead of every JSON
  commit) then ``cleanup_metadata`` (log entries older than ``delta.logRetentionDuration``).
- **vacuum**: files no longer referenced and older than ``lake.vacuum_retention_hours`` (>= 7
  days, which is also how far back time travel can read data).
- **lancedb**: compacts fragments, folds new rows into the full-text, vector and course indexes
  (building the vector index once the table is large enough) and prunes old table versions.

Each step reports files and bytes before/after (``lake.footprint``). Maintenance commits race
with the stream's Spark commits: a delta-rs commit that loses is retried (``CommitFailedError``),
and the stream retries its own (``tables.retry_on_conflict``); every write is keyed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from core.settings import Settings
from lake import gold, tables
from lake.footprint import Footprint, delta_live, split_delta, stored_objects

if TYPE_CHECKING:
    from deltalake import DeltaTable, WriterProperties

T = TypeVar("T")
log = logging.getLogger(__name__)

ZORDER_COLUMNS = ("course_id", "document_id")
DELTA_TABLES: tuple[str, ...] = (*tables.TABLE_SCHEMAS, *gold.GOLD_SCHEMAS)
LANCEDB_PREFIX = "lancedb/"
# Operations that add or change data: an OPTIMIZE newer than all of them has nothing to do.
_LAYOUT_ONLY = {"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "CHECKPOINT"}


@dataclass
class StepReport:
    table: str
    step: str
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows: int
    version: int
    seconds: float
    detail: str = ""

    def line(self) -> str:
        return (
            f"{self.table} {self.step}: files {self.files_before} -> {self.files_after}, bytes "
            f"{self.bytes_before:,} -> {self.bytes_after:,}, {self.rows:,} rows, v{self.version}, "
            f"{self.seconds:.2f} s{f' ({self.detail})' if self.detail else ''}"
        )


@dataclass
class MaintenanceReport:
    run_id: str
    started_at: datetime
    steps: list[StepReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "started_at": self.started_at.isoformat()}

    def warehouse_rows(self) -> list[dict[str, Any]]:
        """One ``fact_lake_maintenance`` row per step (``warehouse.load.record_lake_maintenance``)."""
        return [
            {
                "run_id": self.run_id, "table_name": s.table, "step": s.step, "started_at": self.started_at,
                "seconds": s.seconds, "files_before": s.files_before, "files_after": s.files_after,
                "bytes_before": s.bytes_before, "bytes_after": s.bytes_after, "rows": s.rows,
                "table_version": s.version, "detail": s.detail,
            }
            for s in self.steps
        ]  # fmt: skip


def lancedb_name(settings: Settings) -> str:
    """How reports and the CLI name the live index version's LanceDB table: ``lancedb/chunks``,
    ``lancedb/chunks_v2`` after a reprocess switched to version 2 (``lake.index_versions``)."""
    from lake.index_versions import live_index
    from lake.vectors import connect

    try:
        table_name = live_index(connect(settings.lancedb), settings.lancedb).table_name
    except (FileNotFoundError, ValueError):
        table_name = settings.lancedb.chunks_table
    return LANCEDB_PREFIX + table_name


def open_delta(settings: Settings, name: str) -> DeltaTable:
    from deltalake import DeltaTable

    path, options = tables.delta_location(settings, name)
    return DeltaTable(path, storage_options=options)


def delta_exists(settings: Settings, name: str) -> bool:
    from deltalake import DeltaTable

    path, options = tables.delta_location(settings, name)
    return bool(DeltaTable.is_deltatable(path, storage_options=options))


def retry_commit(write: Callable[[], T], *, what: str, attempts: int = 5, backoff_s: float = 0.2) -> T:
    """Runs a delta-rs maintenance commit again when a concurrent writer won the race."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, attempts + 1):
        try:
            return write()
        except CommitFailedError as exc:
            if attempt == attempts:
                raise
            log.warning("%s: Delta commit conflict (%s), retry %d of %d", what, exc, attempt, attempts - 1)
            time.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")


def rewrite_properties() -> WriterProperties:
    """Parquet settings of the files maintenance writes: ZSTD, no dictionary pages. Dictionaries of
    unique values (embedding floats, page texts) cost more than they save: a Z-ORDERed
    ``silver/chunks`` file of 160 rows was 360 KB with delta-rs' defaults, 238 KB like this
    (and 285 KB as Spark's 4 files); gold tables shrink 10 %, ``silver/pages`` grows 11 %."""
    from deltalake import ColumnProperties, WriterProperties

    return WriterProperties(compression="ZSTD", default_column_properties=ColumnProperties(dictionary_enabled=False))


def _optimized_since_last_write(table: DeltaTable) -> bool:
    for commit in table.history(50):
        operation = str(commit.get("operation", ""))
        if operation == "OPTIMIZE":
            return True
        if operation not in _LAYOUT_ONLY:
            return False
    return False


def optimize_delta_table(settings: Settings, name: str) -> StepReport:
    """Z-ORDER (silver, gold) or compaction (bronze) of one Delta table; live files before/after."""
    started = time.perf_counter()
    table = open_delta(settings, name)
    before, _rows = delta_live(table)
    columns = [c for c in ZORDER_COLUMNS if c in table.schema().to_arrow().names]  # type: ignore[attr-defined]
    detail = f"z-order {','.join(columns)}" if columns else "compact"
    if before.files <= 1 or _optimized_since_last_write(table):
        detail = {0: "skipped: no files", 1: "skipped: one file"}.get(
            before.files, "skipped: nothing written since the last optimize"
        )
    else:

        def run() -> dict[str, Any]:
            fresh = open_delta(settings, name)  # each attempt sees the commit that won
            if columns:
                return fresh.optimize.z_order(columns, writer_properties=rewrite_properties())
            return fresh.optimize.compact(writer_properties=rewrite_properties())

        metrics = retry_commit(run, what=f"optimize {name}")
        detail += f": {metrics.get('numFilesRemoved', 0)} files rewritten into {metrics.get('numFilesAdded', 0)}"
        table = open_delta(settings, name)
    after, rows = delta_live(table)
    return StepReport(name, "optimize", before.files, after.files, before.bytes, after.bytes, rows,
                      table.version(), round(time.perf_counter() - started, 3), detail)  # fmt: skip


def checkpoint_delta_table(settings: Settings, name: str) -> StepReport:
    """A checkpoint of the current version, then log entries past their retention removed;
    ``_delta_log`` files before/after."""
    started = time.perf_counter()
    table = open_delta(settings, name)
    _data, log_before = split_delta(stored_objects(settings, table.table_uri))
    table.create_checkpoint()
    table.cleanup_metadata()
    _data, log_after = split_delta(stored_objects(settings, table.table_uri))
    _live, rows = delta_live(table)
    return StepReport(name, "checkpoint", log_before.files, log_after.files, log_before.bytes, log_after.bytes,
                      rows, table.version(), round(time.perf_counter() - started, 3),
                      f"checkpoint at v{table.version()}")  # fmt: skip


def vacuum_delta_table(settings: Settings, name: str, *, retention_hours: int | None = None) -> StepReport:
    """VACUUM of files unreferenced for longer than the retention (``lake.vacuum_retention_hours``;
    a shorter ``retention_hours`` is for tests only); stored data files before/after."""
    started = time.perf_counter()
    hours = settings.lake.vacuum_retention_hours if retention_hours is None else retention_hours
    table = open_delta(settings, name)
    data_before, _log = split_delta(stored_objects(settings, table.table_uri))
    deleted = retry_commit(
        lambda: open_delta(settings, name).vacuum(
            retention_hours=hours, dry_run=False, enforce_retention_duration=hours >= 168
        ),
        what=f"vacuum {name}",
    )
    table = open_delta(settings, name)
    data_after, _log = split_delta(stored_objects(settings, table.table_uri))
    _live, rows = delta_live(table)
    return StepReport(name, "vacuum", data_before.files, data_after.files, data_before.bytes, data_after.bytes,
                      rows, table.version(), round(time.perf_counter() - started, 3),
                      f"{len(deleted)} files older than {hours} h removed")  # fmt: skip


def lance_location(settings: Settings, table_name: str) -> str:
    return f"{settings.lancedb.uri.rstrip('/')}/{table_name}.lance"


def _lance_footprint(settings: Settings, table_name: str) -> tuple[Footprint, Footprint]:
    """(data files, everything) stored for a LanceDB table: data, versions, indexes."""
    objects = stored_objects(settings, lance_location(settings, table_name))
    data = [size for path, size in objects.items() if path.startswith("data/")]
    return Footprint(len(data), sum(data)), Footprint(len(objects), sum(objects.values()))


def maintain_lancedb(settings: Settings, name: str | None = None) -> StepReport | None:
    """Compacts and re-indexes a LanceDB chunks table (``lancedb/<table>``; by default the live
    index version's); None when it does not exist yet."""
    from lake.vectors import connect, fragment_count, maintain, unindexed_rows

    name = name or lancedb_name(settings)
    table_name = name.removeprefix(LANCEDB_PREFIX)
    try:
        table = connect(settings.lancedb).open_table(table_name)
    except (FileNotFoundError, ValueError):
        return None
    started = time.perf_counter()
    data_before, all_before = _lance_footprint(settings, table_name)
    fragments_before, unindexed_before = fragment_count(table), unindexed_rows(table)
    result = maintain(table, settings.lancedb)
    data_after, all_after = _lance_footprint(settings, table_name)
    detail = (
        f"fragments {fragments_before} -> {result['fragments_after']}; unindexed rows {unindexed_before} -> "
        f"{unindexed_rows(table)}; indexes {result['indices']}; all stored files {all_before.files} -> "
        f"{all_after.files}, bytes {all_before.bytes:,} -> {all_after.bytes:,}"
    )
    return StepReport(name, "lancedb", data_before.files, data_after.files, data_before.bytes,
                      data_after.bytes, int(result["rows"]), int(table.version),
                      round(time.perf_counter() - started, 3), detail)  # fmt: skip


def maintain_lake(
    settings: Settings,
    *,
    only: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    vacuum_retention_hours: int | None = None,
    run_id: str | None = None,
) -> MaintenanceReport:
    """Maintenance of every Delta table and of the live index version's LanceDB table (or ``only``
    these; ``lancedb/<table>`` names a LanceDB table). Tables that do not exist yet are reported as
    missing, not created."""
    known = [*DELTA_TABLES, lancedb_name(settings)]
    unknown = sorted(n for n in set(only or []) - set(known) if not n.startswith(LANCEDB_PREFIX))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; the lake has {known}")
    report = MaintenanceReport(run_id or str(uuid.uuid4()), datetime.now(UTC))
    say = progress or (lambda message: log.info("%s", message))
    for name in only or known:
        if name.startswith(LANCEDB_PREFIX):
            step = maintain_lancedb(settings, name)
            if step is None:
                report.missing.append(name)
            else:
                report.steps.append(step)
                say(step.line())
            continue
        if not delta_exists(settings, name):
            report.missing.append(name)
            continue
        for run in (
            optimize_delta_table,
            checkpoint_delta_table,
            lambda s, n: vacuum_delta_table(s, n, retention_hours=vacuum_retention_hours),
        ):
            step = run(settings, name)
            report.steps.append(step)
            say(step.line())
    return report
