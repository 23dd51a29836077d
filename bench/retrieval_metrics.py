"""Pure scoring functions of ``bench/retrieval.py`` and the cross-validation of
``bench/retrieval_cv.py`` (no I/O, no project imports), unit-tested.

A hit is right when it comes from the expected document and its page span ``[page_start,
page_end]`` meets one of the expected pages. A query's score is the 1-based rank of its first
right hit (``None`` when no returned hit is right); recall@k and MRR@k are computed from those.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Truth:
    """One evaluation query and the pages of one document that answer it."""

    id: str
    document: str
    query: str
    pages: tuple[int, ...]


def load_truths(path: Path) -> list[Truth]:
    """Reads a JSON-lines evaluation file; a malformed line is a ``ValueError`` naming it."""
    truths = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pages = tuple(int(page) for page in row["pages"])
            truth = Truth(id=str(row["id"]), document=str(row["document"]), query=str(row["query"]), pages=pages)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an evaluation row ({exc})") from exc
        if not truth.pages or min(truth.pages) < 1 or not truth.query.strip():
            raise ValueError(f"{path}:{number}: needs a query and 1-based pages")
        truths.append(truth)
    ids = [truth.id for truth in truths]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids")
    return truths


def is_right(truth: Truth, *, document: str, page_start: int, page_end: int) -> bool:
    """True if a hit of ``document`` spanning ``page_start..page_end`` answers ``truth``."""
    return document == truth.document and any(page_start <= page <= page_end for page in truth.pages)


def first_right_rank(truth: Truth, hits: Sequence[tuple[str, int, int]]) -> int | None:
    """1-based rank of the first right hit among ``(document, page_start, page_end)`` hits."""
    for rank, (document, start, end) in enumerate(hits, start=1):
        if is_right(truth, document=document, page_start=start, page_end=end):
            return rank
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries with a right hit in the top ``k``."""
    if not ranks:
        return 0.0
    return sum(1 for rank in ranks if rank is not None and rank <= k) / len(ranks)


def mrr_at(ranks: Sequence[int | None], k: int) -> float:
    """Mean reciprocal rank of the first right hit, counting 0 beyond rank ``k``."""
    if not ranks:
        return 0.0
    return sum(1.0 / rank for rank in ranks if rank is not None and rank <= k) / len(ranks)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(ranks: Sequence[int | None], latencies_ms: Sequence[float]) -> dict[str, float]:
    """The figures of one mode on one half of the set."""
    return {
        "queries": len(ranks),
        "recall@1": recall_at(ranks, 1),
        "recall@5": recall_at(ranks, 5),
        "mrr@10": mrr_at(ranks, 10),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
    }


# Cross-validation of settings chosen on part of the questions (``bench/retrieval_cv.py``).

METRICS = ("recall@1", "recall@5", "mrr@10")


def stratified_folds(truths: Sequence[Truth], folds: int, seed: int) -> list[list[int]]:
    """Indexes of ``truths`` dealt into ``folds`` folds: each document's questions shuffled with
    ``seed`` and dealt round-robin, continuing across documents, so folds differ by at most one
    question overall and documents spread evenly."""
    if folds < 2 or folds > len(truths):
        raise ValueError(f"folds must be within 2..{len(truths)}, not {folds}")
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    position = rng.randrange(folds)
    for document in sorted({t.document for t in truths}):
        members = [i for i, t in enumerate(truths) if t.document == document]
        rng.shuffle(members)
        for index in members:
            out[position % folds].append(index)
            position += 1
    return out


def figures(ranks: Sequence[int | None]) -> dict[str, float]:
    return {"recall@1": recall_at(ranks, 1), "recall@5": recall_at(ranks, 5), "mrr@10": mrr_at(ranks, 10)}


def choose(ranks: Sequence[Sequence[int | None]], rows: Sequence[int], feasible: Sequence[bool]) -> int:
    """The grid point (index into ``ranks``) with the best recall@5, then MRR@10, then recall@1
    on the queries ``rows``, among the ``feasible`` ones; the first such point on ties."""
    best, best_key = -1, (-1.0, -1.0, -1.0)
    for point, point_ranks in enumerate(ranks):
        if not feasible[point]:
            continue
        chosen = [point_ranks[i] for i in rows]
        key = (recall_at(chosen, 5), mrr_at(chosen, 10), recall_at(chosen, 1))
        if key > best_key:
            best, best_key = point, key
    if best < 0:
        raise ValueError("no feasible grid point")
    return best


def cross_validate(
    ranks: Sequence[Sequence[int | None]], feasible: Sequence[bool], fold_sets: Sequence[Sequence[Sequence[int]]]
) -> dict[str, Any]:
    """Per repeat (one list of folds each): the chosen point per fold and the pooled held-out
    figures; plus every fold's own held-out figures."""
    repeats, fold_figures, chosen = [], [], []
    for folds in fold_sets:
        held: dict[int, int | None] = {}
        for fold in folds:
            train = [i for other in folds if other is not fold for i in other]
            point = choose(ranks, train, feasible)
            chosen.append(point)
            for i in fold:
                held[i] = ranks[point][i]
            fold_figures.append(figures([ranks[point][i] for i in fold]))
        repeats.append(figures([held[i] for i in sorted(held)]))
    return {"repeats": repeats, "folds": fold_figures, "chosen": chosen}


def spread(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for metric in ("recall@1", "recall@5", "mrr@10"):
        values = [row[metric] for row in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[metric] = {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}
    return out


def paired(repeats: list[dict[str, float]], reference: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per-seed differences of two families' pooled held-out figures (same folds): mean, min, max."""
    out = {}
    for metric in METRICS:
        diffs = [a[metric] - b[metric] for a, b in zip(repeats, reference, strict=True)]
        out[metric] = {"mean": statistics.fmean(diffs), "min": min(diffs), "max": max(diffs)}
    return out
