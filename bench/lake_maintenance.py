"""Lake maintenance on a generated lake of a few hundred documents: files and bytes per table before
and after ``lake.maintenance.maintain_lake``, and one document's read time before (the baseline,
as the stream left the lake) and after (Z-ORDERed, compacted).

The lake is written through the lake's own writers, as ingestion and generation write it:
silver with Spark's keyed MERGE in micro-batches of ``--batch`` documents (``lake.tables``),
LanceDB with ``lake.vectors.upsert_chunks`` per micro-batch, gold with ``lake.gold.replace_rows``
per document. Texts and vectors are synthetic (no PDF parsing, no embedding model): the file
layout, not the content, is what maintenance changes.

    flock /tmp/lakehouse-heavy.lock .venv/bin/python -m bench.lake_maintenance --documents 300

Writes JSON and a PNG under .lakehouse/bench/lake_maintenance/. VACUUM keeps its 7-day floor here,
so the files compacted away stay stored (time travel needs them): "stored" columns show that;
``--days-later`` maintains with 0 h retentions instead, as a run a week later would find the lake.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api import cpu_model_and_flags  # noqa: E402
from bench.pngplot import stacked_bars  # noqa: E402
from core.settings import Settings  # noqa: E402
from lake import gold, tables, vectors  # noqa: E402
from lake.footprint import delta_live, split_delta, stored_objects  # noqa: E402
from lake.maintenance import DELTA_TABLES, maintain_lake, open_delta  # noqa: E402

OUT_DIR = ROOT / ".lakehouse" / "bench" / "lake_maintenance"
PAGES, CHUNKS = 10, 8
TEXT = "Photosynthesis converts light energy into chemical energy stored in glucose. " * 12


def _silver(course: str, document: str, n: int) -> dict[str, pa.Table]:
    page_rows = [
        {"page_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document}/p{p}")), "document_id": document, "version": 1,
         "course_id": course, "page_number": p, "text": f"{document} page {p}. {TEXT}", "char_count": len(TEXT)}
        for p in range(1, PAGES + 1)
    ]  # fmt: skip
    rng = np.random.default_rng(n)
    chunk_rows = []
    for c in range(CHUNKS):
        vector = rng.normal(size=vectors.DIMENSION).astype("float32")
        chunk_rows.append(
            {"chunk_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document}/c{c}")), "document_id": document,
             "version": 1, "course_id": course, "chunk_index": c, "page_start": c + 1, "page_end": c + 2,
             "char_start": c * 800, "text": f"{document} chunk {c}. {TEXT}",
             "embedding": (vector / np.linalg.norm(vector)).tolist()}
        )  # fmt: skip
    document_row = {
        "document_id": document, "version": 1, "course_id": course, "job_id": str(uuid.uuid4()),
        "uploaded_by": "bench", "filename": f"{document}.pdf", "object_uri": f"raw/{document}.pdf",
        "sha256": "0" * 64, "size_bytes": 100_000, "uploaded_at": datetime.now(UTC), "replaces_version": None,
        "status": "indexed", "reason": None, "pages": PAGES, "chunks": CHUNKS, "is_current": True,
        "source_topic": "bench", "source_partition": 0, "source_offset": n,
    }  # fmt: skip
    return {
        tables.SILVER_DOCUMENTS: tables.arrow_rows(tables.SILVER_DOCUMENTS, [document_row]),
        tables.SILVER_PAGES: tables.arrow_rows(tables.SILVER_PAGES, page_rows),
        tables.SILVER_CHUNKS: tables.arrow_rows(tables.SILVER_CHUNKS, chunk_rows),
    }


def _gold_rows(name: str, course: str, document: str, count: int, run_at: datetime) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        row: dict[str, Any] = {}
        for field in gold.GOLD_SCHEMAS[name]:
            if field.name.endswith("_id") and field.name not in ("document_id", "course_id"):
                row[field.name] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document}/{name}/{field.name}/{i}"))
            elif pa.types.is_string(field.type):
                row[field.name] = f"{field.name} {i} of {document}"
            elif pa.types.is_integer(field.type):
                row[field.name] = i
            elif pa.types.is_floating(field.type):
                row[field.name] = 0.5
            elif pa.types.is_boolean(field.type):
                row[field.name] = False
            else:
                row[field.name] = run_at
        row.update(document_id=document, version=1, course_id=course, generator="bench", generator_version="v1")
        rows.append(row)
    return rows


def generate(settings: Settings, documents: int, batch: int) -> dict[str, float]:
    from spark_jobs.ingest_documents import spark_session

    courses = [str(uuid.uuid4()) for _ in range(max(1, documents // 25))]
    ids = [(courses[n % len(courses)], str(uuid.uuid4())) for n in range(documents)]
    spark = spark_session(settings)
    timings = {}
    try:
        tables.ensure_tables(spark, settings.lake)
        lance = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
        started = time.perf_counter()
        for start in range(0, documents, batch):
            window = list(enumerate(ids[start : start + batch], start))
            parts = [_silver(course, document, n) for n, (course, document) in window]
            batch_ids = [document for _n, (_c, document) in window]
            for name, key in ((tables.SILVER_PAGES, "page_id"), (tables.SILVER_CHUNKS, "chunk_id")):
                frame = spark.createDataFrame(pa.concat_tables([p[name] for p in parts]))
                tables.insert_new(spark, settings.lake, name, frame, key, document_ids=batch_ids)
            docs = spark.createDataFrame(pa.concat_tables([p[tables.SILVER_DOCUMENTS] for p in parts]))
            tables.merge_documents(spark, settings.lake, docs)
            silver_chunks = pa.concat_tables([p[tables.SILVER_CHUNKS] for p in parts])
            vectors.upsert_chunks(lance, vectors.from_silver_chunks(silver_chunks))
            print(f"  silver + lancedb: {min(start + batch, documents)}/{documents} documents", flush=True)
        timings["silver_lancedb_s"] = round(time.perf_counter() - started, 1)
    finally:
        spark.stop()
    started = time.perf_counter()
    run_at = datetime.now(UTC)
    counts = {gold.GOLD_NOTES: 1, gold.GOLD_QUIZZES: 1, gold.GOLD_QUIZ_ITEMS: 5, gold.GOLD_FLASHCARDS: 10}
    for n, (course, document) in enumerate(ids):
        for name, count in counts.items():
            rows = _gold_rows(name, course, document, count, run_at)
            gold.replace_rows(settings, name, rows, document_id=document, version=1, generator_version="v1")
        if (n + 1) % 50 == 0:
            print(f"  gold: {n + 1}/{documents} documents", flush=True)
    timings["gold_s"] = round(time.perf_counter() - started, 1)
    return timings


def footprint(settings: Settings) -> dict[str, dict[str, int]]:
    """Per Delta table: live files/bytes/rows and stored data and log files/bytes."""
    out = {}
    for name in DELTA_TABLES:
        table = open_delta(settings, name)
        live, rows = delta_live(table)
        data, log = split_delta(stored_objects(settings, table.table_uri))
        out[name] = {"live_files": live.files, "live_bytes": live.bytes, "rows": rows, "stored_files": data.files,
                     "stored_bytes": data.bytes, "log_files": log.files, "log_bytes": log.bytes}  # fmt: skip
    return out


def one_document_read_ms(settings: Settings, document: str, repeat: int = 5) -> float:
    """Best of ``repeat`` reads of one document's pages with delta-rs (file skipping by stats)."""
    import pyarrow.compute as pc

    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        dataset = open_delta(settings, tables.SILVER_PAGES).to_pyarrow_dataset()
        dataset.to_table(filter=pc.field("document_id") == document)
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10, help="Documents per silver micro-batch")
    parser.add_argument(
        "--days-later", action="store_true",
        help="Maintain as a run a week later would: VACUUM and LanceDB version pruning with 0 h retention",
    )  # fmt: skip
    args = parser.parse_args()
    model, flags = cpu_model_and_flags()
    print(f"CPU: {model}; flags: {' '.join(f for f in flags if f in ('avx2', 'avx512f', 'sse4_2', 'fma'))}")
    work = Path(tempfile.mkdtemp(prefix="lake-maintenance-bench-"))
    data = Settings(environment="test").model_dump()
    data["lake"].update(root=str(work / "lake"), checkpoint_root=str(work / "checkpoints"))
    data["lancedb"]["uri"] = str(work / "lancedb")
    if args.days_later:
        data["lancedb"]["keep_versions_hours"] = 0.0
    settings = Settings(**data)
    print(f"generating {args.documents} documents in {work} …")
    timings = generate(settings, args.documents, args.batch)
    probe = open_delta(settings, tables.SILVER_PAGES).to_pyarrow_table(columns=["document_id"]).column(0)[0].as_py()
    before, read_before = footprint(settings), one_document_read_ms(settings, probe)
    started = time.perf_counter()
    report = maintain_lake(
        settings, progress=lambda line: print("  " + line), vacuum_retention_hours=0 if args.days_later else None
    )
    seconds = round(time.perf_counter() - started, 1)
    after, read_after = footprint(settings), one_document_read_ms(settings, probe)
    lance = next(s for s in report.steps if s.step == "lancedb")

    print(f"\nmaintenance of {args.documents} documents in {seconds} s (generation: {timings})")
    header = f"{'table':<24}{'live files':>16}{'live bytes':>26}{'rows':>8}{'stored files':>16}{'log files':>12}"
    print(header)
    for name in DELTA_TABLES:
        b, a = before[name], after[name]
        print(f"{name:<24}{b['live_files']:>7} -> {a['live_files']:<6}{b['live_bytes']:>12,} -> "
              f"{a['live_bytes']:<11,}{a['rows']:>8}{b['stored_files']:>7} -> {a['stored_files']:<6}"
              f"{b['log_files']:>4} -> {a['log_files']:<4}")  # fmt: skip
    print(f"{'lancedb/chunks':<24}{lance.files_before:>7} -> {lance.files_after:<6}{lance.bytes_before:>12,} -> "
          f"{lance.bytes_after:<11,}{lance.rows:>8}   ({lance.detail})")  # fmt: skip
    print(f"one document's pages (delta-rs, best of 5): {read_before} ms before (baseline), {read_after} ms after")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    result = {
        "cpu_model": model, "documents": args.documents, "batch": args.batch, "days_later": args.days_later,
        "generation": timings,
        "maintenance_s": seconds, "before": before, "after": after, "lancedb": lance.__dict__,
        "read_one_document_ms": {"before": read_before, "after": read_after}, "steps": report.as_dict()["steps"],
    }  # fmt: skip
    (OUT_DIR / "lake_maintenance.json").write_text(json.dumps(result, indent=2, default=str))
    rows = []
    for name in DELTA_TABLES:
        rows.append((f"{name} before", [("live files", before[name]["live_files"])]))
        rows.append((f"{name} after", [("live files", after[name]["live_files"])]))
    rows += [("lancedb/chunks before", [("live files", lance.files_before)]),
             ("lancedb/chunks after", [("live files", lance.files_after)])]  # fmt: skip
    stacked_bars(OUT_DIR / "lake_maintenance.png", f"Live data files per table, {args.documents} documents",
                 rows, unit="files")  # fmt: skip
    print(f"wrote {OUT_DIR / 'lake_maintenance.json'} and lake_maintenance.png")


if __name__ == "__main__":
    main()
