"""The retrieval cross-validation bench's pure parts: folds, the choice on training folds, the
held-out scoring, the question-word rewrite, and the section context of a chunk."""

from __future__ import annotations

import pytest

from bench.retrieval_context import context_text, heading_at
from bench.retrieval_cv import strip_question_words
from bench.retrieval_metrics import Truth, choose, cross_validate, stratified_folds


def truths(per_document: dict[str, int]) -> list[Truth]:
    return [
        Truth(id=f"{doc}-{i}", document=doc, query="q", pages=(1,))
        for doc, count in per_document.items()
        for i in range(count)
    ]


def test_folds_partition_the_questions_evenly_and_spread_each_document():
    items = truths({"beamer": 16, "memoir": 15, "microtype": 16, "lwarp": 16})
    folds = stratified_folds(items, 5, seed=3)
    flat = sorted(i for fold in folds for i in fold)
    assert flat == list(range(len(items)))
    assert {len(fold) for fold in folds} == {12, 13}
    for doc in ("beamer", "memoir"):
        counts = [sum(items[i].document == doc for i in fold) for fold in folds]
        assert max(counts) - min(counts) <= 1


def test_folds_are_deterministic_per_seed_and_differ_between_seeds():
    items = truths({"a": 10, "b": 10})
    assert stratified_folds(items, 5, seed=1) == stratified_folds(items, 5, seed=1)
    assert stratified_folds(items, 5, seed=1) != stratified_folds(items, 5, seed=2)


@pytest.mark.parametrize("folds", [1, 21])
def test_folds_out_of_range_are_refused(folds):
    with pytest.raises(ValueError, match="folds must be within"):
        stratified_folds(truths({"a": 20}), folds, seed=0)


def test_choose_prefers_recall_at_5_then_mrr_among_feasible_points():
    ranks = [
        [1, None, None, None],  # R@5 0.25
        [3, 3, 3, None],  # R@5 0.75, MRR 0.25
        [1, 2, 4, None],  # R@5 0.75, MRR 0.44: best feasible
        [1, 1, 1, 1],  # best, but infeasible
    ]
    assert choose(ranks, [0, 1, 2, 3], [True, True, True, False]) == 2
    assert choose(ranks, [0], [True, True, True, False]) == 0  # ties on row 0: the first point
    with pytest.raises(ValueError, match="no feasible"):
        choose(ranks, [0], [False] * 4)


def test_cross_validation_scores_each_fold_with_the_point_chosen_without_it():
    # Point 0 is right on questions 0-1 only, point 1 on questions 2-3 only: trained on the other
    # fold, each fold gets the point that is wrong on it, so held-out recall is 0.
    ranks = [[1, 1, None, None], [None, None, 1, 1]]
    result = cross_validate(ranks, [True, True], [[[0, 1], [2, 3]]])
    assert result["chosen"] == [1, 0]
    assert result["repeats"] == [{"recall@1": 0.0, "recall@5": 0.0, "mrr@10": 0.0}]
    assert len(result["folds"]) == 2


def test_question_words_are_dropped_from_the_bm25_query_but_never_all():
    assert strip_question_words("How do I put my logo on every slide?") == "put logo on every slide"
    assert strip_question_words("what is it") == "what is it"


def test_a_chunk_gets_the_heading_path_of_the_last_outline_entry_before_its_page():
    entries = [(3, ("1 Intro",)), (5, ("2 Overlays",)), (5, ("2 Overlays", "2.1 Pause")), (9, ("3 Themes",))]
    assert heading_at(entries, 2) == ()
    assert heading_at(entries, 5) == ("2 Overlays", "2.1 Pause")
    assert heading_at(entries, 8) == ("2 Overlays", "2.1 Pause")
    assert context_text("Beamer", ("2 Overlays", "2.1 Pause"), "text") == "Beamer. 2 Overlays > 2.1 Pause\ntext"
    assert context_text("Beamer", (), "text") == "Beamer.\ntext"
    assert context_text("", ("2 Overlays",), "text") == "2 Overlays\ntext"
    assert context_text("", (), "text") == "text"
