"""Read-only views of the stores the quality suites check, as pandas frames.

Delta tables are read with delta-rs, LanceDB's ``chunks`` table directly, PostgreSQL's
``documents`` rows with a plain ``SELECT`` on every shard, the warehouse's tables with ``SELECT …
FINAL`` in a short ``warehouse_session``. Nothing here writes. A table that
does not exist yet reads as ``None`` (the runner reports it as skipped, not as a failure).

Wide columns are reduced while reading: ``silver/chunks.embedding`` becomes its length (the
suite checks the dimension), page and chunk ``text`` becomes its length (``text_chars``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from core.settings import Settings
from lake.tables import delta_location

if TYPE_CHECKING:
    import pandas as pd


def read_delta(settings: Settings, name: str) -> pa.Table | None:
    """The whole Delta table ``name`` (its current version), or None when it does not exist."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path, options = delta_location(settings, name)
    try:
        table = DeltaTable(path, storage_options=options)
    except TableNotFoundError:
        return None
    return table.to_pyarrow_dataset().to_table()


def text_as_length(table: pa.Table, column: str = "text") -> pa.Table:
    """``column`` kept (so the schema check sees it) but with its length in characters."""
    index = table.schema.get_field_index(column)
    if index < 0:
        return table
    return table.set_column(index, column, pc.utf8_length(table[column]))


def list_as_length(table: pa.Table, column: str) -> pa.Table:
    index = table.schema.get_field_index(column)
    if index < 0:
        return table
    return table.set_column(index, column, pc.list_value_length(table[column]))


def read_lancedb_counts(settings: Settings) -> dict[tuple[str, int], int] | None:
    """Chunks per (document_id, version) in LanceDB's ``chunks`` table; None when it is absent."""
    from lake.vectors import connect, open_chunks

    try:  # the live index version's table (lake.index_versions)
        table = open_chunks(connect(settings.lancedb), settings.lancedb, create=False)
    except (FileNotFoundError, ValueError):
        return None
    rows = table.search().select(["document_id", "version"]).limit(None).to_arrow()
    if rows.num_rows == 0:
        return {}
    counts = rows.group_by(["document_id", "version"]).aggregate([("document_id", "count")])
    return {
        (d, int(v)): int(n)
        for d, v, n in zip(
            counts["document_id"].to_pylist(),
            counts["version"].to_pylist(),
            counts["document_id_count"].to_pylist(),
            strict=False,
        )
    }


def read_indexed_postgres(settings: Settings) -> list[dict]:
    """Every ``indexed`` document version on every shard: id, version, course, pages, chunks."""
    import psycopg
    from psycopg.rows import dict_row

    query = "SELECT id::text AS document_id, version, course_id::text AS course_id, pages, chunks FROM documents"
    query += " WHERE status = 'indexed'"
    rows: list[dict] = []
    for name in settings.postgres.shard_names():
        dsn = settings.postgres.dsn(name)
        with psycopg.connect(dsn, row_factory=dict_row, connect_timeout=settings.postgres.connect_timeout_s) as conn:
            rows += conn.execute(query).fetchall()
    return rows


# Wide text columns of the warehouse read as their length.
WAREHOUSE_WIDE = {"dim_quiz_items": ("question", "options", "explanation", "fact"), "fact_api_events": ("properties",)}


def warehouse_query(table: str) -> str:
    """What the suite of ``table`` reads: the table as analysts see it, wide text as its length."""
    wide = WAREHOUSE_WIDE.get(table, ())
    replace = f" REPLACE ({', '.join(f'length({c}) AS {c}' for c in wide)})" if wide else ""
    final = "" if table == "warehouse_operations" else " FINAL"  # a plain MergeTree log
    return f"SELECT *{replace} FROM {table}{final}"


def read_warehouse(settings: Settings, tables: tuple[str, ...]) -> dict[str, pd.DataFrame] | None:
    """The warehouse ``tables`` as analysts read them (``warehouse_query``);
    None when there is no warehouse yet (an embedded data path never created by a load)."""
    from warehouse.client import parse_dsn, warehouse_session

    target = parse_dsn(settings.warehouse)
    if target.path is not None and not target.path.exists():
        return None
    with warehouse_session(settings.warehouse) as client:
        present = {row[0] for row in client.query("SHOW TABLES").result_rows}
        return {table: client.query_df(warehouse_query(table)) for table in tables if table in present}


@dataclass
class Lake:
    """Everything the suites look at, read once per check."""

    tables: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    lancedb_counts: dict[tuple[str, int], int] | None = None
    postgres_indexed: list[dict] | None = None
    warehouse: dict[str, pd.DataFrame] | None = None  # warehouse table -> its rows (None: no warehouse)
    errors: dict[str, str] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)
