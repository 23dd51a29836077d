"""The suites on in-memory frames (no store): a consistent lake passes; each broken rule fails
its own expectation, naming the row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.settings import Settings
from lake.gold import GOLD_FLASHCARDS, GOLD_SCHEMAS
from lake.tables import SILVER_CHUNKS, SILVER_DOCUMENTS, TABLE_SCHEMAS
from processing.embedding import DIMENSION
from quality import runner
from quality.sources import Lake
from quality.suites import CONSISTENCY, SUITES


def _frame(schema, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{name: row.get(name) for name in schema.names} for row in rows], columns=schema.names)


def _lake(*, chunk_ids=("c1", "c2"), chunk_pages=(1, 2), card_page=2, lance=2, postgres=2) -> Lake:
    doc = {"document_id": "d1", "version": 1, "course_id": "k", "status": "indexed", "is_current": True,
           "pages": 2, "chunks": 2, "size_bytes": 10, "sha256": "a" * 64,
           "uploaded_at": pd.Timestamp.now(tz="UTC")}  # fmt: skip
    chunks = [{"chunk_id": c, "document_id": "d1", "version": 1, "course_id": "k", "chunk_index": i,
               "page_start": p, "page_end": p, "char_start": 0, "text": 5, "embedding": DIMENSION}
              for i, (c, p) in enumerate(zip(chunk_ids, chunk_pages, strict=True))]  # fmt: skip
    card = {"card_id": "card1", "document_id": "d1", "version": 1, "course_id": "k", "generator": "g",
            "generator_version": "v", "run_at": pd.Timestamp.now(tz="UTC"), "front": "f", "back": "b",
            "page": card_page, "source": "key_term"}  # fmt: skip
    return Lake(
        tables={
            SILVER_DOCUMENTS: _frame(TABLE_SCHEMAS[SILVER_DOCUMENTS], [doc]),
            SILVER_CHUNKS: _frame(TABLE_SCHEMAS[SILVER_CHUNKS], chunks),
            GOLD_FLASHCARDS: _frame(GOLD_SCHEMAS[GOLD_FLASHCARDS], [card]),
        },
        lancedb_counts={("d1", 1): lance},
        postgres_indexed=[{"document_id": "d1", "version": 1, "course_id": "k", "pages": 2, "chunks": postgres}],
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = Settings(environment="test").model_dump()
    data["stack"].update(state_dir=tmp_path)
    return Settings(**data)


TABLES = [SILVER_DOCUMENTS, SILVER_CHUNKS, GOLD_FLASHCARDS, CONSISTENCY]


def test_a_consistent_lake_passes_and_absent_tables_are_skipped(settings: Settings) -> None:
    report = runner.check(settings, lake=_lake())
    assert report.success, report.failures()
    status = {r.suite: r.status for r in report.results}
    assert {status[t] for t in TABLES} == {"passed"}
    assert status["gold/notes"] == "skipped"
    assert set(status) == set(runner.all_suites(settings)) > set(SUITES)
    assert status["freshness/lake"] == "passed"  # fresh rows; no warehouse: its suites are skipped
    assert status["warehouse/fact_reviews"] == status["freshness/warehouse"] == "skipped"
    assert report.data_docs is not None and report.data_docs.is_file()


@pytest.mark.parametrize(
    ("broken", "suite", "expectation", "ids"),
    [
        ({"chunk_ids": ("c1", "c1")}, SILVER_CHUNKS, "expect_column_values_to_be_unique(chunk_id)", ["c1", "c1"]),
        ({"chunk_pages": (1, 3)}, SILVER_CHUNKS, "expect_column_values_to_be_in_set(page_end_within_document)",
         ["c2"]),
        ({"card_page": 0}, GOLD_FLASHCARDS, "expect_column_values_to_be_between(page)", ["card1"]),
        ({"lance": 1}, CONSISTENCY, "expect_column_pair_values_to_be_equal(silver_chunks,lancedb_chunks)", ["d1/1"]),
        ({"postgres": 3}, CONSISTENCY, "expect_column_pair_values_to_be_equal(silver_chunks,postgres_chunks)",
         ["d1/1"]),
    ],
)  # fmt: skip
def test_a_broken_rule_fails_its_expectation_naming_the_row(
    settings: Settings, broken: dict, suite: str, expectation: str, ids: list[str]
) -> None:
    report = runner.check(settings, TABLES, lake=_lake(**broken))
    assert not report.success
    [result] = [r for r in report.results if r.suite == suite]
    failures = {f"{f.expectation}({f.column})": f.ids for f in result.failures}
    assert failures.get(expectation) == ids, failures


def test_an_unknown_suite_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="no quality suite for gold/nothing"):
        runner.check(settings, ["gold/nothing"], lake=Lake())
