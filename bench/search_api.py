"""Search through the API, one quiet client: p50/p95 of ``GET /v1/courses/{id}/search`` on a course
of ~13,500 real chunks, beside the same searches in-process and the API's floor in the same run.

The course: the chunks of ``bench/retrieval.py``'s index (four texlive manuals, the platform's
extraction, chunking and int8 embeddings; built by that bench if it is not cached) copied into a
private LanceDB under a course created through the API, then indexed as the ingestion job
indexes (IVF_PQ, FTS, course B-tree, ``refresh_indexes``). The API: one uvicorn worker of
``api.main:app_from_env`` on private PostgreSQL databases and a private Redis prefix; it loads
the ONNX query embedder at start-up (``/readyz`` waits for it).

One client (``httpx``, keep-alive) sends the hand-written questions of ``bench/retrieval/``
one after another (``--requests`` per round, cycling through them, k=10, hybrid), after a
warm-up. Beside it, in the same run: ``GET /healthz`` with the same client (the HTTP floor) and
``lake.search.hybrid_search`` called in this process with the API's query embedder on the same
table, as the API calls it (through a course cache: ``lake.course_cache``) and on LanceDB alone
(the code before the cache, the baseline), plus the in-process time of each stage of both. Every figure is measured for
``--rounds`` alternating rounds and each round is printed. Writes
``.lakehouse/bench/search_api.json`` and ``search_api.png``. Never asserts.

    flock /tmp/lakehouse-heavy.lock env PYTHONPATH=. .venv/bin/python bench/search_api.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.study import cpu  # noqa: E402
from bench.wrk import UVICORN_ARGS, Server, private_stack, seed  # noqa: E402
from core.settings import STATE, Settings  # noqa: E402

OUT = STATE / "bench"


def retrieval_index() -> Path:
    """The cached index of bench/retrieval.py for the current settings (built if missing)."""
    from bench import retrieval

    settings = Settings()
    inputs = retrieval.build_inputs(settings)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    path = STATE / "bench" / "retrieval" / f"index-{key}"
    if not (path / "meta.json").exists():
        print(f"building bench/retrieval.py's index at {path} ...", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        retrieval.build_index(path, settings, inputs)
    return path


def copy_course(source: Path, settings: Settings, course_id: str) -> int:
    """The source index's rows, re-homed in ``course_id``, written and indexed as the job does."""
    import pyarrow as pa

    from lake import vectors

    lance = settings.lancedb.model_copy(update={"uri": str(source)})
    rows = vectors.open_chunks(vectors.connect(lance), lance, create=False).to_arrow()
    rows = rows.set_column(rows.schema.get_field_index("course_id"), "course_id", pa.array([course_id] * len(rows)))
    # The API answers document ids as UUIDs; the retrieval bench names its documents.
    documents = [str(uuid.uuid5(uuid.NAMESPACE_URL, name)) for name in rows.column("document_id").to_pylist()]
    rows = rows.set_column(rows.schema.get_field_index("document_id"), "document_id", pa.array(documents))
    table = vectors.open_chunks(vectors.connect(settings.lancedb), settings.lancedb)
    for begin in range(0, rows.num_rows, 5000):
        vectors.upsert_chunks(table, rows.slice(begin, 5000).cast(vectors.chunks_schema()))
    vectors.ensure_vector_index(table, settings.lancedb)
    vectors.ensure_course_index(table)
    vectors.refresh_indexes(table, settings.lancedb)
    return table.count_rows()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
        "n": len(ordered),
    }


def http_round(http: httpx.Client, course_id: str, queries: list[str], requests: int) -> dict[str, float]:
    times = []
    for i in range(requests):
        started = time.perf_counter()
        answer = http.get(f"/v1/courses/{course_id}/search", params={"q": queries[i % len(queries)], "k": 10})
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return percentiles(times)


