"""Incremental reads of Delta tables for the warehouse, with delta-rs (no JVM).

The high-water mark of a table is the Delta version last loaded. Same version: nothing is read
(not even the file list of the data). A newer one: only the data files added since that version
are read (the current snapshot's files minus the loaded snapshot's), as Arrow. Gold tables are
written by replace-where overwrites, so a rewritten key comes back in the new files, and the
warehouse table (ReplacingMergeTree on the key, versioned by the Delta version) keeps the newest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("warehouse.lake_source")


@dataclass(frozen=True)
class DeltaChanges:
    """What changed in a Delta table since a version: the new version, and the new rows' batches."""

    version: int | None  # None: the table does not exist (yet)
    files: int
    batches: Iterator[pa.RecordBatch]


def _empty() -> Iterator[pa.RecordBatch]:
    return iter(())


def changes_since(settings: Settings, name: str, since: int | None, *, batch_rows: int) -> DeltaChanges:
    """The rows of Delta table ``name`` (a ``lake.tables``/``lake.gold`` name) added after version
    ``since`` (None: every row), in Arrow batches of at most ``batch_rows``."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lake.tables import delta_location

    path, options = delta_location(settings, name)
    try:
        table = DeltaTable(path, storage_options=options)
    except TableNotFoundError:
        return DeltaChanges(None, 0, _empty())
    version = table.version()
    if since is not None and version == since:
        return DeltaChanges(version, 0, _empty())
    current = set(table.file_uris())
    if since is not None and since < version:
        try:
            current -= set(DeltaTable(path, version=since, storage_options=options).file_uris())
        except Exception as exc:  # noqa: BLE001 - the old version was vacuumed: read it all (the load dedupes)
            log.warning("%s: version %s is gone (%s); reading the whole table", name, since, exc)
    if not current:
        return DeltaChanges(version, 0, _empty())
    # Fragments name files relative to the table root; file URIs are absolute: match on suffixes.
    suffixes: set[str] = set()
    for uri in current:
        parts = uri.split("/")
        suffixes.update("/".join(parts[i:]) for i in range(1, len(parts)))
    import pyarrow.dataset as ds

    dataset = table.to_pyarrow_dataset()
    fragments = [f for f in dataset.get_fragments() if f.path.lstrip("/") in suffixes]
    subset = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return DeltaChanges(version, len(fragments), subset.to_batches(batch_size=batch_rows))
