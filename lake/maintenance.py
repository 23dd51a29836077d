"""Lake maintenance: compaction and clean-up of the Delta tables and the LanceDB chunks table.

Streaming writes many small files: each micro-batch adds Parquet files to every silver table and
a fragment to LanceDB. Reads slow down as those pile up, so maintenance (``lakehouse lake
maintain``, and later a scheduled DAG) periodically

- OPTIMIZEs each Delta table (bin-packing small files; ``dataChange=false``, so Change Data Feed
  readers see nothing new) and VACUUMs files older than ``lake.vacuum_retention_hours``;
- compacts LanceDB fragments, folds new rows into the vector and FTS indexes (building the vector
  index once the table is large enough) and prunes old table versions.

Spark stays the one writing engine of the Delta tables: maintenance goes through it too. It can
run while the stream runs: a conflicting commit is retried (``tables.retry_on_conflict``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from lake import tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass
class DeltaMaintenance:
    table: str
    files_before: int
    files_after: int
    files_added: int
    files_removed: int
    vacuumed_files: int
    seconds: float


@dataclass
class MaintenanceReport:
    delta: list[DeltaMaintenance] = field(default_factory=list)
    lancedb: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _delta_table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def optimize_delta_table(
    spark: SparkSession, settings: Settings, name: str, *, vacuum: bool = True
) -> DeltaMaintenance:
    """OPTIMIZE (compaction) then VACUUM of one Delta table; file counts before and after."""
    from delta.tables import DeltaTable

    path = tables.table_path(settings.lake, name)
    started = time.perf_counter()
    files_before = int(DeltaTable.forPath(spark, path).detail().collect()[0]["numFiles"])
    metrics = tables.retry_on_conflict(
        lambda: DeltaTable.forPath(spark, path).optimize().executeCompaction().collect()[0]["metrics"],
        what=f"optimize {name}",
    )
    vacuumed = 0
    if vacuum:
        DeltaTable.forPath(spark, path).vacuum(float(settings.lake.vacuum_retention_hours))
        vacuumed = _files_deleted_by_last_vacuum(spark, path)
    files_after = int(DeltaTable.forPath(spark, path).detail().collect()[0]["numFiles"])
    return DeltaMaintenance(
        table=name,
        files_before=files_before,
        files_after=files_after,
        files_added=int(metrics["numFilesAdded"]),
        files_removed=int(metrics["numFilesRemoved"]),
        vacuumed_files=vacuumed,
        seconds=round(time.perf_counter() - started, 2),
    )


def _files_deleted_by_last_vacuum(spark: SparkSession, path: str) -> int:
    """``numDeletedFiles`` of the newest VACUUM END commit: Delta counts what it deleted, so the
    table folder need not be listed again (the stream may have committed since: look back a few)."""
    from delta.tables import DeltaTable

    for commit in DeltaTable.forPath(spark, path).history(10).select("operation", "operationMetrics").collect():
        if commit["operation"] == "VACUUM END":
            return int((commit["operationMetrics"] or {}).get("numDeletedFiles", 0))
    return 0


def maintain_lancedb(settings: Settings) -> dict[str, Any] | None:
    """Compacts and re-indexes the LanceDB chunks table; None when it does not exist yet."""
    from lake.vectors import connect, maintain, open_chunks

    try:
        table = open_chunks(connect(settings.lancedb), settings.lancedb, create=False)
    except (FileNotFoundError, ValueError):
        return None
    return maintain(table, settings.lancedb)


def maintain_lake(
    spark: SparkSession, settings: Settings, *, only: list[str] | None = None, progress: Any = None
) -> MaintenanceReport:
    """Maintenance of the bronze/silver Delta tables (all, or ``only`` these) and of LanceDB.
    Tables that do not exist yet are reported as missing, not created."""
    unknown = sorted(set(only or []) - set(tables.TABLE_SCHEMAS))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; the lake has {sorted(tables.TABLE_SCHEMAS)}")
    report = MaintenanceReport()
    say = progress or (lambda message: log.info("%s", message))
    for name in only or list(tables.TABLE_SCHEMAS):
        if not _delta_table_exists(spark, tables.table_path(settings.lake, name)):
            report.missing.append(name)
            continue
        say(f"delta {name}: optimize + vacuum")
        result = optimize_delta_table(spark, settings, name)
        report.delta.append(result)
        say(f"delta {name}: {result.files_before} -> {result.files_after} files in {result.seconds:.1f} s")
    say(f"lancedb {settings.lancedb.chunks_table}: compact + index")
    report.lancedb = maintain_lancedb(settings)
    if report.lancedb is None:
        report.missing.append(f"lancedb:{settings.lancedb.chunks_table}")
    else:
        lance = report.lancedb
        say(f"lancedb: {lance['fragments_before']} -> {lance['fragments_after']} fragments, {lance['rows']} rows")
    return report