def floor_round(http: httpx.Client, requests: int) -> dict[str, float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        http.get("/healthz").raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return percentiles(times)


def in_process_round(settings: Settings, course_id: str, queries: list[str], requests: int) -> dict[str, Any]:
    """hybrid_search in this process (the API's query embedder) as the API runs it (course cache,
    kept table handle) and on LanceDB alone (the code before the cache), then each stage of the
    served path on its own, one after the other (in a search the full-text side overlaps the
    embedding on a worker thread)."""
    from lake import search
    from lake.course_cache import course_cache
    from lake.vectors import connect, open_chunks, quote
    from processing.query_embedding import query_embedder

    embedder = _embedder(settings, query_embedder)
    db = connect(settings.lancedb)
    lance = settings.lancedb
    cache = course_cache(lance, synchronous=True)
    whole: dict[str, list[float]] = {"served": [], "lancedb": []}
    search.hybrid_search(db, course_id, queries[0], 10, embedder, settings=lance, cache=cache)  # loads the course
    for i in range(requests):
        for path, with_cache in (("served", cache), ("lancedb", None)):
            started = time.perf_counter()
            search.hybrid_search(db, course_id, queries[i % len(queries)], 10, embedder, settings=lance,
                                 cache=with_cache)  # fmt: skip
            whole[path].append((time.perf_counter() - started) * 1000)
    table = open_chunks(db, lance, create=False)
    where = f"course_id = {quote(course_id)}"
    stages: dict[str, list[float]] = {}

    def lap(name: str, started: float) -> float:
        now = time.perf_counter()
        stages.setdefault(name, []).append((now - started) * 1000)
        return now

    for i in range(requests):
        query = queries[i % len(queries)]
        started = time.perf_counter()
        course = cache.get(table, course_id)
        assert course is not None
        started = lap("course cache lookup", started)
        vector = embedder.encode([query])[0]
        started = lap("query embedding", started)
        course.nearest(vector, lance.candidates)
        started = lap("vector side (cached course)", started)
        course.best_text(search.query_terms(table, search.normalized_words(query)), lance.candidates)
        started = lap("full-text side (cached course BM25)", started)
        course.verbatim(search.normalized_words(query), lance.phrase_candidates)
        started = lap("verbatim side (cached course)", started)
        search.text_candidates(table, query, where, lance.candidates)
        started = lap("before: full-text side (LanceDB)", started)
        search.vector_candidates(table, vector, where, lance.candidates, lance)
        started = lap("before: vector side (LanceDB)", started)
        search.verbatim_candidates(table, query, where, lance.phrase_candidates)
        lap("before: phrase side (LanceDB)", started)
    return {
        "hybrid_search": percentiles(whole["served"]),
        "hybrid_search, LanceDB alone": percentiles(whole["lancedb"]),
        "stages": {name: percentiles(t) for name, t in stages.items()},
    }


_EMBEDDERS: dict[str, Any] = {}


def _embedder(settings: Settings, factory: Any) -> Any:
    if "query" not in _EMBEDDERS:
        _EMBEDDERS["query"] = factory(settings.embedding)
    return _EMBEDDERS["query"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential searches per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--label", default="latest")
    args = parser.parse_args(argv)
    from bench.retrieval_metrics import load_truths

    print(f"CPU: {cpu()}")
    queries = [t.query for t in load_truths(ROOT / "bench" / "retrieval" / "questions.jsonl")]
    source = retrieval_index()
    rounds: dict[str, list[dict[str, Any]]] = {}
    with (
        private_stack(lance_prefix="bench-search-api-") as stack,
        Server("api.main:app_from_env", stack.env, ready_path="/readyz", uvicorn_args=UVICORN_ARGS) as api,
    ):
        settings = stack.settings
        token, course_id = seed(api.url, title="Search bench")
        started = time.perf_counter()
        rows = copy_course(source, settings, course_id)
        print(f"course {course_id}: {rows} chunks copied and indexed in {time.perf_counter() - started:.1f} s")
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            # The course's first search is answered by LanceDB while the API's course cache reads
            # the course in the background (a few seconds for 13,500 chunks); what is measured is
            # a course searched before, as a course being studied is.
            http_round(http, course_id, queries, 1)
            deadline = time.monotonic() + 120
            while "1 courses cached" not in str(http.get("/readyz").json()) and time.monotonic() < deadline:
                time.sleep(0.2)
            http_round(http, course_id, queries, 20)  # warm-up: index files, connection
            in_process_round(settings, course_id, queries, 20)
            for number in range(1, args.rounds + 1):
                results = {
                    "API search (HTTP, 1 client)": http_round(http, course_id, queries, args.requests),
                    "API /healthz (HTTP floor)": floor_round(http, args.requests),
                }
                local = in_process_round(settings, course_id, queries, args.requests)
                results["hybrid_search in-process"] = local["hybrid_search"]
                results["before: in-process, LanceDB alone"] = local["hybrid_search, LanceDB alone"]
                results.update({f"  stage: {name}": f for name, f in local["stages"].items()})
                print(f"round {number}:")
                for name, figures in results.items():
                    rounds.setdefault(name, []).append(figures)
                    print(f"  {name:<32} p50 {figures['p50_ms']:7.2f} ms  p95 {figures['p95_ms']:7.2f} ms")

    api_p95 = [r["p95_ms"] for r in rounds["API search (HTTP, 1 client)"]]
    print(f"API search p95 per round: {api_p95} ms (target < 20 ms)")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "search_api.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[args.label] = {"cpu": cpu(), "chunks": rows, "requests": args.requests, "rounds": rounds}
    out.write_text(json.dumps(previous, indent=2))
    from bench.pngplot import stacked_bars

    bars = [
        (f"{name} r{i + 1}", [("p50", f["p50_ms"]), ("p95 - p50", f["p95_ms"] - f["p50_ms"])])
        for name, figures in rounds.items()
        for i, f in enumerate(figures)
    ]
    stacked_bars(OUT / "search_api.png", f"search through the API, 1 client, {rows:,} chunks ({cpu()[:50]})", bars,
                 unit="ms")  # fmt: skip
    print(f"wrote {out} and {OUT / 'search_api.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
