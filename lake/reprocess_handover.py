"""The handover after a reprocess's switch: what the stream wrote into the old table late.

The reprocess's catch-up reads the scope's indexed documents once; the stream keeps writing into
the live (old) table until it sees the switch. The switch retires the old version as
``retiring`` (``lake.index_versions``); ``hand_over`` then reads the old table and copies into
the new one every document version the new table lacks, plus, outside the reprocess's scope
(rows the build copied as they were), every document version whose rows changed since (e.g. a
text-first document embedded meanwhile), and drops from the new table the versions of those
documents the old one no longer holds (replaced by a new upload). Then the old version is
``retired``. Keyed on chunk id (``merge_insert``), so a rerun copies nothing twice.

While a version is ``retiring`` the stream's writer does not write (``settled_live``), and a
write it made into the old table once the switch happened is written again into the new table
after the handover: a write either preceded the handover's read (copied by it) or is redone by
the writer, never both at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lake import index_versions

if TYPE_CHECKING:
    from core.settings import Settings
    from lake.index_versions import IndexVersion


@dataclass(frozen=True)
class Handover:
    """What ``hand_over`` copied: document versions and their chunks, and versions dropped."""

    documents: int = 0
    chunks: int = 0
    dropped: int = 0

    @property
    def message(self) -> str:
        if not (self.documents or self.dropped):
            return "nothing written into the old table after the catch-up"
        return (
            f"{self.documents} document version(s) written into the old table after the catch-up "
            f"({self.chunks} chunks) copied, {self.dropped} replaced version(s) dropped"
        )


def _in_scope(scope: str, course_id: str, document_id: str) -> bool:
    kind, _, value = scope.partition(":")
    return kind == "all" or (kind == "course" and course_id == value) or (kind == "document" and document_id == value)


def _document_versions(table: Any) -> dict[tuple[str, int], tuple[int, int, str]]:
    """(document_id, version) -> (rows, embedded rows, course_id) of a chunks table."""
    import pyarrow as pa

    rows = table.search().select(["document_id", "version", "course_id", "embedded"]).limit(None).to_arrow()
    if rows.num_rows == 0:
        return {}
    rows = rows.set_column(3, "embedded", rows["embedded"].cast(pa.int32()))
    grouped = rows.group_by(["document_id", "version", "course_id"]).aggregate(
        [("embedded", "count"), ("embedded", "sum")]
    )
    names = ("document_id", "version", "course_id", "embedded_count", "embedded_sum")
    columns = (grouped[name].to_pylist() for name in names)
    return {(d, int(v)): (int(n), int(e or 0), c) for d, v, c, n, e in zip(*columns, strict=True)}


def hand_over(db: Any, settings: Settings, new: IndexVersion, old: IndexVersion) -> Handover:
    """Copies into ``new``'s table what ``old``'s received after the build read it (module doc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lake.vectors import open_chunks, quote, refresh_indexes, upsert_chunks

    try:
        source = open_chunks(db, settings.lancedb, create=False, name=old.table_name)
    except (FileNotFoundError, ValueError):
        return Handover()
    target = open_chunks(db, settings.lancedb, create=False, name=new.table_name)
    theirs, mine = _document_versions(source), _document_versions(target)
    missing = sorted(
        key
        for key, (rows, embedded, course) in theirs.items()
        if key not in mine or (not _in_scope(new.scope, course, key[0]) and mine[key][:2] != (rows, embedded))
    )
    if not missing:
        return Handover()
    documents = sorted({document_id for document_id, _ in missing})
    rows = source.search().where(f"document_id IN ({', '.join(quote(d) for d in documents)})").limit(None).to_arrow()
    keys = pc.binary_join_element_wise(rows["document_id"], pc.cast(rows["version"], pa.string()), ":")
    rows = rows.filter(pc.is_in(keys, value_set=pa.array([f"{d}:{v}" for d, v in missing])))
    upsert_chunks(target, rows.select(target.schema.names).cast(target.schema))
    dropped = 0
    for document_id in documents:
        gone = sorted(v for d, v in mine if d == document_id and (d, v) not in theirs)
        if gone:
            target.delete(f"document_id = {quote(document_id)} AND version IN ({', '.join(map(str, gone))})")
            dropped += len(gone)
    refresh_indexes(target, settings.lancedb)
    return Handover(documents=len(missing), chunks=rows.num_rows, dropped=dropped)


def finish(db: Any, settings: Settings, new: IndexVersion, old: IndexVersion) -> Handover:
    """The handover from ``old`` (``retiring``) to ``new`` (live), then ``old`` marked ``retired``."""
    done = hand_over(db, settings, new, old)
    current = {v.version: v for v in index_versions.list_versions(db)}.get(old.version, old)  # with its retired_at
    if current.state == "retiring":
        index_versions.mark(db, current, "retired")
    return done


def finish_pending(db: Any, settings: Settings) -> list[tuple[IndexVersion, Handover]]:
    """Finishes the handovers a reprocess stopped in (crashed after its switch): rerun-safe."""
    versions = index_versions.list_versions(db)
    live = index_versions.live_of(versions)
    if live is None:
        return []
    return [(old, finish(db, settings, live, old)) for old in versions if old.state == "retiring"]
