"""Pure scoring functions of ``bench/retrieval.py`` (no I/O, no project imports), unit-tested.

A hit is right when it comes from the expected document and its page span ``[page_start,
page_end]`` meets one of the expected pages. A query's score is the 1-based rank of its first
right hit (``None`` when no returned hit is right); recall@k and MRR@k are computed from those.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


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
