"""What a lake table occupies: its live data files (what a reader of the current version opens)
and everything stored under it (old files kept for time travel, the log, checkpoints, indexes).

Local tables are listed on the filesystem, ``s3://`` / ``s3a://`` ones with the object store's
S3 client (one paginated LIST per table), so maintenance and time travel read the same numbers
in both modes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from core.settings import Settings

if TYPE_CHECKING:
    from deltalake import DeltaTable


@dataclass(frozen=True)
class Footprint:
    files: int
    bytes: int


def stored_objects(settings: Settings, location: str) -> dict[str, int]:
    """Every object under a table location: path relative to it -> size in bytes."""
    parsed = urlparse(location)
    if parsed.scheme in ("s3", "s3a"):
        from lake.store import s3_client

        prefix = parsed.path.lstrip("/").rstrip("/") + "/"
        pages = s3_client(settings.object_store).get_paginator("list_objects_v2")
        return {
            item["Key"].removeprefix(prefix): int(item["Size"])
            for page in pages.paginate(Bucket=parsed.netloc, Prefix=prefix)
            for item in page.get("Contents", [])
        }
    root = Path(parsed.path if parsed.scheme == "file" else location)
    out: dict[str, int] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.stat().st_size
    return out


def split_delta(objects: dict[str, int]) -> tuple[Footprint, Footprint]:
    """(data files, log files) of a Delta table's stored objects: ``_delta_log/`` holds the
    commits and checkpoints, everything else is data (live or kept for time travel)."""
    log = [size for path, size in objects.items() if path.startswith("_delta_log")]
    data = [size for path, size in objects.items() if not path.startswith("_delta_log") and path.endswith(".parquet")]
    return Footprint(len(data), sum(data)), Footprint(len(log), sum(log))


def delta_live(table: DeltaTable) -> tuple[Footprint, int]:
    """(live data files, rows) of the loaded version of a Delta table."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    sizes = actions.column("size_bytes").to_pylist()
    rows = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
    return Footprint(len(sizes), sum(sizes)), sum(int(r or 0) for r in rows)


def missing_files(settings: Settings, table: DeltaTable, *, stored: dict[str, int] | None = None) -> list[str]:
    """Data files the loaded version of a Delta table needs that are no longer stored (VACUUM
    removed them): such a version cannot be read or restored. ``stored``: a listing already made."""
    import pyarrow as pa

    needed = [unquote(p) for p in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()]
    stored = stored_objects(settings, table.table_uri) if stored is None else stored
    return [path for path in needed if path not in stored]
