"""Ingestion benchmark: seconds from upload to searchable, on the generated book and a real PDF.

Measured in one run, on this machine (CPU model and flags printed):

1. embedding precisions (fp32 / bf16 autocast / ONNX Runtime int8 per-channel): chunks/s on
   the driver and mean cosine vs fp32, beside what ``embedding.precision=auto``'s calibration
   (``processing/calibration.py``, cached per CPU model) chose and measured;
2. the floors of each document: the extraction floor (``ingest.extractor``'s wall time with one
   process per core, each on its share of the pages; pypdf's beside it) and the embedding floor
   (the calibrated precision encoding all the document's chunks in one process, every core's
   thread). The pipeline's target is at most 1.3x their sum;
3. the baseline: a plain single-process loop (pypdf, the same splitter, sentence-transformers
   fp32 encode, LanceDB add), on the generated book by default;
4. the pipeline: the streaming job running (processing-time trigger, warmed up by one small
   document, as a long-running stream is), then the upload (object store + Kafka) of the
   document, timed until a phrase of a late page is found on its page by ``hybrid_search`` and
   until the job has finished (all chunks indexed); per stage from the job's own stopwatch
   (summed over the micro-batches that worked on it). Once per embedding placement.

Never asserts times. ``python bench/ingest.py [--pages 500] [--pdf memoir|PATH|none] [--skip-book]
[--placements executors,driver] [--baseline book|all|none]``. ``--pdf`` names a document of
``bench/corpus.py`` (default memoir: 615 pages of dense typeset text) or a path; it runs beside
the book.
Writes ``.lakehouse/bench/ingest.json`` and ``ingest.png``.
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
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Document:
    name: str
    pdf: bytes
    pages: int
    page: int  # a late page, and a phrase on it that search must find there
    phrase: str
    top: int  # the phrase's page must be within the first `top` hits


def book_document(pages: int) -> Document:
    book = samples.course_book(pages)
    page, phrase = max(book.phrases.items())
    return Document(f"book ({pages} p.)", book.pdf, book.pages, page, phrase, 1)


def real_document(name_or_path: str, settings: Settings) -> Document:
    """A real PDF; the phrase is 8 words from a page 90% of the way in (chosen from its text)."""
    from bench.corpus import DOCUMENTS, document_path
    from processing.pdf import extract_pages, page_count

    path = document_path(name_or_path) if name_or_path in DOCUMENTS else Path(name_or_path)
    data = path.read_bytes()
    pages = page_count(data)
    extracted = extract_pages(data, 0, pages, extractor=settings.ingest.extractor)
    for page in [*extracted[int(pages * 0.9) :], *extracted[::-1]]:
        words = [w for w in page.text.split() if w.isalpha() and len(w) > 2]
        if len(words) >= 40:
            # Real typeset text: hybrid search's top hit is not always the page (issue 10), so the
            # page must be among the first 5.
            name = name_or_path if name_or_path in DOCUMENTS else path.stem
            return Document(name, data, pages, page.number, " ".join(words[12:20]), 5)
    raise ValueError(f"{path}: no page with 40 words of text")


def _texts(document: Document, settings: Settings) -> list[str]:
    from processing.chunking import chunk_pages
    from processing.pdf import extract_pages

    pages = extract_pages(document.pdf, 0, document.pages, extractor=settings.ingest.extractor)
    chunks = chunk_pages(
        pages,
        document_id="bench",
        version=1,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
    )
    return [c.text for c in chunks]


def floors(document: Document, texts: list[str], settings: Settings, precision: str) -> dict:
    """What one machine needs for just extraction and embedding, every core busy."""
    from bench.embedding import embedding_floor
    from bench.extract import extraction_floor

    extraction = {
        backend: extraction_floor(document.pdf, document.pages, backend=backend) for backend in ("pdfium", "pypdf")
    }
    embedding = embedding_floor(texts, settings, precision=precision)
    chosen = extraction[settings.ingest.extractor]
    return {"extraction": extraction, "extractor": settings.ingest.extractor, "embedding": embedding,
            "sum_s": chosen["seconds"] + embedding["seconds"]}  # fmt: skip


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


def bench_baseline(document: Document, settings: Settings, root: Path) -> dict:
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

    reader = PdfReader(io.BytesIO(document.pdf))
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
    return {"total_s": total, "chunks": len(chunks), "pages": document.pages, "stages": seconds}


def bench_pipeline(document: Document, base: Settings, root: Path, *, placement: str, spark) -> dict:
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
    slot = f"{placement}-{run}"
    overrides = base.model_dump()
    overrides["kafka"]["topic_prefix"] = f"bench{run}."
    overrides["lake"].update(root=str(root / f"lake-{slot}"), checkpoint_root=str(root / f"ckpt-{slot}"))
    overrides["lancedb"]["uri"] = str(root / f"lancedb-{slot}")
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

    def searchable(document_id: str, text: str, on_page: int, top: int) -> bool:
        hits = hybrid_search(db, course, text, max(3, top), embedder, settings=settings.lancedb)[:top]
        return any(h.document_id == document_id and h.page_start <= on_page <= h.page_end for h in hits)

    def wait_searchable(document_id: str, text: str, on_page: int, top: int = 1) -> None:
        # Cheap polling (a row count), then the real search: a query embedding 10x a second
        # would steal the CPU the pipeline is measured on.
        from lake.vectors import open_chunks, quote

        while True:
            try:
                table = open_chunks(db, settings.lancedb, create=False)
                if table.count_rows(f"document_id = {quote(document_id)}") and searchable(
                    document_id, text, on_page, top
                ):
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
        batches_before = len(ingestor.stats)
        started = time.perf_counter()
        event = upload(document.pdf, f"{document.name}.pdf")
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
        wait_searchable(event.document_id, document.phrase, document.page, document.top)
        total = time.perf_counter() - started
        wait_finished(event.job_id)  # stop the stream between batches, not inside one
        indexed = time.perf_counter() - started
        watcher_stop.set()
        watcher.join()
        while not any(event.document_id in s.indexed_documents for s in ingestor.stats):
            time.sleep(0.1)
        # Every micro-batch since the upload worked on this document only (it may take several).
        batches = ingestor.stats[batches_before:]
        seconds = {k: sum(b.seconds.get(k, 0.0) for b in batches) for k in {*STAGES, *WRITE_PARTS}}
    finally:
        stop_stream(spark, query)
        producer.close()
        sink.close()
    return {
        "placement": placement,
        "precision": embedder.precision,
        "extractor": settings.ingest.extractor,
        "total_s": total,
        "indexed_s": indexed,
        "upload_s": uploaded,
        "batches": len(batches),
        "pages": sum(b.pages for b in batches),
        "chunks": sum(b.chunks for b in batches),
        "stages": {stage: seconds[stage] for stage in STAGES},
        "write_parts": {stage: seconds[stage] for stage in WRITE_PARTS},
        "progress_samples": len(progress),
        "first_progress": next(((round(t, 1), done) for t, done in progress if done), None),
    }


def _plot(result: dict, path: Path) -> None:
    """Stacked seconds per stage of each pipeline run and baseline, beside the floors."""
    from bench.pngplot import stacked_bars

    bars: list[tuple[str, list[tuple[str, float]]]] = []
    for doc in result["documents"]:
        short = doc["name"][:16]
        if doc["baseline"]:
            bars.append((f"{short} baseline", list(doc["baseline"]["stages"].items())))
        for run in doc["pipelines"]:
            bars.append((f"{short} pipeline/{run['placement']}", list(run["stages"].items())))
        f = doc["floors"]
        floor = [("extract", f["extraction"][f["extractor"]]["seconds"]), ("embed", f["embedding"]["seconds"])]
        bars.append((f"{short} floors", floor))
    stacked_bars(path, f"Ingestion, upload -> indexed, seconds per stage ({result['cpu'][:60]})", bars, unit="s")


def _print_table(doc: dict) -> None:
    pipelines, baseline, f = doc["pipelines"], doc["baseline"], doc["floors"]
    print(f"\n== {doc['name']}: {doc['pages']} pages, {doc['chunks']} chunks")
    header = f"{'stage':<22}" + "".join(f"{'pipeline/' + p['placement']:>20}" for p in pipelines)
    print(header + (f"{'baseline':>14}" if baseline else ""))
    base_map = {"extract": "extract", "chunk": "chunk", "embed": "embed", "write_silver_lancedb": "write"}
    for stage in STAGES:
        line = f"{stage:<22}" + "".join(f"{p['stages'][stage]:>20.2f}" for p in pipelines)
        if baseline:
            value = baseline["stages"].get(base_map.get(stage, ""))
            line += f"{value:>14.2f}" if value is not None else f"{'-':>14}"
        print(line)
    for stage in WRITE_PARTS:
        print(f"  ({stage})".ljust(22) + "".join(f"{p['write_parts'][stage]:>20.2f}" for p in pipelines))
    rows = [("upload -> searchable", "total_s"), ("upload -> indexed", "indexed_s")]
    for label, key in rows:
        print(f"{label:<22}" + "".join(f"{p[key]:>20.2f}" for p in pipelines)
              + (f"{baseline['total_s']:>14.2f}" if baseline else ""))  # fmt: skip
    print(f"{'pages/s (indexed)':<22}" + "".join(f"{doc['pages'] / p['indexed_s']:>20.1f}" for p in pipelines)
          + (f"{doc['pages'] / baseline['total_s']:>14.1f}" if baseline else ""))  # fmt: skip
    print(f"{'micro-batches':<22}" + "".join(f"{p['batches']:>20}" for p in pipelines))
    extraction, embedding = f["extraction"], f["embedding"]
    for backend, floor in extraction.items():
        mark = " (ingest.extractor)" if backend == f["extractor"] else ""
        print(f"extraction floor {backend:<6} {floor['seconds']:6.2f} s = {floor['pages_per_s']:7.0f} pages/s, "
              f"{floor['processes']} processes{mark}")  # fmt: skip
    print(f"embedding floor  {embedding['precision']:<6} {embedding['seconds']:6.2f} s = "
          f"{embedding['chunks_per_s']:7.1f} chunks/s, {embedding['threads']} threads")  # fmt: skip
    for p in pipelines:
        print(f"pipeline/{p['placement']} ({p['extractor']}, {p['precision']}): indexed in {p['indexed_s']:.2f} s = "
              f"{p['floor_ratio']:.2f}x the floors' {f['sum_s']:.2f} s (target <= 1.3)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=500, help="pages of the generated book")
    parser.add_argument(
        "--pdf", default="memoir", help="also a real PDF: a bench/corpus.py name or a path; 'none' for the book only"
    )
    parser.add_argument("--skip-book", action="store_true", help="only the real PDF")
    parser.add_argument("--placements", default="executors,driver")
    parser.add_argument("--baseline", choices=("book", "all", "none"), default="book")
    parser.add_argument("--precision-sample", type=int, default=192, help="chunks per precision probe")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.extract import cpu_line
    from processing.calibration import calibrate
    from processing.embedding import Embedder

    settings = Settings()
    out_dir = STATE / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    cpu = cpu_line()
    print(cpu)

    documents = [] if args.skip_book else [book_document(args.pages)]
    if args.pdf and args.pdf != "none":
        documents.append(real_document(args.pdf, settings))
    texts = {d.name: _texts(d, settings) for d in documents}
    for d in documents:
        chars = sum(map(len, texts[d.name]))
        print(f"{d.name}: {d.pages} pages, {len(texts[d.name])} chunks of ~{chars / len(texts[d.name]):.0f} chars "
              f"({settings.ingest.extractor}); phrase on page {d.page}: {d.phrase!r}")  # fmt: skip

    calibration = calibrate(settings.embedding, Embedder)
    source = "cached" if calibration.from_cache else "measured now"
    print(f"auto precision (calibration {source}, {calibration.measured_at}): {calibration.chosen}; "
          f"chunks/s {calibration.speeds}, cosine vs fp32 {calibration.cosines}")  # fmt: skip
    probe = texts[documents[-1].name]
    print(f"embedding precisions on {documents[-1].name}'s chunks (driver, {settings.embedding.threads} threads):")
    precisions = bench_precisions(probe, settings, sample=args.precision_sample)
    eligible = [p for p in precisions if p["cosine"] >= 0.99]
    fastest = max(eligible, key=lambda p: p["chunks_per_s"])["precision"]
    print(f"  -> fastest with mean cosine >= 0.99 here: {fastest}; calibration chose {calibration.chosen}")

    results = []
    for d in documents:
        print(f"floors of {d.name} ...", flush=True)
        results.append({"name": d.name, "pages": d.pages, "chunks": len(texts[d.name]),
                        "floors": floors(d, texts[d.name], settings, calibration.chosen)})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        for d, result in zip(documents, results, strict=True):
            result["baseline"] = None
            if args.baseline == "all" or (args.baseline == "book" and d.name.startswith("book (")):
                print(f"baseline of {d.name} (single process, pypdf, fp32) ...", flush=True)
                result["baseline"] = bench_baseline(d, settings, root)

        from spark_jobs.ingest_documents import spark_session

        spark = spark_session(settings)
        for d, result in zip(documents, results, strict=True):
            result["pipelines"] = []
            for placement in [p.strip() for p in args.placements.split(",") if p.strip()]:
                print(f"pipeline on {d.name}, embedding on {placement} ...", flush=True)
                run = bench_pipeline(d, settings, root, placement=placement, spark=spark)
                run["floor_ratio"] = run["indexed_s"] / result["floors"]["sum_s"]
                result["pipelines"].append(run)
                print(f"  {run['total_s']:.1f} s upload -> searchable, {run['indexed_s']:.1f} s -> indexed")
        spark.stop()

    for result in results:
        _print_table(result)
    summary = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "extractor": settings.ingest.extractor,
        "calibration": {**asdict(calibration)},
        "precisions": precisions,
        "documents": results,
    }
    (out_dir / "ingest.json").write_text(json.dumps(summary, indent=2))
    _plot(summary, out_dir / "ingest.png")
    print(f"\nwrote {out_dir / 'ingest.json'} and {out_dir / 'ingest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
