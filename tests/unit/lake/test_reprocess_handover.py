"""The handover after a reprocess's switch on a real (local) LanceDB: what the stream wrote into
the old table after the catch-up reaches the new one once; writers wait while it runs."""

from __future__ import annotations

import threading
import time

import pytest

from core.settings import Settings
from lake import index_versions as iv
from lake.reprocess_handover import finish, finish_pending, hand_over
from lake.vectors import chunk_rows, connect, open_chunks, upsert_chunks


def rows(document: str, version: int, n: int, *, course: str = "c", embedded: bool = True, tag: str = "") -> list:
    return [{"chunk_id": f"{document}-{version}-{i}{tag}", "document_id": document, "version": version,
             "course_id": course, "chunk_index": i, "page_start": 1, "page_end": 1, "text": f"{document} {i}",
             "vector": [1.0] + [0.0] * 383, "embedded": embedded} for i in range(n)]  # fmt: skip


def ids(db, settings: Settings, table: str) -> list[str]:
    return sorted(open_chunks(db, settings.lancedb, create=False, name=table).to_arrow()["chunk_id"].to_pylist())


def switched(db, settings: Settings, scope: str = "course:c") -> tuple[iv.IndexVersion, iv.IndexVersion]:
    """Version 2 (scope ``scope``) switched live with version 1 retiring."""
    old = iv.live_version(db, settings)
    new = iv.mark(db, iv.create_version(db, settings, chunk_size=300, chunk_overlap=50, embedding_model="m",
                                        precision="fp32", scope=scope), "checked")  # fmt: skip
    open_chunks(db, settings.lancedb, name=new.table_name)
    return iv.switch_live(db, new, old, handover=True), old


def test_the_handover_copies_late_writes_once_and_leaves_the_rebuilt_documents(settings):
    db = connect(settings.lancedb)
    old_table = open_chunks(db, settings.lancedb)
    upsert_chunks(
        old_table, chunk_rows(rows("a", 1, 3) + rows("r", 1, 2) + rows("o", 1, 2, course="x", embedded=False))
    )
    new, old = switched(db, settings)
    new_table = open_chunks(db, settings.lancedb, name=new.table_name)
    # the build: a and r rebuilt with new chunking (4 chunks), o (another course) copied while text-first
    upsert_chunks(new_table, chunk_rows(rows("a", 1, 4, tag="n") + rows("r", 1, 4, tag="n")
                                        + rows("o", 1, 2, course="x", embedded=False)))  # fmt: skip
    # after the catch-up, into the old table: a new upload, r's version 2 replacing 1, o embedded
    upsert_chunks(old_table, chunk_rows(rows("late", 1, 3) + rows("r", 2, 2) + rows("o", 1, 2, course="x")))
    old_table.delete("document_id = 'r' AND version <> 2")

    done = finish(db, settings, new, old)

    assert (done.documents, done.chunks, done.dropped) == (3, 7, 1)
    assert ids(db, settings, new.table_name) == sorted(
        [f"a-1-{i}n" for i in range(4)] + [f"late-1-{i}" for i in range(3)] + ["r-2-0", "r-2-1", "o-1-0", "o-1-1"]
    )
    embedded = open_chunks(db, settings.lancedb, name=new.table_name).search().where("document_id = 'o'").to_arrow()
    assert embedded["embedded"].to_pylist() == [True, True]
    assert {v.version: v.state for v in iv.list_versions(db)} == {1: "retired", 2: "live"}
    assert hand_over(db, settings, new, old).documents == 0  # a rerun copies nothing
    assert next(v for v in iv.list_versions(db) if v.version == 1).retired_at is not None  # expiry still counts


def test_a_writer_waits_while_a_version_is_retiring_then_a_cut_off_handover_is_finished(settings):
    db = connect(settings.lancedb)
    upsert_chunks(open_chunks(db, settings.lancedb), chunk_rows(rows("a", 1, 1)))
    switched(db, settings, scope="all")
    started = time.monotonic()
    lance = settings.lancedb.model_copy(update={"handover_wait_s": 0.3})  # the writer's wait is a setting
    live, stuck = iv.settled_live(db, lance, poll_s=0.05)
    assert time.monotonic() - started >= 0.3 and stuck == [1] and live == iv.LiveIndex(2, "chunks_v2")
    assert iv.settled_live(db, settings.lancedb, wait_s=5, ignore=stuck)[1] == []  # given up on: no new wait
    # the reprocess crashed after its switch: its rerun finishes the handover first
    [(version, done)] = finish_pending(db, settings)
    assert (version.version, done.documents) == (1, 1) and ids(db, settings, "chunks_v2") == ["a-1-0"]
    assert iv.settled_live(db, settings.lancedb, wait_s=0)[1] == [] and finish_pending(db, settings) == []


@pytest.mark.parametrize("handover_before_the_commit", [True, False])
def test_a_stream_write_cut_by_the_switch_is_redone_in_the_new_table_after_the_handover(
    settings, handover_before_the_commit
):
    """The writer resolved the old table, the switch committed while it wrote: its rows land in
    the old table after the handover read it (only the writer's redo brings them over) or before
    (both do, one after the other: the writer waits while the old version is retiring)."""
    from spark_jobs.ingest.writes import LanceChunks

    db = connect(settings.lancedb)
    upsert_chunks(open_chunks(db, settings.lancedb), chunk_rows(rows("a", 1, 1)))
    writer = LanceChunks(settings)
    events: list[str] = []
    handover: list[threading.Thread] = []

    def hand_over_later(new, old) -> None:
        time.sleep(0.3)
        events.append(f"handover copied {finish(db, settings, new, old).chunks}")

    def write(table) -> None:
        if not events:  # the switch commits during this first write
            new, old = switched(db, settings, scope="all")
            upsert_chunks(open_chunks(db, settings.lancedb, name=new.table_name), chunk_rows(rows("a", 1, 1)))
            if handover_before_the_commit:
                events.append(f"handover copied {finish(db, settings, new, old).chunks}")
            else:
                handover.append(threading.Thread(target=hand_over_later, args=(new, old)))
                handover[0].start()
        upsert_chunks(table, chunk_rows(rows("late", 1, 2)))
        events.append(f"wrote {table.name}")

    writer.fenced(write)
    for thread in handover:
        thread.join()
    if handover_before_the_commit:
        assert events == ["handover copied 0", "wrote chunks", "wrote chunks_v2"]
    else:
        assert events == ["wrote chunks", "handover copied 2", "wrote chunks_v2"]
    assert ids(db, settings, "chunks_v2") == ["a-1-0", "late-1-0", "late-1-1"]  # each once
    assert {v.version: v.state for v in iv.list_versions(db)} == {1: "retired", 2: "live"}
