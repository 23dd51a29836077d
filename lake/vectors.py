"""LanceDB behind a small interface: the ``chunks`` table, its keyed writes and its indexes.

Writes are keyed on ``chunk_id`` (``merge_insert``), so a replayed batch rewrites the same rows
instead of adding copies. Full-text search uses LanceDB's native FTS index on ``text``; the
IVF_PQ vector index is built once the table is large enough to train it (below that a flat
scan is exact and fast) and queried with ``refine_factor`` so recall stays high.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.settings import LanceDBSettings
from lake.tables import SILVER_CHUNKS_SCHEMA
from processing.embedding import DIMENSION

if TYPE_CHECKING:
    import lancedb

VECTOR_COLUMN = "vector"
TEXT_COLUMN = "text"
# False while a chunk is searchable by its text only (written before its embedding, with a
# placeholder vector); vector search reads only embedded rows.
EMBEDDED_COLUMN = "embedded"
# LanceDB keeps these columns of ``silver/chunks`` (not ``char_start``), plus the vector,
# which is silver's ``embedding`` at its fixed width.
SILVER_EMBEDDING_COLUMN = "embedding"
CHUNK_COLUMNS = (
    "chunk_id",
    "document_id",
    "version",
    "course_id",
    "chunk_index",
    "page_start",
    "page_end",
    "text",
    VECTOR_COLUMN,
)


def connect(settings: LanceDBSettings) -> lancedb.DBConnection:
    """A connection whose open tables see other processes' writes within ``read_consistency_s``
    (a long-lived reader such as the API keeps its table handle)."""
    from datetime import timedelta

    import lancedb

    return lancedb.connect(settings.uri, read_consistency_interval=timedelta(seconds=settings.read_consistency_s))


def chunks_schema() -> pa.Schema:
    """The LanceDB ``chunks`` schema: ``silver/chunks`` columns, all required, the vector and
    whether it is the chunk's embedding yet."""
    fields = [SILVER_CHUNKS_SCHEMA.field(name).with_nullable(False) for name in CHUNK_COLUMNS[:-1]]
    return pa.schema(
        [
            *fields,
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), DIMENSION), nullable=False),
            pa.field(EMBEDDED_COLUMN, pa.bool_(), nullable=False),
        ]
    )


def open_chunks(
    db: lancedb.DBConnection, settings: LanceDBSettings, *, create: bool = True, name: str | None = None
) -> lancedb.table.Table:
    """The chunks table of the live index version (``lake.index_versions``; ``name``: that
    table instead), created empty (with its FTS index) on first use; a table written before
    the ``embedded`` column existed gets it (true: every row there was embedded)."""
    from lake.index_versions import live_index

    name = name or live_index(db, settings).table_name
    try:
        table = db.open_table(name)
    except (FileNotFoundError, ValueError):
        if not create:
            raise
        table = db.create_table(name, schema=chunks_schema(), exist_ok=True)
        ensure_fts_index(table)
        return table
    if EMBEDDED_COLUMN not in table.schema.names:
        table.add_columns({EMBEDDED_COLUMN: "true"})
    return table


