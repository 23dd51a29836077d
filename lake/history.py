"""Time travel and audit of the lake: the history of a table, its rows at an earlier version or
time, and a restore to that version.

Delta tables (bronze, silver, gold) use delta-rs: ``history()`` lists the commits (operation,
engine, metrics), ``load_as_version`` reads a version or the version current at a time, and
``restore`` commits a new version whose files are those of the earlier one (history is kept: a
restore can itself be undone). LanceDB's ``chunks`` table (``lancedb/chunks``) has versions too:
``list_versions``, ``checkout`` and ``restore``.

A version is readable only while its files exist. VACUUM removes data files unreferenced for
longer than ``lake.vacuum_retention_hours``, LanceDB's clean-up prunes versions older than
``lancedb.keep_versions_hours``, and Delta's log clean-up drops commits older than the log
retention: such a version is refused with ``VersionUnavailable`` naming what is gone and which
versions are still readable, never read half.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from lake.footprint import missing_files, stored_objects
from lake.maintenance import DELTA_TABLES, LANCEDB_PREFIX, lancedb_name, open_delta, retry_commit

if TYPE_CHECKING:
    import lancedb
    import pyarrow as pa
    from deltalake import DeltaTable


class VersionUnavailable(LookupError):
    """The version does not exist, or its files or log entry were cleaned up."""


class UnknownTable(ValueError):
    """A table name the lake does not have."""


@dataclass(frozen=True)
class Version:
    version: int
    timestamp: datetime
    operation: str
    engine: str
    summary: str


def known_tables(settings: Settings) -> list[str]:
    return [*DELTA_TABLES, lancedb_name(settings)]


def _lance_name(settings: Settings, name: str) -> str | None:
    """``lancedb/<table>`` for a LanceDB name (bare ``chunks``: the live index version's table),
    None for a Delta table; an unknown name is an error."""
    if name == settings.lancedb.chunks_table:
        return lancedb_name(settings)
    if name.startswith(LANCEDB_PREFIX):
        return name
    if name in DELTA_TABLES:
        return None
    raise UnknownTable(f"unknown table {name!r}; the lake has {known_tables(settings)}")


def _delta(settings: Settings, name: str) -> DeltaTable:
    from deltalake.exceptions import TableNotFoundError

    try:
        return open_delta(settings, name)
    except TableNotFoundError as exc:
        raise VersionUnavailable(f"{name} does not exist yet (nothing was written to it)") from exc


def _lance(settings: Settings, name: str) -> lancedb.table.Table:
    from lake.vectors import connect

    try:
        return connect(settings.lancedb).open_table(name.removeprefix(LANCEDB_PREFIX))
    except (FileNotFoundError, ValueError) as exc:
        raise VersionUnavailable(f"{name} does not exist") from exc


_METRICS = {
    "numOutputRows": "rows written", "num_added_rows": "rows added", "numTargetRowsInserted": "rows inserted",
    "numTargetRowsUpdated": "rows updated", "numFilesAdded": "files added", "numFilesRemoved": "files removed",
    "numDeletedFiles": "files deleted", "num_added_files": "files added", "num_removed_files": "files removed",
    "numTargetFilesAdded": "files added", "numTargetFilesRemoved": "files removed",
}  # fmt: skip


def _summary(metrics: dict[str, Any] | None) -> str:
    parts = {}
    for key, label in _METRICS.items():
        value = (metrics or {}).get(key)
        if value not in (None, "", "0", 0) and label not in parts:
            parts[label] = f"{value} {label}"
    return ", ".join(parts.values())


def table_history(settings: Settings, name: str, *, limit: int | None = None) -> list[Version]:
    """The table's versions, newest first (Delta: its commits; LanceDB: its kept versions)."""
    if (lance := _lance_name(settings, name)) is not None:
        rows = sorted(_lance(settings, lance).list_versions(), key=lambda v: -int(v["version"]))[:limit]
        return [
            Version(int(v["version"]), _aware(v["timestamp"]), "", "lancedb",
                    f"{v['metadata'].get('total_rows', '?')} rows, {v['metadata'].get('total_data_files', '?')} "
                    "data files")
            for v in rows
        ]  # fmt: skip
    commits = _delta(settings, name).history(limit)
    return [
        Version(
            int(c["version"]),
            datetime.fromtimestamp(int(c["timestamp"]) / 1000, UTC),
            str(c.get("operation", "")),
            str(c.get("engineInfo") or c.get("clientVersion") or ""),
            _summary(c.get("operationMetrics")),
        )
        for c in commits
    ]


def _aware(value: datetime) -> datetime:
    """LanceDB reports local naive times; make them aware of the local zone, then UTC."""
    return value.astimezone(UTC)


def _delta_at(settings: Settings, name: str, *, version: int | None, as_of: datetime | None) -> DeltaTable:
    """The Delta table loaded at ``version`` or at the version current at ``as_of``, refused
    when that version does not exist or its files are gone."""
    table = _delta(settings, name)
    latest = table.version()
    target: int | datetime
    if version is not None:
        if not 0 <= version <= latest:
            raise VersionUnavailable(f"{name} has no version {version}: its versions are 0 to {latest}")
        target = version
    elif as_of is not None:
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        target = as_of
    else:
        return table
    try:
        table.load_as_version(target)
    except Exception as exc:  # delta-rs raises a generic DeltaError for a missing log entry
        what = f"version {version}" if version is not None else f"a version as of {as_of:%Y-%m-%d %H:%M:%S %Z}"
        raise VersionUnavailable(
            f"{name} has no readable {what}: {exc}. Its commit log may have been cleaned up "
            f"(delta.logRetentionDuration); `lakehouse lake history {name}` lists what is left"
        ) from exc
    if as_of is not None and version is None:
        created = _commit_time(table, table.version())
        if created is not None and created > as_of:
            raise VersionUnavailable(
                f"{name} had no version yet at {as_of.isoformat()}: its oldest readable commit, version "
                f"{table.version()}, is from {created.isoformat()}"
            )
    gone = missing_files(settings, table)
    if gone:
        raise VersionUnavailable(
            f"version {table.version()} of {name} was vacuumed: {len(gone)} of its data files are gone "
            f"(VACUUM removes files unreferenced for longer than lake.vacuum_retention_hours = "
            f"{settings.lake.vacuum_retention_hours} h). {_readable_from(settings, name, table.version(), latest)}"
        )
    return table


def _commit_time(table: DeltaTable, version: int) -> datetime | None:
    for commit in table.history():
        if int(commit["version"]) == version:
            return datetime.fromtimestamp(int(commit["timestamp"]) / 1000, UTC)
    return None


def _readable_from(settings: Settings, name: str, after: int, latest: int) -> str:
    stored = stored_objects(settings, open_delta(settings, name).table_uri)
    for candidate in range(after + 1, latest + 1):
        table = open_delta(settings, name)
        try:
            table.load_as_version(candidate)
        except Exception:  # noqa: BLE001, S112 - a version whose log is gone is simply not readable
            continue
        if not missing_files(settings, table, stored=stored):
            return f"Versions {candidate} to {latest} are readable."
    return f"Only the current version {latest} is readable."


def _lance_version(settings: Settings, name: str, table: lancedb.table.Table, *, version: int | None,
                   as_of: datetime | None) -> int:  # fmt: skip
    versions = {int(v["version"]): _aware(v["timestamp"]) for v in table.list_versions()}
    kept = f"kept versions: {min(versions)} to {max(versions)}" if versions else "no versions are kept"
    if version is not None:
        if version not in versions:
            pruned = version < min(versions, default=0)
            reason = (
                f"it was cleaned up by maintenance (versions older than lancedb.keep_versions_hours = "
                f"{settings.lancedb.keep_versions_hours} h are pruned)"
                if pruned
                else "it does not exist"
            )
            raise VersionUnavailable(f"{name} has no version {version}: {reason}; {kept}")
        return version
    if as_of is not None:
        at = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        earlier = [v for v, ts in versions.items() if ts <= at]
        if not earlier:
            raise VersionUnavailable(f"{name} has no version as of {at.isoformat()}; {kept}")
        return max(earlier)
    return int(table.version)


def read_version(
    settings: Settings, name: str, *, version: int | None = None, as_of: datetime | None = None,
    limit: int | None = None,
) -> tuple[int, pa.Table]:  # fmt: skip
    """(version read, its rows) of a table at a version, as of a time, or now; ``limit`` rows at
    most. LanceDB rows come without their vectors."""
    if (lance := _lance_name(settings, name)) is not None:
        from lake.vectors import VECTOR_COLUMN

        table = _lance(settings, lance)
        chosen = _lance_version(settings, lance, table, version=version, as_of=as_of)
        table.checkout(chosen)
        try:
            if limit is None:
                return chosen, table.to_arrow().drop_columns([VECTOR_COLUMN])
            columns = [c for c in table.schema.names if c != VECTOR_COLUMN]
            return chosen, table.search().select(columns).limit(limit).to_arrow()
        finally:
            table.checkout_latest()
    delta = _delta_at(settings, name, version=version, as_of=as_of)
    dataset = delta.to_pyarrow_dataset()
    return delta.version(), (dataset.head(limit) if limit is not None else dataset.to_table())


def restore_version(settings: Settings, name: str, version: int) -> dict[str, Any]:
    """Restores a table to an earlier version as a new version; refused when that version is
    unreadable. Returns the version restored from, the new version and the engine's metrics."""
    if (lance := _lance_name(settings, name)) is not None:
        table = _lance(settings, lance)
        _lance_version(settings, lance, table, version=version, as_of=None)
        table.restore(version)
        return {"table": lance, "restored": version, "version": int(table.version), "metrics": {}}
    if version == _delta(settings, name).version():
        raise VersionUnavailable(f"version {version} is already the current version of {name}: nothing to restore")
    _delta_at(settings, name, version=version, as_of=None)  # refuses a missing or vacuumed version
    metrics = retry_commit(lambda: _delta(settings, name).restore(version), what=f"restore {name}")
    return {"table": name, "restored": version, "version": _delta(settings, name).version(), "metrics": metrics}
