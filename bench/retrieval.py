"""Retrieval benchmark: recall@1, recall@5, MRR@10 and latency of full-text alone, vector alone
and the shipped hybrid search, side by side, on the evaluation set of ``bench/retrieval/``.

The index is built with the platform's own code: ``processing.pdf`` extraction,
``processing.chunking.chunk_pages`` with ``ingest.chunk_size/chunk_overlap`` and each PDF's title
and outline (``processing.pdf.outline``: chunks are embedded with their section context, as the
job embeds them), the embedder of ``embedding``, ``lake.vectors`` rows, and the write/index steps
of the ingestion job's LanceDB writer (``open_chunks`` creates the table and its FTS index, one
``upsert_chunks`` per document, then ``ensure_vector_index`` and, where it exists,
``refresh_indexes``). All four documents go into one course, as a student's would. The index is
cached under
``.lakehouse/bench/retrieval/index-<hash>``, keyed by the extractor, chunk settings, embedding
model and precision, the LanceDB settings and the source of the modules that build it, so a re-run
only queries. Queries go through ``lake.search.hybrid_search(..., mode=...)`` with k=10 (the
top 5 of a k=10 search are the k=5 search: fusion sorts, then cuts).

Results are kept per ``--label`` in ``.lakehouse/bench/retrieval.json`` (earlier labels stay) and
plotted side by side in ``.lakehouse/bench/retrieval.png``. Never asserts.

``python bench/retrieval.py [--label NAME] [--extractor pypdf|pdfium] [--chunk-size N]
[--rebuild] [--show-misses]``
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import DOCUMENTS, PACKAGE, VERSION, document_path
from bench.retrieval_metrics import Truth, first_right_rank, load_truths, summarize
from core.settings import PROJECT_ROOT, STATE, IngestSettings, Settings

DATA = Path(__file__).resolve().parent / "retrieval"
HALVES = ("phrases", "questions")
COURSE = "eval-course"
K = 10
EXTRACT_STEP = 100  # pages per extract_pages call (progress granularity)
EMBED_STEP = 256  # chunks per encode call
# The modules whose code decides what the index holds: a change to them rebuilds it.
BUILD_SOURCES = ("processing/pdf.py", "processing/chunking.py", "processing/embedding.py", "lake/vectors.py")


def document_id(name: str) -> str:
    return f"eval-{name}"


def configure(args: argparse.Namespace) -> Settings:
    """Settings() with the command line's overrides; a setting the checkout lacks is an error."""
    base = Settings()
    overrides = base.model_dump()
    if args.extractor is not None:
        if "extractor" not in IngestSettings.model_fields:
            raise SystemExit(
                "--extractor: this checkout has no ingest.extractor setting in core/settings.py "
                "(one extraction backend only); run without --extractor"
            )
        overrides["ingest"]["extractor"] = args.extractor
    if args.chunk_size is not None:
        overrides["ingest"]["chunk_size"] = args.chunk_size
        overrides["ingest"]["chunk_overlap"] = min(base.ingest.chunk_overlap, args.chunk_size // 2)
    return Settings(**overrides)


INDEX_SETTINGS = {"chunks_table", "vector_index_min_rows"}


def extractor_of(settings: Settings) -> str:
    return str(getattr(settings.ingest, "extractor", "pypdf"))


def build_inputs(settings: Settings) -> dict[str, Any]:
    """Everything the index content depends on (its cache key)."""
    from importlib.metadata import version

    from processing.embedding import resolve_precision

    embedding = settings.embedding
    # Only what the writer puts in the table: query-time settings (fusion, candidates, probes)
    # change the results, not the index, and are recorded with each run instead.
    lancedb = settings.lancedb.model_dump(mode="json", include=INDEX_SETTINGS)
    return {
        "corpus": f"{PACKAGE}={VERSION}",
        "documents": DOCUMENTS,
        "extractor": extractor_of(settings),
        "chunk_size": settings.ingest.chunk_size,
        "chunk_overlap": settings.ingest.chunk_overlap,
        "embedding_model": f"{embedding.model_package}=={version(embedding.model_package.replace('_', '-'))}",
        "precision": resolve_precision(embedding.precision),
        "lancedb": lancedb,
        "lancedb_version": version("lancedb"),
        "sources": {
            path: hashlib.sha256((PROJECT_ROOT / path).read_bytes()).hexdigest()[:16] for path in BUILD_SOURCES
        },
    }


def extract(name: str, settings: Settings) -> list:
    from processing.pdf import extract_pages, page_count

    data = document_path(name).read_bytes()
    total = page_count(data)
    options: dict[str, Any] = {}
    if "extractor" in inspect.signature(extract_pages).parameters:
        options["extractor"] = extractor_of(settings)
    elif extractor_of(settings) != "pypdf":
        raise SystemExit("processing.pdf.extract_pages takes no extractor: only pypdf is available")
    pages, started = [], time.perf_counter()
    for start in range(0, total, EXTRACT_STEP):
        pages.extend(extract_pages(data, start, min(start + EXTRACT_STEP, total), **options))
        elapsed = time.perf_counter() - started
        print(f"\r  {name}: {len(pages)}/{total} pages extracted ({len(pages) / elapsed:.0f} pages/s)", end="")
    print(flush=True)
    return pages


def build_index(path: Path, settings: Settings, inputs: dict[str, Any]) -> dict[str, Any]:
    """Extracts, chunks, embeds and writes the four documents into a LanceDB table at ``path``."""
    from lake import vectors
    from processing.chunking import chunk_pages, document_title
    from processing.embedding import get_embedder
    from processing.pdf import outline

    started = time.perf_counter()
    seconds: dict[str, float] = {"extract": 0.0, "chunk": 0.0, "embed": 0.0, "write": 0.0}
    lance = settings.lancedb.model_copy(update={"uri": str(path)})
    db = vectors.connect(lance)
    table = vectors.open_chunks(db, lance)
    embedder = get_embedder(settings.embedding)
    embedder.encode(["warm up"])
    counts: dict[str, dict[str, int]] = {}
    for name in DOCUMENTS:
        lap = time.perf_counter()
        pages = extract(name, settings)
        seconds["extract"] += time.perf_counter() - lap
        lap = time.perf_counter()
        title, entries = outline(document_path(name).read_bytes())  # the section context, as ingestion reads it
        chunks = chunk_pages(
            pages,
            document_id=document_id(name),
            version=1,
            chunk_size=settings.ingest.chunk_size,
            chunk_overlap=settings.ingest.chunk_overlap,
            title=document_title(title, Path(DOCUMENTS[name]).name),
            outline=entries,
        )
        seconds["chunk"] += time.perf_counter() - lap
        lap = time.perf_counter()
        vectors_ = []
        for begin in range(0, len(chunks), EMBED_STEP):
            vectors_.extend(embedder.encode([c.embedding_text for c in chunks[begin : begin + EMBED_STEP]]))
            done, elapsed = min(begin + EMBED_STEP, len(chunks)), time.perf_counter() - lap
            print(f"\r  {name}: {done}/{len(chunks)} chunks embedded ({done / elapsed:.1f} chunks/s)", end="")
        print(flush=True)
        seconds["embed"] += time.perf_counter() - lap
        lap = time.perf_counter()
        rows = vectors.chunk_rows(
            {
                "chunk_id": c.chunk_id,
                "document_id": document_id(name),
                "version": 1,
                "course_id": COURSE,
                "chunk_index": c.chunk_index,
                "page_start": c.page_start,
                "page_end": c.page_end,
                "text": c.text,
                "vector": vectors_[c.chunk_index],
            }
            for c in chunks
        )
        vectors.upsert_chunks(table, rows)  # one write per document, as the job writes per batch
        seconds["write"] += time.perf_counter() - lap
        counts[name] = {"pages": len(pages), "chunks": len(chunks)}
    lap = time.perf_counter()
    vectors.ensure_vector_index(table, lance)
    refresh = getattr(vectors, "refresh_indexes", None)  # the job's step after each write, where it exists
    if refresh is not None:
        refresh(table, lance)
    seconds["index"] = time.perf_counter() - lap
    meta = {
        "inputs": inputs,
        "documents": counts,
        "seconds": seconds,
        "build_s": time.perf_counter() - started,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "precision_used": embedder.precision,
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def index_stats(table: Any) -> dict[str, dict[str, int]]:
    out = {}
    for index in table.list_indices():
        stats: Any = table.index_stats(index.name)
        if stats is not None:
            out[index.name] = {"indexed": int(stats.num_indexed_rows), "unindexed": int(stats.num_unindexed_rows)}
    return out


def evaluate(
    db: Any, settings: Settings, truths: dict[str, list[Truth]], *, cached: bool = True
) -> tuple[dict[str, dict[str, dict]], dict[str, dict[str, list]]]:
    """(figures[half][mode], per-query (rank, top-5 spans, ms)[half][mode]). With ``cached``
    the searches go through a course cache as the API's do (``lake.course_cache``)."""
    from lake.course_cache import course_cache
    from lake.search import SEARCH_MODES
    from lake.search import hybrid_search as search
    from processing.embedding import get_embedder

    embedder = get_embedder(settings.embedding)
    lance = settings.lancedb
    cache = course_cache(lance, synchronous=True) if cached else None

    def hybrid_search(*args: Any, **kwargs: Any) -> Any:
        return search(*args, **kwargs, cache=cache)

    documents = {document_id(name): name for name in DOCUMENTS}
    figures: dict[str, dict[str, dict]] = {half: {} for half in truths}
    details: dict[str, dict[str, list]] = {half: {} for half in truths}
    for mode in SEARCH_MODES:
        hybrid_search(db, COURSE, "warm up the table and the model", K, embedder, settings=settings.lancedb, mode=mode)
        for half, items in truths.items():
            ranks, latencies, rows = [], [], []
            for truth in items:
                started = time.perf_counter()
                hits = hybrid_search(db, COURSE, truth.query, K, embedder, settings=settings.lancedb, mode=mode)
                latencies.append((time.perf_counter() - started) * 1000)
                spans = [(documents.get(h.document_id, h.document_id), h.page_start, h.page_end) for h in hits]
                ranks.append(first_right_rank(truth, spans))
                rows.append({"id": truth.id, "rank": ranks[-1], "top5": spans[:5], "ms": round(latencies[-1], 2)})
            figures[half][mode] = summarize(ranks, latencies)
            details[half][mode] = rows
            print(f"  {mode:<6} {half:<9} done ({figures[half][mode]['p50_ms']:.1f} ms p50)", flush=True)
    return figures, details


METRICS = (("recall@1", ".3f"), ("recall@5", ".3f"), ("mrr@10", ".3f"), ("p50_ms", ".1f"), ("p95_ms", ".1f"))


def print_table(figures: dict[str, dict[str, dict]]) -> None:
    modes = list(next(iter(figures.values())))
    width = 9 * len(modes) + 3
    titles = (f"{half} ({figures[half][modes[0]]['queries']})" for half in figures)
    print(f"{'':<10}" + "".join(f"{title:<{width}}" for title in titles))
    print(f"{'metric':<10}" + "   ".join("".join(f"{m:>9}" for m in modes) for _ in figures))
    for metric, fmt in METRICS:
        cells = ("".join(f"{figures[half][m][metric]:>9{fmt}}" for m in modes) for half in figures)
        print(f"{metric:<10}" + "   ".join(cells))


def print_misses(truths: dict[str, list[Truth]], details: dict[str, dict[str, list]]) -> None:
    for half, items in truths.items():
        by_id = {truth.id: truth for truth in items}
        misses = [row for row in details[half]["hybrid"] if row["rank"] is None or row["rank"] > 5]
        print(f"\nhybrid misses (no right hit in the top 5), {half}: {len(misses)}/{len(items)}")
        for row in misses:
            truth = by_id[row["id"]]
            got = ", ".join(f"{d}:{s}" + (f"-{e}" if e != s else "") for d, s, e in row["top5"])
            rank = f"rank {row['rank']}" if row["rank"] else "not in top 10"
            print(
                f"  {truth.id} [{rank}] {truth.query!r}\n    expected {truth.document}:{list(truth.pages)}  got {got}"
            )


def plot(runs: dict[str, dict], path: Path) -> None:
    """Every label's figures side by side: a row per half, a panel per metric, a group per mode."""
    from bench.retrieval_plot import grouped_panels

    labels = list(runs)
    panels = []
    for half in HALVES:
        row = []
        for metric in ("recall@1", "recall@5", "mrr@10", "p95_ms"):
            groups: dict[str, dict[str, float]] = {}
            for label, run in runs.items():
                for mode, figures in run["results"].get(half, {}).items():
                    groups.setdefault(mode, {})[label] = figures[metric]
            unit = " (ms)" if metric.endswith("_ms") else ""
            row.append((f"{half}: {metric.replace('_ms', '')}{unit}", groups, None if unit else 1.0))
        panels.append(row)
    grouped_panels(path, "Retrieval on 4 real manuals (bench/retrieval.py), runs side by side", panels, labels)


def git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"not a git checkout: {PROJECT_ROOT}"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "lake", "processing"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return proc.stdout.strip() + ("+uncommitted lake/processing changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="latest", help="name of this run in the JSON and the plot")
    parser.add_argument("--extractor", default=None, help="ingest.extractor (pypdf, pdfium) where the setting exists")
    parser.add_argument("--chunk-size", type=int, default=None, help="ingest.chunk_size (overlap kept, at most half)")
    parser.add_argument("--no-course-cache", action="store_true",
                        help="search in LanceDB alone, not through a course cache as the API does")  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="build the index even if a cached one matches")
    parser.add_argument("--show-misses", action="store_true", help="print the queries hybrid misses in its top 5")
    args = parser.parse_args(argv)
    settings = configure(args)
    from bench.study import cpu

    truths = {half: load_truths(DATA / f"{half}.jsonl") for half in HALVES}
    unknown = {t.document for items in truths.values() for t in items} - set(DOCUMENTS)
    if unknown:
        raise SystemExit(f"evaluation rows name unknown documents: {sorted(unknown)}")
    print(f"CPU: {cpu()}")
    print(f"evaluation set: {len(truths['phrases'])} phrases, {len(truths['questions'])} questions")

    inputs = build_inputs(settings)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    path = STATE / "bench" / "retrieval" / f"index-{key}"
    print(f"index: {path} (extractor {inputs['extractor']}, chunks {inputs['chunk_size']}/"
          f"{inputs['chunk_overlap']}, {inputs['embedding_model']} {inputs['precision']})")  # fmt: skip
    if args.rebuild or not (path / "meta.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        print("building the index (extract -> chunk -> embed -> LanceDB) ...", flush=True)
        meta = build_index(path, settings, inputs)
        cached = False
    else:
        meta = json.loads((path / "meta.json").read_text())
        cached = True
    stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in meta["seconds"].items())
    print(f"index {'cached, built' if cached else 'built'} in {meta['build_s']:.1f} s ({stages})")

    from lake import vectors

    lance = settings.lancedb.model_copy(update={"uri": str(path)})
    db = vectors.connect(lance)
    table = vectors.open_chunks(db, lance, create=False)
    stats = index_stats(table)
    print(f"{table.count_rows()} chunks; indexes: {stats}")
    search_settings = settings.model_copy(update={"lancedb": lance})
    print("querying (k=10) ...", flush=True)
    figures, details = evaluate(db, search_settings, truths, cached=not args.no_course_cache)
    print()
    print_table(figures)
    if args.show_misses:
        print_misses(truths, details)

    out = STATE / "bench" / "retrieval.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = previous.get("runs", {})
    runs[args.label] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu": cpu(),
        "index": {"path": str(path), "cached": cached, "rows": table.count_rows(), "indexes": stats, **meta},
        "k": K,
        "search_settings": settings.lancedb.model_dump(mode="json", exclude={"uri", *INDEX_SETTINGS}),
        "results": figures,
        "queries": details,
    }
    out.write_text(json.dumps({"runs": runs}, indent=2))
    plot({label: run for label, run in runs.items()}, out.with_suffix(".png"))
    print(f"\nwrote {out} (labels: {', '.join(runs)}) and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
