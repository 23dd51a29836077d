"""Cross-validated quality of hybrid search's fusion settings on ``bench/retrieval``'s questions.

The shipped fusion settings (``lancedb.text_weight``, ``page_weight``, ``page_pool``, ``rrf_k``)
were chosen on the same 63 questions ``bench/retrieval.py`` scores them on, so its figure is
optimistic. This bench measures what "choose the settings from a small grid" is worth on
questions the choice did not see: k-fold cross-validation (5 folds stratified by document,
repeated with several seeds). On each training part the grid point with the best recall@5 (then
MRR@10, then recall@1) among those keeping phrase recall@1 >= 0.95 (all 120 phrases: they are
not folded) is chosen and scored on the held-out fold; each repeat pools its five held-out folds
into one figure over the 63 questions. The shipped point and the single modes, which nothing is
tuned for here, are scored on the same folds.

Candidate lists are fetched once per query with ``lake.search``'s own side functions from
``bench/retrieval.py``'s cached index (vector and BM25 top ``lancedb.candidates``, the verbatim
phrase matches) and kept under ``.lakehouse/bench/retrieval_cv/``; every grid point is fused
offline with ``lake.search.rrf_entries`` and ``best_pages``, as ``hybrid_search`` fuses (the
shipped point reproduces ``bench/retrieval.py``'s figures: the run prints both).

Families (each is a grid; the ideas add one knob to the current grid):
- ``current``: text_weight x page_weight x rrf_k x page_pool.
- ``rewrite``: the BM25 query without question words ("how do I", "can I", "what does"...).
- ``page_vectors``: an extra RRF list of pages ranked by the cosine of the mean of their chunk
  vectors, each page standing for its chunk nearest the query; weight 0.5 / 1.
- ``prf``: pseudo-relevance feedback: the vector list re-queried (exact scan) with
  ``q + b * mean(vectors of hybrid's top-3 chunks)``, b 0.5 / 1.
- ``context``: the vector list from chunk vectors embedded with the document title and section
  heading path (``bench/retrieval_context.py``), replacing or added to the shipped list;
  ``context_headings``: the heading path alone (no title), replacing it.
- ``exact``: the vector list by an exact scan of the stored vectors (the reference the ``prf``
  and ``context`` lists are exact scans against; the shipped course of 13,528 chunks uses IVF_PQ).

``python bench/retrieval_cv.py [--folds 5] [--seeds 10] [--families current,rewrite,...]
[--refetch]``; writes ``.lakehouse/bench/retrieval_cv.json`` and ``.png``. Never asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.retrieval_metrics import (
    METRICS,
    Truth,
    choose,
    cross_validate,
    figures,
    first_right_rank,
    load_truths,
    paired,
    recall_at,
    spread,
    stratified_folds,
)

K = 10
PHRASE_R1_MIN = 0.95
QUESTION_WORDS = frozenset(
    "how what which where when why who whom whose do does did can could should would will shall "
    "i me my myself you your we our is are was were be there way it its".split()
)


# --- pure parts (unit-tested) ---------------------------------------------------------------


def strip_question_words(query: str) -> str:
    """The query's words without question words and pronouns (the whole query if none is left)."""
    from lake.search import normalized_words

    words = normalized_words(query).split()
    kept = [word for word in words if word not in QUESTION_WORDS]
    return " ".join(kept or words)


# --- the grid and the fusion -----------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    text_weight: float
    page_weight: float
    rrf_k: int
    page_pool: int
    idea: str = "none"
    strength: float = 0.0

    def label(self) -> str:
        idea = "" if self.idea == "none" else f" {self.idea}={self.strength:g}"
        return f"tw{self.text_weight:g} pw{self.page_weight:g} k{self.rrf_k} pool{self.page_pool}{idea}"


