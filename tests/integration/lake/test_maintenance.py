"""Lake maintenance against real Delta tables (Spark) and a real LanceDB table."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from core.settings import Settings
from lake import tables, vectors
from lake.maintenance import maintain_lake, optimize_delta_table
from tests.integration.spark_jobs.ingest_testkit import isolated_settings

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _pages(spark, document: str, count: int):
    rows = [(f"{document}-p{n}", document, 1, "course-m", n, f"text of page {n}", 16) for n in range(count)]
    return spark.createDataFrame(rows, tables.spark_schema(tables.SILVER_PAGES))


def _lance_rows(document: str, count: int) -> list[dict]:
    rng = np.random.default_rng(len(document))
    return [
        {
            "chunk_id": f"{document}-c{i}",
            "document_id": document,
            "version": 1,
            "course_id": "course-m",
            "chunk_index": i,
            "page_start": i,
            "page_end": i,
            "text": f"chunk {i} of {document}",
            "vector": (v := rng.normal(size=vectors.DIMENSION).astype("float32")) / np.linalg.norm(v),
        }
        for i in range(count)
    ]


def _page_ids(spark, settings: Settings) -> list[str]:
    path = tables.table_path(settings.lake, tables.SILVER_PAGES)
    return sorted(r.page_id for r in spark.read.format("delta").load(path).select("page_id").collect())


def test_maintain_lake_compacts_delta_and_lancedb_and_keeps_every_row(spark, tmp_path, run_id):
    settings = isolated_settings(tmp_path, run_id)
    tables.ensure_tables(spark, settings.lake)
    for batch in range(4):  # four micro-batches: four (or more) small files
        tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, _pages(spark, f"doc{batch}", 5), "page_id")
    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    for batch in range(3):
        vectors.upsert_chunks(table, vectors.chunk_rows(_lance_rows(f"doc{batch}", 4)))
    page_ids_before = _page_ids(spark, settings)

    report = maintain_lake(spark, settings, only=[tables.SILVER_PAGES])  # all four: the test below

    assert report.missing == []
    [pages] = report.delta
    assert pages.files_before >= 4 and pages.files_after == 1, pages
    assert pages.files_removed == pages.files_before and pages.files_added == 1
    assert _page_ids(spark, settings) == page_ids_before  # compaction moved rows, lost none
    lance = report.lancedb
    assert lance is not None and lance["fragments_before"] >= 3 and lance["fragments_after"] == 1, lance
    assert lance["rows"] == 12 and lance["indices"]["text"] == "FTS"
    reopened = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb, create=False)
    assert sorted(r["chunk_id"] for r in reopened.to_arrow().to_pylist()) == sorted(
        f"doc{b}-c{i}" for b in range(3) for i in range(4)
    )


def test_maintain_lake_reports_tables_not_created_yet(spark, tmp_path, run_id):
    report = maintain_lake(spark, isolated_settings(tmp_path, run_id))
    assert report.delta == [] and report.lancedb is None
    assert set(report.missing) == {*tables.TABLE_SCHEMAS, "lancedb:chunks"}


def test_maintain_lake_names_an_unknown_table(spark, tmp_path, run_id):
    with pytest.raises(ValueError, match=r"unknown table\(s\) \['silver/chunk'\]"):
        maintain_lake(spark, isolated_settings(tmp_path, run_id), only=["silver/chunk"])


def test_writes_during_optimize_retry_conflicts_and_land_exactly_once(spark, tmp_path, run_id, caplog):
    """The stream's insert-only MERGE and maintenance's OPTIMIZE race on the same files."""
    settings = isolated_settings(tmp_path, run_id)
    tables.ensure_tables(spark, settings.lake)
    tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, _pages(spark, "seed", 3), "page_id")
    errors: list[BaseException] = []

    def stream_like_writer() -> None:
        try:
            for batch in range(4):
                frame = _pages(spark, f"w{batch}", 3)
                tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, frame, "page_id")
                tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, frame, "page_id")  # a replay
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=stream_like_writer)
    with caplog.at_level(logging.WARNING, logger="lake.tables"):
        writer.start()
        while writer.is_alive():
            optimize_delta_table(spark, settings, tables.SILVER_PAGES, vacuum=False)
        writer.join()
    assert errors == []
    expected = sorted(f"{d}-p{n}" for d in ["seed", *(f"w{b}" for b in range(4))] for n in range(3))
    assert _page_ids(spark, settings) == expected
    conflicts = [r for r in caplog.records if "commit conflict" in r.getMessage()]
    print(f"{len(conflicts)} commit conflict(s) retried")
