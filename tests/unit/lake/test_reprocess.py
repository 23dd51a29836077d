"""Reprocess planning without a lake: the scope, the settings of the new version, refusals."""

from __future__ import annotations

import pytest

from core.settings import Settings
from lake.index_versions import first_version
from lake.reprocess import ReprocessError, Scope, resolve_build
from lake.reprocess_checks import evaluation_recall


def test_the_scope_is_exactly_one_of_course_document_all():
    assert Scope.of(course="c1") == Scope("course", "c1")
    assert Scope.of(document="d1").label == "document:d1"
    assert Scope.of(everything=True).label == "all"
    for bad in ({}, {"course": "c", "document": "d"}, {"course": "c", "everything": True}):
        with pytest.raises(ReprocessError, match="exactly one of --course ID, --document ID, --all"):
            Scope.of(**bad)
    assert Scope("course", "x'y").lance_filter(inside=False) == "course_id <> 'x''y'"
    assert Scope("all").lance_filter(inside=True) is None


def test_the_new_version_takes_the_live_settings_unless_overridden():
    live = first_version(Settings(environment="test"))
    build = resolve_build(live, Scope("course", "c"), chunk_size=300, chunk_overlap=None, embedding_model=None,
                          precision=None)  # fmt: skip
    assert (build.chunk_size, build.chunk_overlap) == (300, live.chunk_overlap)
    assert (build.embedding_model, build.precision) == (live.embedding_model, live.precision)


def test_a_new_embedding_needs_the_whole_index_and_overlap_below_size():
    live = first_version(Settings(environment="test"))
    with pytest.raises(ReprocessError, match="changes every vector of the index: reprocess --all"):
        resolve_build(live, Scope("course", "c"), chunk_size=None, chunk_overlap=None, embedding_model="other",
                      precision=None)  # fmt: skip
    assert resolve_build(live, Scope("all"), chunk_size=None, chunk_overlap=None, embedding_model="other",
                         precision="fp32").embedding_model == "other"  # fmt: skip
    with pytest.raises(ReprocessError, match="must exceed the chunk overlap"):
        resolve_build(live, Scope("all"), chunk_size=100, chunk_overlap=100, embedding_model=None, precision=None)


def test_recall_is_checked_only_when_the_evaluation_documents_are_in_scope():
    settings = Settings(environment="test")
    assert evaluation_recall(settings, [{"filename": "notes.pdf", "document_id": "d", "course_id": "c"}], {}) is None
    evaluate = evaluation_recall(settings, [{"filename": "beameruserguide.pdf", "document_id": "d",
                                             "course_id": "c"}], {})  # fmt: skip
    assert callable(evaluate)
