"""The index version registry on a real (local) LanceDB: creation, the one-commit switch, the
live table readers resolve, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lake import index_versions as iv
from lake.vectors import chunk_rows, connect, open_chunks, upsert_chunks


def _row(chunk: str) -> dict:
    return {"chunk_id": chunk, "document_id": "d", "version": 1, "course_id": "c", "chunk_index": 0,
            "page_start": 1, "page_end": 1, "text": chunk, "vector": [1.0] + [0.0] * 383}  # fmt: skip


def test_without_a_registry_version_1_the_stream_table_is_live(settings):
    db = connect(settings.lancedb)
    assert iv.list_versions(db) == []
    live = iv.live_version(db, settings)
    assert (live.version, live.table_name, live.state) == (1, "chunks", "live")
    assert iv.live_index(db, settings.lancedb) == iv.LiveIndex(1, "chunks")


def test_a_new_version_is_served_only_after_the_switch(settings):
    db = connect(settings.lancedb)
    upsert_chunks(open_chunks(db, settings.lancedb), chunk_rows([_row("old")]))
    new = iv.create_version(db, settings, chunk_size=300, chunk_overlap=50, embedding_model="m", precision="fp32",
                            scope="course:c")  # fmt: skip
    assert (new.version, new.table_name, new.state) == (2, "chunks_v2", "building")
    upsert_chunks(open_chunks(db, settings.lancedb, name=new.table_name), chunk_rows([_row("new")]))
    # building: readers still open version 1
    assert [r["chunk_id"] for r in open_chunks(db, settings.lancedb, create=False).to_arrow().to_pylist()] == ["old"]
    with pytest.raises(ValueError, match="is building, not checked"):
        iv.switch_live(db, new, iv.live_version(db, settings))
    checked = iv.mark(db, new, "checked")
    live = iv.switch_live(db, checked, iv.live_version(db, settings))
    assert live.state == "live" and live.live_at is not None
    assert iv.live_index(db, settings.lancedb) == iv.LiveIndex(2, "chunks_v2")
    assert [r["chunk_id"] for r in open_chunks(db, settings.lancedb, create=False).to_arrow().to_pylist()] == ["new"]
    states = {v.version: v.state for v in iv.list_versions(db)}
    assert states == {1: "retired", 2: "live"}


def test_drop_expired_drops_retired_tables_after_the_keep_time_only(settings):
    db = connect(settings.lancedb)
    upsert_chunks(open_chunks(db, settings.lancedb), chunk_rows([_row("old")]))
    new = iv.mark(db, iv.create_version(db, settings, chunk_size=300, chunk_overlap=50, embedding_model="m",
                                        precision="fp32", scope="all"), "checked")  # fmt: skip
    open_chunks(db, settings.lancedb, name=new.table_name)
    iv.switch_live(db, new, iv.live_version(db, settings))
    assert iv.drop_expired(db, settings) == []  # kept index_version_keep_hours (168 h)
    later = iv.now() + timedelta(hours=settings.lancedb.index_version_keep_hours + 1)
    [dropped] = iv.drop_expired(db, settings, at=later)
    assert (dropped.version, dropped.state) == (1, "dropped")
    assert "chunks" not in db.table_names() and "chunks_v2" in db.table_names()
    assert iv.drop_expired(db, settings, at=later) == []  # the live one is never dropped
