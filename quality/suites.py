"""The Great Expectations suites, as code: one per lake table plus the cross-store check.

Each ``Suite`` builds the frame it validates from a ``quality.sources.Lake`` (the table itself,
with derived columns where a check spans tables: ``document_in_silver``, ``source_chunk_in_silver``,
``cited_pages_out_of_range``...), lists its expectations and names the id column(s) that identify
a failing row in the results (``unexpected_index_column_names``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import great_expectations.expectations as gxe

from lake.gold import GOLD_FLASHCARDS, GOLD_NOTES, GOLD_QUIZ_ITEMS, GOLD_QUIZZES, GOLD_SCHEMAS
from lake.tables import BRONZE_DOCUMENT_EVENTS, SILVER_CHUNKS, SILVER_DOCUMENTS, SILVER_PAGES, TABLE_SCHEMAS
from processing.embedding import DIMENSION

if TYPE_CHECKING:
    import pandas as pd

    from quality.sources import Lake

CONSISTENCY = "consistency/chunks_per_document"
SCHEMAS = {**TABLE_SCHEMAS, **GOLD_SCHEMAS}


@dataclass(frozen=True)
class Suite:
    name: str  # the table (or cross-store view) it checks
    ids: tuple[str, ...]  # columns that name a failing row
    build: Callable[[Lake], pd.DataFrame | None]
    expectations: Callable[[], list[Any]]  # fresh objects per run (GX binds them to one suite)


# ---------------------------------------------------------------------------- shared pieces


def _columns(name: str, *derived: str) -> Any:
    """Exactly the table's columns, plus the ones this module derives for cross-table checks."""
    return gxe.ExpectTableColumnsToMatchSet(column_set=[*SCHEMAS[name].names, *derived], exact_match=True)


def _not_null(*columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _true(column: str) -> Any:
    return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[True])


def _between(column: str, low: float | None = None, high: float | None = None) -> Any:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)


def _keys(frame: pd.DataFrame | None, *columns: str) -> set[tuple]:
    if frame is None or frame.empty:
        return set()
    return set(frame[list(columns)].itertuples(index=False, name=None))


def _document_pages(lake: Lake) -> dict[tuple[str, int], int]:
    docs = lake.frame(SILVER_DOCUMENTS)
    if docs is None or docs.empty:
        return {}
    return {(d, int(v)): int(p) if p == p and p is not None else 0 for d, v, p in
            docs[["document_id", "version", "pages"]].itertuples(index=False, name=None)}  # fmt: skip


