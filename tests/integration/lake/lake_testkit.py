"""Small real lakes for the lake operation tests: Delta tables written with delta-rs (no JVM) with
the silver tables' table properties, and LanceDB chunks tables, all in the test's tmp dir."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.settings import Settings
from lake import tables, vectors


def lake_env(settings: Settings) -> dict[str, str]:
    """The same paths as environment variables, for the CLI run as a subprocess."""
    return {
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_LAKE__ROOT": settings.lake.root,
        "LAKEHOUSE_LANCEDB__URI": settings.lancedb.uri,
        "LAKEHOUSE_LANCEDB__KEEP_VERSIONS_HOURS": str(settings.lancedb.keep_versions_hours),
        "LAKEHOUSE_WAREHOUSE__DSN": settings.warehouse.dsn,
    }


def lake_settings(root: Path, *, keep_versions_hours: float = 0.0) -> Settings:
    """The environment's settings with this test's own lake, LanceDB and warehouse paths; LanceDB
    prunes every old version at maintenance unless told to keep them."""
    data = Settings(environment="test").model_dump()
    data["lake"].update(root=str(root / "lake"))
    data["lancedb"].update(uri=str(root / "lancedb"), keep_versions_hours=keep_versions_hours)
    data["warehouse"]["dsn"] = f"chdb://{root / 'warehouse'}"
    return Settings(**data)


def page_rows(course: str, document: str, pages: int, *, version: int = 1) -> pa.Table:
    rows = [
        {
            "page_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document}/{version}/{n}")),
            "document_id": document,
            "version": version,
            "course_id": course,
            "page_number": n,
            "text": f"page {n} of {document}: " + "lorem ipsum " * 20,
            "char_count": 240,
        }
        for n in range(1, pages + 1)
    ]
    return tables.arrow_rows(tables.SILVER_PAGES, rows)


def append_delta(settings: Settings, name: str, data: pa.Table) -> None:
    """One commit (one small file) on a Delta table, created like the silver tables on first use."""
    from deltalake import write_deltalake

    path, options = tables.delta_location(settings, name)
    configuration = {"delta.enableChangeDataFeed": "true"} if name in tables.SILVER_TABLES else None
    write_deltalake(path, data, mode="append", configuration=configuration, storage_options=options)


def lance_rows(course: str, document: str, count: int) -> pa.Table:
    rng = np.random.default_rng(abs(hash(document)) % 2**32)
    rows = []
    for i in range(count):
        vector = rng.normal(size=vectors.DIMENSION).astype("float32")
        rows.append(
            {
                "chunk_id": f"{document}-c{i}", "document_id": document, "version": 1, "course_id": course,
                "chunk_index": i, "page_start": i, "page_end": i, "text": f"chunk {i} of {document} about topic {i}",
                "vector": vector / np.linalg.norm(vector),
            }
        )  # fmt: skip
    return vectors.chunk_rows(rows)


def checksum(table: pa.Table, key: str) -> tuple[int, str]:
    """(rows, sha256 of the rows sorted by ``key``): equal for the same rows in any file layout."""
    rows = sorted(table.to_pylist(), key=lambda row: str(row[key]))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return len(rows), digest.hexdigest()


def read_delta(settings: Settings, name: str) -> pa.Table:
    from deltalake import DeltaTable

    path, options = tables.delta_location(settings, name)
    return DeltaTable(path, storage_options=options).to_pyarrow_table()


def read_lance(settings: Settings) -> pa.Table:
    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb, create=False)
    return table.to_arrow().drop_columns([vectors.VECTOR_COLUMN])
