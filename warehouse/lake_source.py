"""Incremental reads of Delta tables for the warehouse: delta-rs names the files, the engine reads them.

The high-water mark of a table is the Delta version last loaded. Same version: nothing is read
(not even the file list of the data). A newer one: delta-rs gives the data files added since that
version (the current snapshot's files minus the loaded snapshot's, from the Delta log only) and
their row counts (the add actions' statistics); no row is decoded in Python. The warehouse engine
then reads those Parquet files itself with a ClickHouse table function chosen by where the lake
is — ``file()`` for a local lake path, ``s3()`` for a lake on S3/MinIO — in one
``INSERT … SELECT`` per directory (``warehouse.load``). A ClickHouse server reads ``file()`` paths
on its own host (under its ``user_files_path``) and ``s3()`` URLs from its own network: with a
server, put the lake on S3.

Gold tables are written by replace-where overwrites, so a rewritten key comes back in the new
files, and the warehouse table (ReplacingMergeTree on the key, versioned by the Delta version)
keeps the newest.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from urllib.parse import unquote

from core.settings import Settings

log = logging.getLogger("warehouse.lake_source")
_GLOB = set("*?{}[]")
MAX_FILES_PER_READ = 200  # files named in one table function (one glob alternative each)


class LakeReadError(ValueError):
    """A Delta data file the warehouse engine cannot be pointed at (an unsupported location)."""


@dataclass(frozen=True)
class DeltaFiles:
    """What changed in a Delta table since a version: the new version and the data files added."""

    version: int | None  # None: the table does not exist (yet)
    files: list[str] = field(default_factory=list)  # absolute URIs (local paths or s3://bucket/key)
    rows: int | None = 0  # from the add actions' statistics; None when a file has none
    columns: list[str] = field(default_factory=list)  # the table's columns (its current schema)


def files_since(settings: Settings, name: str, since: int | None) -> DeltaFiles:
    """The data files of Delta table ``name`` (a ``lake.tables``/``lake.gold`` name) added after
    version ``since`` (None: every file of the current snapshot), read from the Delta log only."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lake.tables import delta_location

    path, options = delta_location(settings, name)
    try:
        table = DeltaTable(path, storage_options=options)
    except TableNotFoundError:
        return DeltaFiles(None)
    version = table.version()
    if since is not None and version == since:
        return DeltaFiles(version)
    current = table.file_uris()
    new = set(current)
    if since is not None and since < version:
        try:
            new -= set(DeltaTable(path, version=since, storage_options=options).file_uris())
        except Exception as exc:  # noqa: BLE001 - the old version was vacuumed: read it all (the load dedupes)
            log.warning("%s: version %s is gone (%s); reading the whole table", name, since, exc)
    files = [uri for uri in current if uri in new]
    columns = [f.name for f in table.schema().fields]
    if not files:
        return DeltaFiles(version, columns=columns)
    actions = pa.table(table.get_add_actions(flatten=True))
    counts = dict(zip(actions.column("path").to_pylist(), actions.column("num_records").to_pylist(), strict=True))
    root = path.rstrip("/") + "/"
    by_file = [counts.get(unquote(uri.removeprefix(root))) for uri in files]
    rows = None if any(n is None for n in by_file) else sum(int(n or 0) for n in by_file)
    return DeltaFiles(version, files, rows, columns)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_functions(settings: Settings, files: list[str], *, structure: str | None = None) -> list[str]:
    """ClickHouse table functions reading ``files`` as Parquet: ``file('<dir>/{a,b}', Parquet)`` for
    local paths, ``s3('<endpoint>/<bucket>/<dir>/{a,b}', key, secret, Parquet)`` for ``s3://`` URIs;
    one per directory and per ``MAX_FILES_PER_READ`` files. ``structure`` (``name Type, …``) pins
    the columns read, so a file written before a column was added reads it as its default."""
    groups: dict[str, list[str]] = {}
    for uri in files:
        directory, name = posixpath.split(uri)
        if not name or _GLOB & set(name):
            raise LakeReadError(f"cannot read Delta data file {uri!r}: glob characters in its name")
        groups.setdefault(directory, []).append(name)
    store = settings.object_store
    tail = ", 'Parquet'" + (f", {_quote(structure)}" if structure else "")
    out = []
    for directory, names in groups.items():
        if _GLOB & set(directory):
            raise LakeReadError(f"cannot read Delta files under {directory!r}: glob characters in the path")
        for start in range(0, len(names), MAX_FILES_PER_READ):
            chunk = names[start : start + MAX_FILES_PER_READ]
            pattern = chunk[0] if len(chunk) == 1 else "{" + ",".join(chunk) + "}"
            if directory.startswith("s3://"):
                url = f"{store.endpoint.rstrip('/')}/{directory.removeprefix('s3://')}/{pattern}"
                secret = store.secret_key.get_secret_value()
                out.append(f"s3({_quote(url)}, {_quote(store.access_key)}, {_quote(secret)}{tail})")
            elif directory.startswith("/"):
                out.append(f"file({_quote(directory + '/' + pattern)}{tail})")
            else:
                raise LakeReadError(f"cannot read Delta files under {directory!r}: only local paths and s3://")
    return out
