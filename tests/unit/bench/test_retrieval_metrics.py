"""The retrieval bench's scoring functions, and the committed evaluation set's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.corpus import DOCUMENTS
from bench.retrieval_metrics import (
    Truth,
    first_right_rank,
    is_right,
    load_truths,
    mrr_at,
    percentile,
    recall_at,
    summarize,
)

DATA = Path(__file__).resolve().parents[3] / "bench" / "retrieval"
TRUTH = Truth(id="q1", document="memoir", query="how do I", pages=(12, 14))


def test_is_right_when_the_span_meets_a_page_of_the_right_document():
    assert is_right(TRUTH, document="memoir", page_start=14, page_end=14)
    assert is_right(TRUTH, document="memoir", page_start=10, page_end=12)
    assert is_right(TRUTH, document="memoir", page_start=13, page_end=15)  # a span covering page 14
    assert not is_right(TRUTH, document="memoir", page_start=13, page_end=13)  # between the pages
    assert not is_right(TRUTH, document="beamer", page_start=12, page_end=12)  # right page, wrong document


def test_first_right_rank_counts_from_one_and_is_none_without_a_right_hit():
    hits = [("beamer", 12, 12), ("memoir", 1, 2), ("memoir", 14, 15), ("memoir", 12, 12)]
    assert first_right_rank(TRUTH, hits) == 3
    assert first_right_rank(TRUTH, hits[:2]) is None
    assert first_right_rank(TRUTH, []) is None


def test_recall_and_mrr_use_the_cut_off():
    ranks = [1, 3, None, 7, 2]
    assert recall_at(ranks, 1) == pytest.approx(1 / 5)
    assert recall_at(ranks, 5) == pytest.approx(3 / 5)
    assert mrr_at(ranks, 10) == pytest.approx((1 + 1 / 3 + 1 / 7 + 1 / 2) / 5)
    assert mrr_at(ranks, 5) == pytest.approx((1 + 1 / 3 + 1 / 2) / 5)
    assert recall_at([], 5) == 0.0 and mrr_at([], 10) == 0.0


def test_percentile_interpolates_between_ranks():
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile(values, 0) == 10.0 and percentile(values, 100) == 40.0
    with pytest.raises(ValueError, match="within 0-100"):
        percentile(values, 101)


def test_summarize_gives_every_figure():
    figures = summarize([1, None], [5.0, 15.0])
    assert figures == {"queries": 2, "recall@1": 0.5, "recall@5": 0.5, "mrr@10": 0.5, "p50_ms": 10.0, "p95_ms": 14.5}


def test_load_truths_rejects_a_malformed_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "document": "memoir", "query": "q", "pages": [0]}) + "\n")
    with pytest.raises(ValueError, match="1-based pages"):
        load_truths(bad)
    bad.write_text('{"id": "a", "document": "memoir"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_truths(bad)


@pytest.mark.parametrize(("half", "least"), [("phrases", 100), ("questions", 60)])
def test_the_committed_set_is_well_formed(half, least):
    truths = load_truths(DATA / f"{half}.jsonl")
    assert len(truths) >= least
    assert {truth.document for truth in truths} == set(DOCUMENTS)
    if half == "phrases":
        assert all(len(truth.query.split()) == 8 and len(truth.pages) == 1 for truth in truths)
