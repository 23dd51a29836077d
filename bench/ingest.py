"""Ingestion benchmark: seconds from upload to searchable for a 500-page text PDF.

Measured in one run, on this machine:

1. embedding precisions (fp32 / bf16 autocast / ONNX Runtime int8 per-channel): chunks/s on
   the driver and mean cosine vs fp32 — the pipeline default is the fastest with cosine >= 0.99;
2. the baseline: a plain single-process loop (pypdf, the same splitter, sentence-transformers
   fp32 encode, LanceDB add);
3. the pipeline: the streaming job running (processing-time trigger, warmed up by one small
   document, as a long-running stream is), then the upload (object store + Kafka) of the book,
   timed until ``hybrid_search`` returns the book's page for a phrase known to be on it; per
   stage from the job's own stopwatch. Once per embedding placement (executors, driver).

Never asserts times. ``python bench/ingest.py [--pages 500] [--placements executors,driver]``.
Writes ``.lakehouse/bench/ingest.json`` and an SVG bar chart beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import STATE, EmbeddingSettings, Settings
from processing import samples

STAGES = (
    "bronze",
    "lookup",
    "read",
    "extract",
    "chunk",
    "embed",
    "write_silver_lancedb",
    "write_documents",
    "bronze_wait",
    "report",
)
# Parallel parts of write_silver_lancedb (shown, not added up).
WRITE_PARTS = ("write_pages", "write_chunks", "write_lancedb")


def _texts(book: samples.SampleBook, settings: Settings) -> list[str]:
    from processing.chunking import chunk_pages
    from processing.pdf import extract_pages

    pages = extract_pages(book.pdf, 0, book.pages)
    chunks = chunk_pages(
        pages,
        document_id="bench",
        version=1,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )
    return [c.text for c in chunks]


def bench_precisions(texts: list[str], settings: Settings, *, sample: int) -> list[dict]:
    """chunks/s of each precision on the driver (settings.embedding.threads) and cosine vs fp32."""
    import numpy as np

    from processing.embedding import Embedder

    subset = texts[:sample]
    results, reference = [], None
    for precision in ("fp32", "bf16", "int8"):
        embedder = Embedder(EmbeddingSettings(**{**settings.embedding.model_dump(), "precision": precision}))
        probe = subset if precision != "bf16" else subset[: max(16, sample // 4)]  # emulated on AVX2: slow
        embedder.encode(probe[:8])
        started = time.perf_counter()
        vectors = embedder.encode(probe)
        seconds = time.perf_counter() - started
        if reference is None:
            reference = vectors
        cosine = float(np.mean(np.sum(reference[: len(vectors)] * vectors, axis=1)))
        results.append(
            {"precision": precision, "chunks": len(probe), "chunks_per_s": len(probe) / seconds, "cosine": cosine}
        )
        print(f"  {precision:<5} {len(probe) / seconds:7.1f} chunks/s   mean cosine vs fp32 {cosine:.5f}", flush=True)
    return results


def bench_baseline(book: samples.SampleBook, settings: Settings, root: Path) -> dict:
    """A plain single-process loop: pypdf + splitter + sentence-transformers fp32 + LanceDB add."""
    import lancedb
    import torch
    from pypdf import PdfReader
    from sentence_transformers import SentenceTransformer

    from lake.vectors import chunk_rows
    from processing.chunking import chunk_pages
    from processing.embedding import model_dir
    from processing.pdf import Page

    torch.set_num_threads(settings.embedding.threads)
    model = SentenceTransformer(str(model_dir(settings.embedding)), device="cpu")
    model.encode(["warm up"])
    seconds = {}
    started = time.perf_counter()
    import io

    reader = PdfReader(io.BytesIO(book.pdf))
    pages = [Page(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    seconds["extract"] = time.perf_counter() - started
    lap = time.perf_counter()
    chunks = chunk_pages(
        pages, document_id="baseline", version=1, chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )  # fmt: skip
    seconds["chunk"] = time.perf_counter() - lap
    lap = time.perf_counter()
    vectors = model.encode([c.text for c in chunks], batch_size=32, normalize_embeddings=True)
    seconds["embed"] = time.perf_counter() - lap
    lap = time.perf_counter()
    db = lancedb.connect(str(root / "baseline-lancedb"))
    rows = chunk_rows(
        {
            "chunk_id": c.chunk_id, "document_id": "baseline", "version": 1, "course_id": "bench",
            "chunk_index": c.chunk_index, "page_start": c.page_start, "page_end": c.page_end, "text": c.text,
            "vector": vectors[c.chunk_index],
        }
        for c in chunks
    )  # fmt: skip
    db.create_table("chunks", data=rows, mode="overwrite")
    seconds["write"] = time.perf_counter() - lap
    total = time.perf_counter() - started
    return {"total_s": total, "chunks": len(chunks), "pages": book.pages, "stages": seconds}


def bench_pipeline(book: samples.SampleBook, base: Settings, root: Path, *, placement: str, spark) -> dict:
    """The stream running; upload the book; seconds until a known phrase is searchable."""
    import hashlib
    import io
    from datetime import UTC, datetime

    from core.events import TOPIC_DOCUMENTS_UPLOADED, DocumentUploaded
    from core.keys import raw_object_key
    from lake.search import hybrid_search
    from lake.store import object_store
    from lake.vectors import connect
    from processing.embedding import get_embedder
    from spark_jobs.ingest.status_sinks import RedisKafkaStatusSink
    from spark_jobs.ingest_documents import prepare, start_stream, stop_stream
    from streaming.kafka import json_producer

    run = uuid.uuid4().hex[:8]
    overrides = base.model_dump()
    overrides["kafka"]["topic_prefix"] = f"bench{run}."
    overrides["lake"].update(root=str(root / f"lake-{placement}"), checkpoint_root=str(root / f"ckpt-{placement}"))
    overrides["lancedb"]["uri"] = str(root / f"lancedb-{placement}")
    overrides["object_store"].update(mode="local", local_root=str(root / "objects"))
    overrides["embedding"]["placement"] = placement
    overrides["ingest"]["trigger_seconds"] = 0.5
    settings = Settings(**overrides)
    store = object_store(settings.object_store)
    producer = json_producer(settings.kafka)
    sink = RedisKafkaStatusSink(settings)
    course = f"bench-{run}"

    def upload(data: bytes, name: str) -> DocumentUploaded:
        document_id = str(uuid.uuid4())
        key = raw_object_key(course, document_id, 1)
        store.put_stream(key, io.BytesIO(data))
        event = DocumentUploaded(
            event_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), document_id=document_id, course_id=course,
            version=1, job_id=str(uuid.uuid4()), uploaded_by="bench", object_uri=store.uri(key), filename=name,
            size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
        producer.send(
            settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), key=document_id, value=event.model_dump(mode="json")
        )
        producer.flush()
        return event

    prepare(spark, settings)
    query, ingestor = start_stream(spark, settings, sink, available_now=False)
    embedder = get_embedder(settings.embedding)
    db = connect(settings.lancedb)
    page, phrase = max(book.phrases.items())

    def searchable(document_id: str, text: str, on_page: int) -> bool:
        hits = hybrid_search(db, course, text, 3, embedder, settings=settings.lancedb)
        return bool(hits) and hits[0].document_id == document_id and hits[0].page_start <= on_page <= hits[0].page_end

    def wait_searchable(document_id: str, text: str, on_page: int) -> None:
        # Cheap polling (a row count), then the real search: a query embedding 10x a second
        # would steal the CPU the pipeline is measured on.
        from lake.vectors import open_chunks, quote

        while True:
            try:
                table = open_chunks(db, settings.lancedb, create=False)
                if table.count_rows(f"document_id = {quote(document_id)}") and searchable(document_id, text, on_page):
                    return
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.1)

    def wait_finished(job_id: str) -> None:
        while (job := sink.reporter.get(job_id)) is None or job.status not in ("succeeded", "failed"):
            time.sleep(0.2)

    try:
        warm = upload(samples.short_pdf("Warm-up: the stream, the workers and the model load once."), "warm.pdf")
        wait_searchable(warm.document_id, "warm-up stream workers model", 1)
        wait_finished(warm.job_id)
        progress: list[tuple[float, int]] = []
        started = time.perf_counter()
        event = upload(book.pdf, "book.pdf")
        uploaded = time.perf_counter() - started
        watcher_stop = threading.Event()

        def watch() -> None:
            reporter = sink.reporter
            while not watcher_stop.wait(0.5):
                job = reporter.get(event.job_id)
                if job is not None:
                    progress.append((time.perf_counter() - started, job.pages_done))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        wait_searchable(event.document_id, phrase, page)
        total = time.perf_counter() - started
        wait_finished(event.job_id)  # stop the stream between batches, not inside one
        watcher_stop.set()
        watcher.join()
        while not any(event.document_id in s.indexed_documents for s in ingestor.stats):
            time.sleep(0.1)
        batch = next(s for s in ingestor.stats if event.document_id in s.indexed_documents)
    finally:
        stop_stream(spark, query)
        producer.close()
        sink.close()
    return {
        "placement": placement,
        "precision": settings.embedding.precision,
        "total_s": total,
        "upload_s": uploaded,
        "pages": batch.pages,
        "chunks": batch.chunks,
        "stages": {stage: batch.seconds.get(stage, 0.0) for stage in STAGES},
        "write_parts": {stage: batch.seconds.get(stage, 0.0) for stage in WRITE_PARTS},
        "progress_samples": len(progress),
        "first_progress": next(((round(t, 1), done) for t, done in progress if done), None),
    }


def _svg(result: dict, path: Path) -> None:
    """A small stacked bar chart (SVG, no plotting library needed)."""
    bars = [("baseline", result["baseline"]["stages"])] + [
        (f"pipeline ({p['placement']})", p["stages"]) for p in result["pipelines"]
    ]
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
    stages = sorted({s for _, stages in bars for s in stages}, key=lambda s: (*STAGES, "write").index(s))
    longest = max(sum(stages_.values()) for _, stages_ in bars) or 1.0
    width, scale = 900, 600 / longest
    rows = []
    for row, (name, values) in enumerate(bars):
        y, x = 40 + row * 50, 200.0
        rows.append(f'<text x="10" y="{y + 20}" font-size="13">{name}</text>')
        for stage in stages:
            w = values.get(stage, 0.0) * scale
            colour = colours[stages.index(stage) % len(colours)]
            rows.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="30" fill="{colour}"><title>{stage}</title></rect>'
            )
            x += w
        rows.append(f'<text x="{x + 6:.1f}" y="{y + 20}" font-size="12">{sum(values.values()):.1f} s</text>')
    legend = "".join(
        f'<rect x="{200 + i * 75}" y="{60 + len(bars) * 50}" width="12" height="12" '
        f'fill="{colours[i % len(colours)]}"/><text x="{215 + i * 75}" y="{71 + len(bars) * 50}" '
        f'font-size="11">{s}</text>'
        for i, s in enumerate(stages)
    )
    title = f'<text x="10" y="20" font-size="15">Ingest {result["pages"]} pages: seconds per stage</text>'
    height = 100 + len(bars) * 50
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
    path.write_text(f"{svg}{title}{''.join(rows)}{legend}</svg>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--placements", default="executors,driver")
    parser.add_argument("--precision-sample", type=int, default=192, help="chunks per precision probe")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings()
    out_dir = STATE / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    book = samples.course_book(args.pages)
    print(f"generated a {args.pages}-page PDF ({len(book.pdf) / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    texts = _texts(book, settings)
    chars = sum(len(t) for t in texts)
    ingest = settings.ingest
    print(f"{len(texts)} chunks of ~{chars / len(texts):.0f} chars ({ingest.chunk_size}/{ingest.chunk_overlap})")

    print(f"embedding precisions (driver, {settings.embedding.threads} threads):")
    precisions = bench_precisions(texts, settings, sample=args.precision_sample)
    eligible = [p for p in precisions if p["cosine"] >= 0.99]
    chosen = max(eligible, key=lambda p: p["chunks_per_s"])["precision"]
    from processing.embedding import resolve_precision

    print(
        f"  -> fastest with mean cosine >= 0.99: {chosen} (setting: {settings.embedding.precision} -> "
        f"{resolve_precision(settings.embedding.precision)} on this CPU)"
    )

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        baseline = None
        if not args.skip_baseline:
            print("baseline (single process, fp32) ...", flush=True)
            baseline = bench_baseline(book, settings, root)
            print(f"  {baseline['total_s']:.1f} s, {args.pages / baseline['total_s']:.1f} pages/s")

        from spark_jobs.ingest_documents import spark_session

        spark = spark_session(settings)
        tuned = Settings(
            **{**settings.model_dump(), "embedding": {**settings.embedding.model_dump(), "precision": chosen}}
        )
        pipelines = []
        for placement in [p.strip() for p in args.placements.split(",") if p.strip()]:
            print(f"pipeline, embedding on {placement} ...", flush=True)
            pipelines.append(bench_pipeline(book, tuned, root, placement=placement, spark=spark))
            print(f"  {pipelines[-1]['total_s']:.1f} s upload -> searchable")
        spark.stop()

    print()
    header = f"{'stage':<16}" + "".join(f"{'pipeline/' + p['placement']:>20}" for p in pipelines)
    header += f"{'baseline':>14}" if baseline else ""
    print(header)
    base_map = {"extract": "extract", "chunk": "chunk", "embed": "embed", "write_silver_lancedb": "write"}
    for stage in STAGES:
        line = f"{stage:<16}" + "".join(f"{p['stages'][stage]:>20.2f}" for p in pipelines)
        if baseline:
            value = baseline["stages"].get(base_map.get(stage, ""), None)
            line += f"{value:>14.2f}" if value is not None else f"{'-':>14}"
        print(line)
    line = f"{'TOTAL (upload->searchable)':<16}"
    print(
        line
        + "".join(f"{p['total_s']:>10.2f}" for p in pipelines)
        + (f"{baseline['total_s']:>14.2f}" if baseline else "")
    )
    print(f"{'pages/s':<16}" + "".join(f"{args.pages / p['total_s']:>20.1f}" for p in pipelines)
          + (f"{args.pages / baseline['total_s']:>14.1f}" if baseline else ""))  # fmt: skip
    print(
        f"{'chunks':<16}"
        + "".join(f"{p['chunks']:>20}" for p in pipelines)
        + (f"{baseline['chunks']:>14}" if baseline else "")
    )
    for stage in WRITE_PARTS:
        print(f"  ({stage})".ljust(16) + "".join(f"{p['write_parts'][stage]:>20.2f}" for p in pipelines))
    for p in pipelines:
        print(
            f"progress ({p['placement']}): {p['progress_samples']} samples, first pages_done>0 at {p['first_progress']}"
        )

    result = {
        "pages": args.pages,
        "chunks": len(texts),
        "precisions": precisions,
        "chosen_precision": chosen,
        "baseline": baseline,
        "pipelines": pipelines,
        "cpu_count": os.cpu_count(),
    }
    (out_dir / "ingest.json").write_text(json.dumps(result, indent=2))
    if baseline:
        _svg(result, out_dir / "ingest.svg")
    print(f"\nwrote {out_dir / 'ingest.json'}" + (f" and {out_dir / 'ingest.svg'}" if baseline else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