def _with_document_checks(lake: Lake, frame: pd.DataFrame, page_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Adds ``document_in_silver`` and, per page column, ``<column>_within_document``."""
    pages = _document_pages(lake)
    keys = list(zip(frame["document_id"], frame["version"].astype("Int64"), strict=False))
    frame = frame.copy()
    frame["document_in_silver"] = [(d, int(v)) in pages if v is not None else False for d, v in keys]
    for column in page_columns:
        frame[f"{column}_within_document"] = [
            bool(p is not None and 1 <= int(p) <= pages.get((d, int(v)), 0))
            for (d, v), p in zip(keys, frame[column], strict=False)
        ]
    return frame


# ---------------------------------------------------------------------------- bronze and silver


def _bronze(lake: Lake) -> pd.DataFrame | None:
    return lake.frame(BRONZE_DOCUMENT_EVENTS)


def _bronze_expectations() -> list[Any]:
    return [
        _columns(BRONZE_DOCUMENT_EVENTS),
        *_not_null("topic", "partition", "offset", "value", "batch_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["topic", "partition", "offset"]),
        _between("offset", 0),
        _between("partition", 0),
        gxe.ExpectColumnValuesToBeJsonParseable(column="value"),
    ]


def _silver_documents(lake: Lake) -> pd.DataFrame | None:
    return lake.frame(SILVER_DOCUMENTS)


def _silver_documents_expectations() -> list[Any]:
    return [
        _columns(SILVER_DOCUMENTS),
        *_not_null("document_id", "version", "course_id", "status", "is_current"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["document_id", "version"]),
        _between("version", 1),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["indexed", "failed"]),
        _between("pages", 0),
        _between("chunks", 0),
        _between("size_bytes", 0),
        gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
    ]


def _silver_pages(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(SILVER_PAGES)
    return None if frame is None else _with_document_checks(lake, frame, ("page_number",))


def _silver_pages_expectations() -> list[Any]:
    return [
        _columns(SILVER_PAGES, "document_in_silver", "page_number_within_document"),
        *_not_null("page_id", "document_id", "version", "course_id", "page_number"),
        gxe.ExpectColumnValuesToBeUnique(column="page_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["document_id", "version", "page_number"]),
        _between("page_number", 1),
        _between("char_count", 0),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="char_count", column_B="text"),  # text holds its length
        _true("document_in_silver"),
        _true("page_number_within_document"),
    ]


def _silver_chunks(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(SILVER_CHUNKS)
    return None if frame is None else _with_document_checks(lake, frame, ("page_start", "page_end"))


def _silver_chunks_expectations() -> list[Any]:
    return [
        _columns(SILVER_CHUNKS, "document_in_silver", "page_start_within_document", "page_end_within_document"),
        *_not_null("chunk_id", "document_id", "version", "course_id", "chunk_index", "page_start", "page_end"),
        gxe.ExpectColumnValuesToBeUnique(column="chunk_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["document_id", "version", "chunk_index"]),
        _between("chunk_index", 0),
        _between("page_start", 1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="page_end", column_B="page_start", or_equal=True),
        _between("char_start", 0),
        _between("text", 1),  # text holds its length: no empty chunk
        _between("embedding", DIMENSION, DIMENSION),  # embedding holds its length
        _true("document_in_silver"),
        _true("page_start_within_document"),
        _true("page_end_within_document"),
    ]


# ---------------------------------------------------------------------------- gold


def _cited_pages(payload: str) -> list[int]:
    notes = json.loads(payload)
    sentences = list(notes.get("overview", []))
    for section in notes.get("sections", []):
        sentences += section.get("sentences", [])
    sentences += [term["definition"] for term in notes.get("key_terms", [])]
    return [int(page) for sentence in sentences for page in sentence.get("pages", [])]


def _gold_notes(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(GOLD_NOTES)
    if frame is None:
        return None
    frame = _with_document_checks(lake, frame)
    pages = _document_pages(lake)
    frame["cited_pages_out_of_range"] = [
        sum(1 for page in _cited_pages(payload) if not 1 <= page <= pages.get((d, int(v)), 0))
        for d, v, payload in zip(frame["document_id"], frame["version"], frame["payload"], strict=False)
    ]
    frame["payload"] = frame["payload"].str.len()
    return frame


def _key_expectations(name: str, id_column: str, *derived: str) -> list[Any]:
    return [
        _columns(name, "document_in_silver", *derived),
        *_not_null(id_column, "document_id", "version", "course_id", "generator_version", "run_at"),
        gxe.ExpectColumnValuesToBeUnique(column=id_column),
        _between("version", 1),
        _true("document_in_silver"),
    ]


def _gold_notes_expectations() -> list[Any]:
    return [
        *_key_expectations(GOLD_NOTES, "notes_id", "cited_pages_out_of_range"),
        _between("citation_precision", 0, 1),
        _between("section_coverage", 0, 1),
        _between("sections", 0),
        _between("cited_pages_out_of_range", 0, 0),
    ]


def _gold_quizzes(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(GOLD_QUIZZES)
    return None if frame is None else _with_document_checks(lake, frame)


def _gold_quizzes_expectations() -> list[Any]:
    return [
        *_key_expectations(GOLD_QUIZZES, "quiz_id"),
        _between("items", 0),
        _between("answerability", 0, 1),
        _between("duplicate_rate", 0, 1),
        _between("distractor_similarity_min", -1, 1),
        _between("distractor_similarity_max", -1, 1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="distractor_similarity_max", column_B="distractor_similarity_min", or_equal=True
        ),
        gxe.ExpectColumnValuesToBeJsonParseable(column="reasons"),
    ]


def _gold_quiz_items(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(GOLD_QUIZ_ITEMS)
    if frame is None:
        return None
    frame = _with_document_checks(lake, frame, ("page",))
    chunks = {c for (c,) in _keys(lake.frame(SILVER_CHUNKS), "chunk_id")}
    quizzes = {q for (q,) in _keys(lake.frame(GOLD_QUIZZES), "quiz_id")}
    frame["source_chunk_in_silver"] = frame["source_chunk_id"].isin(chunks)
    frame["quiz_in_gold"] = frame["quiz_id"].isin(quizzes)
    frame["key_among_options"] = [
        correct in {option.get("option_id") for option in json.loads(options)}
        for correct, options in zip(frame["correct_option_id"], frame["options"], strict=False)
    ]
    return frame


def _gold_quiz_items_expectations() -> list[Any]:
    return [
        *_key_expectations(
            GOLD_QUIZ_ITEMS,
            "item_id",
            "page_within_document",
            "source_chunk_in_silver",
            "quiz_in_gold",
            "key_among_options",
        ),
        *_not_null("quiz_id", "source_chunk_id", "correct_option_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["quiz_id", "position"]),
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["mcq", "cloze"]),
        gxe.ExpectColumnValuesToBeInSet(column="difficulty", value_set=["easy", "medium", "hard"]),
        _between("page", 1),
        _true("page_within_document"),
        _true("source_chunk_in_silver"),
        _true("quiz_in_gold"),
        _true("key_among_options"),
    ]


def _gold_flashcards(lake: Lake) -> pd.DataFrame | None:
    frame = lake.frame(GOLD_FLASHCARDS)
    return None if frame is None else _with_document_checks(lake, frame, ("page",))


def _gold_flashcards_expectations() -> list[Any]:
    return [
        *_key_expectations(GOLD_FLASHCARDS, "card_id", "page_within_document"),
        *_not_null("front", "back"),
        _between("page", 1),
        _true("page_within_document"),
    ]


# ---------------------------------------------------------------------------- across stores


def _consistency(lake: Lake) -> pd.DataFrame | None:
    """One row per document version PostgreSQL says is indexed: its chunk counts in each store."""
    import pandas as pd

    if lake.postgres_indexed is None:
        return None
    chunks = lake.frame(SILVER_CHUNKS)
    silver_counts: dict[tuple[str, int], int] = {}
    if chunks is not None and not chunks.empty:
        grouped = chunks.groupby(["document_id", "version"]).size()
        silver_counts = {(d, int(v)): int(n) for (d, v), n in grouped.items()}
    docs = lake.frame(SILVER_DOCUMENTS)
    silver_docs: dict[tuple[str, int], Any] = {}
    if docs is not None and not docs.empty:
        columns = docs[["document_id", "version", "status", "chunks"]]
        silver_docs = {(d, int(v)): (s, c) for d, v, s, c in columns.itertuples(index=False, name=None)}
    lance = lake.lancedb_counts or {}
    rows = []
    for row in lake.postgres_indexed:
        key = (row["document_id"], int(row["version"]))
        status, declared = silver_docs.get(key, (None, None))
        rows.append(
            {
                "document_id": key[0],
                "version": key[1],
                "indexed_in_silver": status == "indexed",
                "postgres_chunks": row["chunks"],
                "silver_documents_chunks": declared,
                "silver_chunks": silver_counts.get(key, 0),
                "lancedb_chunks": lance.get(key, 0),
            }
        )
    columns = ["document_id", "version", "indexed_in_silver", "postgres_chunks", "silver_documents_chunks",
               "silver_chunks", "lancedb_chunks"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _consistency_expectations() -> list[Any]:
    equal = gxe.ExpectColumnPairValuesToBeEqual
    return [
        _true("indexed_in_silver"),
        equal(column_A="silver_chunks", column_B="postgres_chunks"),
        equal(column_A="silver_chunks", column_B="lancedb_chunks"),
        equal(column_A="silver_chunks", column_B="silver_documents_chunks"),
    ]


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(BRONZE_DOCUMENT_EVENTS, ("topic", "partition", "offset"), _bronze, _bronze_expectations),
        Suite(SILVER_DOCUMENTS, ("document_id", "version"), _silver_documents, _silver_documents_expectations),
        Suite(SILVER_PAGES, ("page_id",), _silver_pages, _silver_pages_expectations),
        Suite(SILVER_CHUNKS, ("chunk_id",), _silver_chunks, _silver_chunks_expectations),
        Suite(GOLD_NOTES, ("notes_id",), _gold_notes, _gold_notes_expectations),
        Suite(GOLD_QUIZZES, ("quiz_id",), _gold_quizzes, _gold_quizzes_expectations),
        Suite(GOLD_QUIZ_ITEMS, ("item_id",), _gold_quiz_items, _gold_quiz_items_expectations),
        Suite(GOLD_FLASHCARDS, ("card_id",), _gold_flashcards, _gold_flashcards_expectations),
        Suite(CONSISTENCY, ("document_id", "version"), _consistency, _consistency_expectations),
    )
}
STUDY_SUITES = (SILVER_DOCUMENTS, SILVER_CHUNKS, GOLD_NOTES, GOLD_QUIZZES, GOLD_QUIZ_ITEMS, GOLD_FLASHCARDS)