def chunk_rows(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with CHUNK_COLUMNS; ``embedded`` defaults to true) as an Arrow table of the
    chunks schema."""
    return pa.Table.from_pylist([{EMBEDDED_COLUMN: True, **row} for row in rows], schema=chunks_schema())


def from_silver_chunks(silver: pa.Table, *, embedded: bool = True) -> pa.Table:
    """The LanceDB rows of ``silver/chunks`` rows (``lake.tables.chunk_row``): one row builder for
    both. ``embedded=False`` marks rows whose vector is a placeholder (text-first writes)."""
    columns = [*CHUNK_COLUMNS[:-1], SILVER_EMBEDDING_COLUMN]
    rows = silver.select(columns).rename_columns(list(CHUNK_COLUMNS))
    rows = rows.append_column(EMBEDDED_COLUMN, pa.array([embedded] * rows.num_rows, type=pa.bool_()))
    return rows.cast(chunks_schema())


def placeholder_vector() -> list[float]:
    """The vector of a chunk not embedded yet: a valid unit vector (an all-zero one has no cosine
    and would poison the IVF training), never returned because vector search filters on
    ``embedded``."""
    return [1.0] + [0.0] * (DIMENSION - 1)


def upsert_chunks(table: lancedb.table.Table, rows: pa.Table) -> None:
    """Inserts new chunks and overwrites known ones, keyed on chunk_id (replay-safe)."""
    if rows.num_rows == 0:
        return
    (table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(rows))


def delete_other_versions(table: lancedb.table.Table, document_id: str, keep_version: int) -> None:
    """Removes every chunk of ``document_id`` whose version is not ``keep_version``."""
    table.delete(f"document_id = {quote(document_id)} AND version <> {int(keep_version)}")


def refresh_indexes(table: lancedb.table.Table, settings: LanceDBSettings) -> None:
    """Folds the rows just written into the full-text and vector indexes (LanceDB's
    ``optimize``: small-fragment compaction and an incremental index update, about 0.1-0.3 s
    for 1,500 new rows on 10,000), so text queries never scan unindexed rows."""
    from datetime import timedelta

    table.optimize(cleanup_older_than=timedelta(hours=settings.keep_versions_hours))


def unindexed_rows(table: lancedb.table.Table) -> dict[str, int]:
    """Rows each index does not cover yet, by index name."""
    out = {}
    for index in table.list_indices():
        stats: Any = table.index_stats(index.name)
        out[index.name] = int(stats.num_unindexed_rows) if stats is not None else 0
    return out


def _index_columns(table: lancedb.table.Table) -> dict[str, str]:
    return {column: str(index.index_type) for index in table.list_indices() for column in index.columns}


def ensure_fts_index(table: lancedb.table.Table) -> bool:
    """Native full-text index on ``text`` with token positions (phrase queries: a student quoting
    a sentence), stemmed, stop words removed; rows added later are folded in by
    ``refresh_indexes``. An index built without positions (before they were needed) is rebuilt.
    True if built now."""
    from lancedb.index import FTS

    fts = [index for index in table.list_indices() if TEXT_COLUMN in index.columns]
    details = (getattr(fts[0], "index_details", None) or {}) if fts else {}
    if fts and details.get("with_position", True):
        return False
    table.create_index(TEXT_COLUMN, config=FTS(with_position=True), replace=True)
    return True


COURSE_COLUMN = "course_id"


def ensure_course_index(table: lancedb.table.Table) -> bool:
    """A B-tree index on ``course_id``, which every search filters by (before the vector and
    text searches: prefilter); True if built now. Kept current by ``refresh_indexes``."""
    from lancedb.index import BTree

    if COURSE_COLUMN in _index_columns(table) or table.count_rows() == 0:
        return False
    table.create_index(COURSE_COLUMN, config=BTree(), replace=False)
    return True


def ensure_vector_index(table: lancedb.table.Table, settings: LanceDBSettings) -> bool:
    """Builds the IVF_PQ index once the table has ``vector_index_min_rows`` rows; True if built now."""
    if VECTOR_COLUMN in _index_columns(table):
        return False
    rows = table.count_rows()
    if rows < settings.vector_index_min_rows:
        return False
    partitions = max(1, min(256, int(rows**0.5)))
    table.create_index(
        metric="cosine",
        vector_column_name=VECTOR_COLUMN,
        index_type="IVF_PQ",
        num_partitions=partitions,
        num_sub_vectors=DIMENSION // 8,
    )
    return True


def maintain(table: lancedb.table.Table, settings: LanceDBSettings) -> dict[str, Any]:
    """Maintenance: compacts small fragments, folds new rows into the indexes, prunes old
    versions, and builds the vector index when the table has grown enough."""
    from datetime import timedelta

    fragments_before = fragment_count(table)
    built = ensure_vector_index(table, settings)
    ensure_fts_index(table)
    ensure_course_index(table)
    table.optimize(cleanup_older_than=timedelta(hours=settings.keep_versions_hours))
    return {
        "rows": table.count_rows(),
        "fragments_before": fragments_before,
        "fragments_after": fragment_count(table),
        "vector_index_built": built,
        "indices": _index_columns(table),
    }


def fragment_count(table: lancedb.table.Table) -> int:
    """Data fragments of the table: each write adds one, compaction merges them."""
    stats: Any = table.stats()  # a dict at run time, typed as a class by lancedb
    fragments = stats["fragment_stats"] if isinstance(stats, dict) else stats.fragment_stats
    return int(fragments["num_fragments"] if isinstance(fragments, dict) else fragments.num_fragments)


def quote(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    return "'" + str(value).replace("'", "''") + "'"
