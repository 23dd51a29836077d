"""Lake maintenance against real Delta tables and a real LanceDB table in the test's tmp dir:
many small files become few, rows and checksums stay, each step reports files and bytes, the
warehouse records the steps; Spark-written tables stay readable by Spark after delta-rs
maintenance, and a Spark writer racing maintenance lands every row once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.settings import Settings
from lake import tables, vectors
from lake.maintenance import DELTA_TABLES, maintain_lake, optimize_delta_table
from tests.integration.lake.lake_testkit import (
    append_delta,
    checksum,
    lake_env,
    lake_settings,
    lance_rows,
    page_rows,
    read_delta,
    read_lance,
)
from tests.integration.spark_jobs.ingest_testkit import isolated_settings

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[3]


def _small_files_lake(settings: Settings, *, documents: int, fragments: int) -> None:
    for n in range(documents):  # one commit per document, two courses interleaved: small files
        append_delta(settings, tables.SILVER_PAGES, page_rows(f"course-{n % 2}", f"doc-{n:03d}", 5))
    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    for n in range(fragments):
        vectors.upsert_chunks(table, lance_rows(f"course-{n % 2}", f"doc-{n:03d}", 4))


def test_maintenance_of_many_small_files_leaves_fewer_files_and_the_same_rows_and_checksums(tmp_path):
    settings = lake_settings(tmp_path)
    _small_files_lake(settings, documents=12, fragments=6)
    pages_before = checksum(read_delta(settings, tables.SILVER_PAGES), "page_id")
    chunks_before = checksum(read_lance(settings), "chunk_id")
    lines: list[str] = []

    report = maintain_lake(settings, vacuum_retention_hours=0, progress=lines.append)

    steps = {(s.table, s.step): s for s in report.steps}
    optimize = steps[tables.SILVER_PAGES, "optimize"]
    assert (optimize.files_before, optimize.files_after, optimize.rows) == (12, 1, 60), optimize
    assert optimize.detail.startswith("z-order course_id,document_id") and optimize.bytes_after < optimize.bytes_before
    checkpoint = steps[tables.SILVER_PAGES, "checkpoint"]
    log_dir = Path(settings.lake.root) / tables.SILVER_PAGES / "_delta_log"
    assert any(p.name.endswith(".checkpoint.parquet") for p in log_dir.iterdir()), sorted(os.listdir(log_dir))
    assert checkpoint.files_after > checkpoint.files_before and checkpoint.version == optimize.version
    vacuum = steps[tables.SILVER_PAGES, "vacuum"]  # the 12 compacted files were past a 0 h retention
    assert (vacuum.files_before, vacuum.files_after) == (13, 1) and vacuum.bytes_after == optimize.bytes_after
    lance = steps["lancedb/chunks", "lancedb"]
    assert lance.files_before >= 6 and lance.files_after == 1 and lance.rows == 24, lance
    assert "'text': 'FTS'" in lance.detail and "'course_id': 'BTree'" in lance.detail
    assert checksum(read_delta(settings, tables.SILVER_PAGES), "page_id") == pages_before
    assert checksum(read_lance(settings), "chunk_id") == chunks_before
    assert set(report.missing) == set(DELTA_TABLES) - {tables.SILVER_PAGES}
    assert len(lines) == len(report.steps) and "files 12 -> 1" in lines[0]
    assert [row["step"] for row in report.warehouse_rows()] == [s.step for s in report.steps]

    again = maintain_lake(settings, only=[tables.SILVER_PAGES])  # nothing new: no rewrite
    assert again.steps[0].detail == "skipped: one file" and again.steps[0].version == optimize.version + 2


def test_maintenance_skips_a_table_optimized_since_its_last_write(tmp_path):
    settings = lake_settings(tmp_path)
    _small_files_lake(settings, documents=3, fragments=0)
    first = optimize_delta_table(settings, tables.SILVER_PAGES)
    assert (first.files_before, first.files_after) == (3, 1)
    append_delta(settings, tables.SILVER_PAGES, page_rows("course-0", "doc-new", 2))
    second = optimize_delta_table(settings, tables.SILVER_PAGES)  # a write since: two files -> one
    assert (second.files_before, second.files_after, second.rows) == (2, 1, 17), second


def test_maintain_command_prints_steps_and_records_them_in_the_warehouse(tmp_path):
    settings = lake_settings(tmp_path)
    _small_files_lake(settings, documents=3, fragments=2)
    (tmp_path / "warehouse").mkdir()  # the warehouse exists: steps are recorded
    env = {**os.environ, "PYTHONPATH": str(ROOT), **lake_env(settings)}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    report = json.loads(cli("lake", "maintain", "--json"))
    assert report["recorded_in_warehouse"] is True
    recorded = json.loads(
        cli("sql", "SELECT table_name, step, files_before, files_after FROM fact_lake_maintenance FINAL", "-f", "json")
    )
    assert {"table_name": tables.SILVER_PAGES, "step": "optimize", "files_before": 3, "files_after": 1} in recorded
    assert {(r["table_name"], r["step"]) for r in recorded} == {(s["table"], s["step"]) for s in report["steps"]}


def test_maintain_lake_names_an_unknown_table(tmp_path):
    with pytest.raises(ValueError, match=r"unknown table\(s\) \['silver/chunk'\]"):
        maintain_lake(lake_settings(tmp_path), only=["silver/chunk"])


# ---------------------------------------------------------------------------- with Spark writers


def _pages(spark, document: str, count: int):
    rows = [(f"{document}-p{n}", document, 1, "course-m", n, f"text of page {n}", 16) for n in range(count)]
    return spark.createDataFrame(rows, tables.spark_schema(tables.SILVER_PAGES))


def _page_ids(spark, settings: Settings) -> list[str]:
    path = tables.table_path(settings.lake, tables.SILVER_PAGES)
    return sorted(r.page_id for r in spark.read.format("delta").load(path).select("page_id").collect())


@pytest.mark.spark
def test_spark_written_tables_stay_readable_and_writable_by_spark_after_maintenance(spark, tmp_path, run_id):
    settings = isolated_settings(tmp_path, run_id)
    tables.ensure_tables(spark, settings.lake)
    for batch in range(4):  # four micro-batches: four (or more) small files
        tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, _pages(spark, f"doc{batch}", 5), "page_id")
    page_ids_before = _page_ids(spark, settings)

    report = maintain_lake(settings, only=[tables.SILVER_PAGES])

    optimize = report.steps[0]
    assert optimize.files_before >= 4 and optimize.files_after == 1, optimize
    assert _page_ids(spark, settings) == page_ids_before  # Spark reads the delta-rs checkpoint and files
    tables.insert_new(spark, settings.lake, tables.SILVER_PAGES, _pages(spark, "after", 2), "page_id")
    assert len(_page_ids(spark, settings)) == len(page_ids_before) + 2


@pytest.mark.spark
def test_writes_during_optimize_retry_conflicts_and_land_exactly_once(spark, tmp_path, run_id, caplog):
    """The stream's insert-only MERGE (Spark) and maintenance's OPTIMIZE (delta-rs) race."""
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
    with caplog.at_level(logging.WARNING):
        writer.start()
        while writer.is_alive():
            optimize_delta_table(settings, tables.SILVER_PAGES)
        writer.join()
    assert errors == []
    expected = sorted(f"{d}-p{n}" for d in ["seed", *(f"w{b}" for b in range(4))] for n in range(3))
    assert _page_ids(spark, settings) == expected
    conflicts = [r for r in caplog.records if "commit conflict" in r.getMessage()]
    print(f"{len(conflicts)} commit conflict(s) retried")


def test_maintenance_and_time_travel_follow_the_live_index_version(tmp_path):
    from lake import index_versions
    from lake.history import read_version

    settings = lake_settings(tmp_path)
    _small_files_lake(settings, documents=0, fragments=2)  # version 1: the stream's `chunks`
    db = vectors.connect(settings.lancedb)
    ingest = settings.ingest
    built = index_versions.create_version(db, settings, chunk_size=ingest.chunk_size + 100,
                                          chunk_overlap=ingest.chunk_overlap, embedding_model="m", precision="fp32",
                                          scope="all")  # fmt: skip
    rebuilt = db.create_table(built.table_name, schema=vectors.chunks_schema())
    for n in range(3):
        vectors.upsert_chunks(rebuilt, lance_rows("course-0", f"doc-{n:03d}", 2))
    index_versions.switch_live(db, index_versions.mark(db, built, "checked"), index_versions.live_version(db, settings))

    report = maintain_lake(settings, only=None)

    [lance] = [s for s in report.steps if s.step == "lancedb"]
    assert lance.table == "lancedb/chunks_v2" and (lance.files_before, lance.files_after, lance.rows) == (3, 1, 6)
    assert read_version(settings, "chunks")[1].num_rows == 6  # bare `chunks`: the live version's table
    assert read_version(settings, "lancedb/chunks")[1].num_rows == 8  # the retired version 1, by name