GRID = {
    "text_weight": (0.4, 0.5, 0.6, 0.75, 1.0),
    "page_weight": (0.0, 0.1, 0.15, 0.25),
    "rrf_k": (10, 30, 60),
    "page_pool": (20, 40),
}
IDEAS: dict[str, tuple[float, ...]] = {
    "current": (0.0,),
    "rewrite": (1.0,),
    "page_vectors": (0.5, 1.0),
    "prf": (0.5, 1.0),
    "exact": (0.0,),
    "context": (0.0,),  # the context list replaces the shipped vector list
    "context_extra": (0.5, 1.0),  # the context list added beside it, with this weight
    "context_headings": (0.0,),  # vectors of the heading path and text, no title, replacing it
}


def grid(idea: str) -> list[Point]:
    return [
        Point(tw, pw, k, pool, "none" if idea == "current" else idea, s)
        for tw, pw, k, pool in itertools.product(*GRID.values())
        for s in IDEAS[idea]
    ]


class Corpus:
    """The course's chunks (rows keyed by chunk id, unit vectors in one matrix), each query's
    fetched lists, and the idea lists computed from them (memoised)."""

    def __init__(self, data: dict[str, Any], contexts: dict[str, Any] | None = None) -> None:
        import numpy as np

        self.rows: dict[str, dict[str, Any]] = data["rows"]
        self.ids: list[str] = data["ids"]
        self.vectors = data["vectors"]
        self.queries: dict[str, dict[str, Any]] = data["queries"]
        self.contexts = contexts or {}  # "full" (title and headings), "headings": vector matrices
        self.position = {chunk: i for i, chunk in enumerate(self.ids)}
        pages: dict[tuple[str, int], list[int]] = {}
        for i, chunk in enumerate(self.ids):
            row = self.rows[chunk]
            for page in range(int(row["page_start"]), int(row["page_end"]) + 1):
                pages.setdefault((row["document_id"], page), []).append(i)
        self.page_keys = list(pages)
        self.page_members = [pages[key] for key in self.page_keys]
        mean = np.stack([self.vectors[members].mean(axis=0) for members in self.page_members])
        self.page_vectors = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        self.limit = data["candidates"]
        self._memo: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def _rows(self, chunk_ids: Sequence[str]) -> list[dict[str, Any]]:
        return [self.rows[c] for c in chunk_ids]

    def exact(self, vector: Any, matrix: Any = None) -> list[dict[str, Any]]:
        import numpy as np

        scores = (self.vectors if matrix is None else matrix) @ vector
        top = np.argsort(-scores, kind="stable")[: self.limit]
        return self._rows([self.ids[i] for i in top])

    def page_list(self, query_id: str) -> list[dict[str, Any]]:
        """Pages by the cosine of their mean chunk vector; each page stands for its chunk nearest
        the query (a chunk heads at most one page)."""
        import numpy as np

        vector = self.queries[query_id]["vector"]
        order = np.argsort(-(self.page_vectors @ vector), kind="stable")
        out, seen = [], set()
        for p in order[: self.limit]:
            members = self.page_members[p]
            best = members[int(np.argmax(self.vectors[members] @ vector))]
            if best not in seen:
                seen.add(best)
                out.append(self.rows[self.ids[best]])
        return out

    def memo(self, key: tuple[Any, ...], make: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


def fuse(corpus: Corpus, query_id: str, point: Point, settings: Any, mode: str = "hybrid") -> list[dict[str, Any]]:
    """The top ``K`` fused entries (``{"row": ..., "score": ...}``) as ``hybrid_search(mode=...)``
    would return them with ``point``."""
    import numpy as np

    from lake.search import best_pages, rrf_entries

    q = corpus.queries[query_id]
    vector_rows = corpus._rows(q["vector_ids"])
    text_rows = corpus._rows(q["rewrite_ids" if point.idea == "rewrite" else "text_ids"])
    if point.idea == "exact":
        vector_rows = corpus.memo(("exact", query_id), lambda: corpus.exact(q["vector"]))
    elif point.idea in ("context", "context_headings"):
        kind = "full" if point.idea == "context" else "headings"
        vector_rows = corpus.memo((kind, query_id), lambda: corpus.exact(q["vector"], corpus.contexts[kind]))
    elif point.idea == "prf":
        first = fuse(corpus, query_id, replace(point, idea="none"), settings)[:3]
        mean = corpus.vectors[[corpus.position[e["row"]["chunk_id"]] for e in first]].mean(axis=0)
        moved = q["vector"] + point.strength * mean
        vector_rows = corpus.exact(moved / np.linalg.norm(moved))
    lists: list[tuple[str, list[dict[str, Any]], float]] = []
    if mode != "text":
        lists.append(("vector_rank", vector_rows, settings.vector_weight))
    if mode != "vector":
        lists.append(("text_rank", text_rows, point.text_weight))
        if q["phrase_ids"]:
            lists.append(("phrase_rank", corpus._rows(q["phrase_ids"]), settings.phrase_weight))
    if mode == "hybrid" and point.idea == "page_vectors":
        lists.append(
            ("page_rank", corpus.memo(("pages", query_id), lambda: corpus.page_list(query_id)), point.strength)
        )
    if mode == "hybrid" and point.idea == "context_extra":
        extra = corpus.memo(("full", query_id), lambda: corpus.exact(q["vector"], corpus.contexts["full"]))
        lists.append(("context_rank", extra, point.strength))
    entries = rrf_entries(lists, rrf_k=point.rrf_k)
    pool = entries[: max(K, point.page_pool)]
    return best_pages(pool, K, page_weight=point.page_weight if mode == "hybrid" else 0.0, one_per_page=True)


def rank_of(truth: Truth, entries: list[dict[str, Any]], names: dict[str, str]) -> int | None:
    spans = [(names[e["row"]["document_id"]], int(e["row"]["page_start"]), int(e["row"]["page_end"])) for e in entries]
    return first_right_rank(truth, spans)


# --- fetching the lists once, scoring every grid point ---------------------------------------


def fetch(settings: Any, index: Path, truths: dict[str, list[Truth]]) -> dict[str, Any]:
    """The course's rows and vectors and, per query, its vector, the shipped sides' chunk ids
    (vector, BM25, verbatim phrase matches) and the BM25 ids of the rewritten query."""
    import numpy as np

    from bench.retrieval import COURSE
    from lake import search
    from lake.vectors import connect, open_chunks, quote
    from processing.embedding import get_embedder

    lance = settings.lancedb.model_copy(update={"uri": str(index)})
    table = open_chunks(connect(lance), lance, create=False)
    where = f"course_id = {quote(COURSE)}"
    columns = ["chunk_id", "document_id", "version", "page_start", "page_end", "vector"]
    arrow = table.to_arrow().select(columns)
    ids = arrow.column("chunk_id").to_pylist()
    vectors = np.asarray(arrow.column("vector").to_pylist(), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = {r["chunk_id"]: r for r in arrow.select(columns[:-1]).to_pylist()}
    embedder = get_embedder(settings.embedding)
    n = lance.candidates
    queries = {}
    for truth in (t for items in truths.values() for t in items):
        vector = embedder.encode([truth.query])[0]
        queries[truth.id] = {
            "vector": vector,
            "vector_ids": [r["chunk_id"] for r in search.vector_candidates(table, vector, where, n, lance)],
            "text_ids": [r["chunk_id"] for r in search.text_candidates(table, truth.query, where, n)],
            "phrase_ids": [
                r["chunk_id"] for r in search.verbatim_candidates(table, truth.query, where, lance.phrase_candidates)
            ],
            "rewrite_ids": [
                r["chunk_id"] for r in search.text_candidates(table, strip_question_words(truth.query), where, n)
            ],
        }
    return {"rows": rows, "ids": ids, "vectors": vectors, "queries": queries, "candidates": n}


def score_family(
    corpus: Corpus, idea: str, truths: dict[str, list[Truth]], settings: Any, names: dict[str, str]
) -> tuple[list[Point], list[list[int | None]], list[float]]:
    """Every grid point of ``idea``: (points, question ranks per point, phrase recall@1 per point)."""
    points = grid(idea)
    question_ranks, phrase_r1 = [], []
    for point in points:
        question_ranks.append([rank_of(t, fuse(corpus, t.id, point, settings), names) for t in truths["questions"]])
        phrases = [rank_of(t, fuse(corpus, t.id, point, settings), names) for t in truths["phrases"]]
        phrase_r1.append(recall_at(phrases, 1))
    return points, question_ranks, phrase_r1


def shipped_point(s: Any) -> Point:
    """The shipped fusion settings (``LanceDBSettings``) as a grid point."""
    return Point(s.text_weight, s.page_weight if s.one_hit_per_page else 0.0, s.rrf_k, s.page_pool)


def run_family(
    corpus: Corpus, idea: str, truths: dict[str, list[Truth]], settings: Any, names: dict[str, str], fold_sets: Any
) -> dict[str, Any]:
    points, ranks, phrase_r1 = score_family(corpus, idea, truths, settings, names)
    feasible = [r1 >= PHRASE_R1_MIN for r1 in phrase_r1]
    cv = cross_validate(ranks, feasible, fold_sets)
    everything = list(range(len(truths["questions"])))
    in_sample = choose(ranks, everything, feasible)
    fixed = replace(shipped_point(settings), idea="none" if idea == "current" else idea, strength=IDEAS[idea][-1])
    fixed_ranks = [rank_of(t, fuse(corpus, t.id, fixed, settings), names) for t in truths["questions"]]
    fixed_phrases = [rank_of(t, fuse(corpus, t.id, fixed, settings), names) for t in truths["phrases"]]
    return {
        "grid_points": len(points),
        "feasible_points": sum(feasible),
        "cv": spread(cv["repeats"]),
        "cv_repeats": cv["repeats"],
        "cv_folds": spread(cv["folds"]),
        "chosen": Counter(points[i].label() for i in cv["chosen"]).most_common(5),
        "in_sample_best": {"point": points[in_sample].label(), **figures(ranks[in_sample])},
        "fixed": {
            "point": fixed.label(),
            **figures(fixed_ranks),
            "phrases_recall@1": recall_at(fixed_phrases, 1),
            "ranks": fixed_ranks,
        },
    }


def fixed_on_folds(ranks: list[int | None], fold_sets: Any) -> dict[str, Any]:
    """An untuned point's figures on the same folds: per fold, and pooled (= the full set)."""
    per_fold = [figures([ranks[i] for i in fold]) for folds in fold_sets for fold in folds]
    return {"folds": spread(per_fold), "first_repeat": per_fold[: len(fold_sets[0])], "pooled": figures(ranks)}


def cache_key(index: Path, truths: dict[str, list[Truth]], settings: Any) -> str:
    spec = {
        "index": index.name,
        "queries": [asdict(t) for items in truths.values() for t in items],
        "question_words": sorted(QUESTION_WORDS),
        "search": settings.lancedb.model_dump(mode="json", include={"candidates", "phrase_candidates", "nprobes",
                                                                    "refine_factor", "flat_scan_max_rows"}),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10, help="repeats of the k-fold split (seeds 0..N-1)")
    parser.add_argument("--families", default="current,rewrite,page_vectors,prf,exact")
    parser.add_argument("--refetch", action="store_true", help="fetch the candidate lists again")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = set(families) - set(IDEAS)
    if unknown:
        raise SystemExit(f"unknown families {sorted(unknown)}; known: {', '.join(IDEAS)}")

    from bench.retrieval import DATA, DOCUMENTS, HALVES, STATE, build_inputs, document_id
    from bench.study import cpu
    from core.settings import Settings

    settings = Settings()
    truths = {half: load_truths(DATA / f"{half}.jsonl") for half in HALVES}
    names = {document_id(name): name for name in DOCUMENTS}
    inputs = build_inputs(settings)
    index = (
        STATE
        / "bench"
        / "retrieval"
        / f"index-{hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]}"
    )
    if not (index / "meta.json").exists():
        raise SystemExit(f"no cached index at {index}: run bench/retrieval.py first (it builds and caches it)")
    print(f"CPU: {cpu()}")
    print(f"index: {index}; {len(truths['questions'])} questions, {len(truths['phrases'])} phrases")
    cache_dir = STATE / "bench" / "retrieval_cv"
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(index, truths, settings)
    lists = cache_dir / f"candidates-{key}.pkl"
    if args.refetch or not lists.exists():
        print("fetching the candidate lists (once per query) ...", flush=True)
        lists.write_bytes(pickle.dumps(fetch(settings, index, truths)))
    data = pickle.loads(lists.read_bytes())  # noqa: S301 - written by this bench, above
    contexts = {}
    wanted = {"full" for f in families if f in ("context", "context_extra")}
    wanted |= {"headings" for f in families if f == "context_headings"}
    for kind in sorted(wanted):
        import numpy as np

        vectors_path = cache_dir / f"context-vectors-{key}{'' if kind == 'full' else '-headings'}.npy"
        if not vectors_path.exists():
            from bench.retrieval_context import context_vectors
            from lake.vectors import connect, open_chunks

            lance = settings.lancedb.model_copy(update={"uri": str(index)})
            table = open_chunks(connect(lance), lance, create=False)
            print(f"embedding the chunks with their section context ({kind}) ...", flush=True)
            matrix = context_vectors(table, data["ids"], settings, names, with_title=kind == "full")
            np.save(vectors_path, matrix)
        contexts[kind] = np.load(vectors_path)
    corpus = Corpus(data, contexts)

    fold_sets = [stratified_folds(truths["questions"], args.folds, seed) for seed in range(args.seeds)]
    base = shipped_point(settings.lancedb)
    single = {
        mode: [rank_of(t, fuse(corpus, t.id, base, settings.lancedb, mode), names) for t in truths["questions"]]
        for mode in ("hybrid", "vector", "text")
    }
    phrases_shipped = [rank_of(t, fuse(corpus, t.id, base, settings.lancedb), names) for t in truths["phrases"]]
    baselines = {f"{mode} ({'shipped ' + base.label() if mode == 'hybrid' else 'alone'})": fixed_on_folds(r, fold_sets)
                 for mode, r in single.items()}  # fmt: skip
    print(f"shipped point {base.label()}: questions {fmt(figures(single['hybrid']))}, "
          f"phrases R@1 {recall_at(phrases_shipped, 1):.3f}")  # fmt: skip
    print(f"\nshipped point per fold, seed 0 ({args.folds} folds):")
    for number, fold_fig in enumerate(baselines[next(iter(baselines))]["first_repeat"], 1):
        print(f"  fold {number} ({len(fold_sets[0][number - 1])} questions): {fmt(fold_fig)}")

    results = {}
    for family in families:
        print(f"\nfamily {family}: ", end="", flush=True)
        results[family] = run_family(corpus, family, truths, settings.lancedb, names, fold_sets)
        r = results[family]
        print(f"{r['grid_points']} points ({r['feasible_points']} keep phrase R@1 >= {PHRASE_R1_MIN})")
        print(f"  cross-validated: {fmt_spread(r['cv'])}")
        print(f"  per fold:        {fmt_spread(r['cv_folds'])}")
        print(f"  chosen most:     {r['chosen'][:3]}")
        print(f"  in-sample best:  {r['in_sample_best']['point']}: {fmt(r['in_sample_best'])}")
        fixed = r["fixed"]
        print(f"  fixed {fixed['point']}: {fmt(fixed)}, phrases R@1 {fixed['phrases_recall@1']:.3f}")

    for kind in contexts:
        idea = replace(base, idea="context" if kind == "full" else "context_headings")
        ranks = [rank_of(t, fuse(corpus, t.id, idea, settings.lancedb, "vector"), names) for t in truths["questions"]]
        baselines[f"vector (alone, context vectors: {kind})"] = fixed_on_folds(ranks, fold_sets)
    for r in results.values():
        if "current" in results:
            r["paired_vs_current"] = paired(r["cv_repeats"], results["current"]["cv_repeats"])
    print_table(baselines, results, args)
    out = STATE / "bench" / "retrieval_cv.json"
    out.write_text(json.dumps({
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu(), "index": str(index),
        "folds": args.folds, "seeds": args.seeds, "grid": GRID, "ideas": IDEAS, "selection":
        f"best train recall@5, then MRR@10, then recall@1, among points with phrase recall@1 >= {PHRASE_R1_MIN}",
        "baselines": baselines, "families": results,
    }, indent=1, default=str))  # fmt: skip
    plot(baselines, results, out.with_suffix(".png"), args)
    print(f"\nwrote {out} and {out.with_suffix('.png')}")
    return 0


def fmt(f: dict[str, Any]) -> str:
    return f"R@1 {f['recall@1']:.3f}  R@5 {f['recall@5']:.3f}  MRR {f['mrr@10']:.3f}"


def fmt_spread(s: dict[str, dict[str, float]]) -> str:
    return "  ".join(
        f"{name} {s[m]['mean']:.3f} ± {s[m]['sd']:.3f} [{s[m]['min']:.3f}, {s[m]['max']:.3f}]"
        for m, name in (("recall@1", "R@1"), ("recall@5", "R@5"), ("mrr@10", "MRR"))
    )


def print_table(baselines: dict[str, Any], results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{args.folds}-fold CV x {args.seeds} seeds, questions. Fixed points: full-set figure "
          "[sd over the folds]. Tuned families: mean ± sd over the repeats of the pooled held-out figure; "
          "below each, its paired difference to 'current' on the same folds: mean [min, max] over seeds.")  # fmt: skip
    print(f"{'':<46}{'R@1':>22}{'R@5':>22}{'MRR':>22}")
    for name, b in baselines.items():
        cells = "".join(f"{b['pooled'][m]:>14.3f} [{b['folds'][m]['sd']:.3f}]" for m in METRICS)
        print(f"{name + ', fixed':<46}{cells}")
    for family, r in results.items():
        cells = "".join(f"{r['cv'][m]['mean']:>14.3f} ± {r['cv'][m]['sd']:.3f}" for m in METRICS)
        print(f"{family + ', tuned on the training folds':<46}{cells}")
        if family != "current" and "paired_vs_current" in r:
            d = r["paired_vs_current"]
            cells = "".join(f"{d[m]['mean']:>+8.3f} [{d[m]['min']:+.3f}, {d[m]['max']:+.3f}]" for m in METRICS)
            print(f"{'   minus current, same folds':<46}{cells}")


def plot(baselines: dict[str, Any], results: dict[str, Any], path: Path, args: argparse.Namespace) -> None:
    from bench.pngplot import stacked_bars

    rows = []
    for metric, short in (("recall@5", "R@5"), ("recall@1", "R@1")):
        for name, b in baselines.items():
            rows.append((f"{short} {name}, fixed", [(short, 100 * b["pooled"][metric])]))
        for family, r in results.items():
            rows.append((f"{short} {family}, CV", [(short, 100 * r["cv"][metric]["mean"])]))
    title = f"Questions: {args.folds}-fold CV x {args.seeds} seeds (tuned on the training folds) beside fixed points"
    stacked_bars(path, title, rows, unit="%")


if __name__ == "__main__":
    sys.exit(main())
