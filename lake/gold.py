"""Gold tables: the study material generated from indexed documents, and their one writer.

| table | one row per | key (a rerun replaces exactly these rows) |
| --- | --- | --- |
| ``gold/notes`` | notes of a document version | (document_id, version, generator_version) |
| ``gold/quizzes`` | quiz of a document version (with its quality) | (document_id, version, generator_version) |
| ``gold/quiz_items`` | quiz item (options, key, source chunk, page) | (document_id, version, generator_version) |
| ``gold/flashcards`` | card | (document_id, version, generator_version) |

Written with delta-rs (``write_deltalake`` overwrite with a replace-where ``predicate`` on the
key), so a DAG task needs no JVM and a retried task writes the same rows once. The same module
reads them back (point reads filtered on the key). Silver reads for generation live here too:
the pages and chunks of one document version.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from core.faults import crash_point
from core.settings import Settings
from lake.tables import SILVER_CHUNKS, SILVER_PAGES, delta_location

if TYPE_CHECKING:
    from study.models import Flashcard, Notes, Quiz

GOLD_NOTES = "gold/notes"
GOLD_QUIZZES = "gold/quizzes"
GOLD_QUIZ_ITEMS = "gold/quiz_items"
GOLD_FLASHCARDS = "gold/flashcards"

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_KEY_FIELDS = [
    pa.field("document_id", pa.string(), nullable=False),
    pa.field("version", pa.int32(), nullable=False),
    pa.field("course_id", pa.string(), nullable=False),
    pa.field("generator", pa.string(), nullable=False),
    pa.field("generator_version", pa.string(), nullable=False),
    pa.field("run_at", _TIMESTAMP, nullable=False),  # the DAG run's logical time, not a wall clock
]
GOLD_SCHEMAS: dict[str, pa.Schema] = {
    GOLD_NOTES: pa.schema(
        [
            pa.field("notes_id", pa.string(), nullable=False),
            *_KEY_FIELDS,
            pa.field("sections", pa.int32(), nullable=False),
            pa.field("key_terms", pa.int32(), nullable=False),
            pa.field("citation_precision", pa.float64(), nullable=False),
            pa.field("section_coverage", pa.float64(), nullable=False),
            pa.field("flagged", pa.bool_(), nullable=False),
            pa.field("payload", pa.string(), nullable=False),  # the whole ``study.models.Notes`` as JSON
        ]
    ),
    GOLD_QUIZZES: pa.schema(
        [
            pa.field("quiz_id", pa.string(), nullable=False),
            *_KEY_FIELDS,
            pa.field("items", pa.int32(), nullable=False),
            pa.field("answerability", pa.float64(), nullable=False),
            pa.field("duplicate_rate", pa.float64(), nullable=False),
            pa.field("distractor_similarity_min", pa.float64(), nullable=False),
            pa.field("distractor_similarity_max", pa.float64(), nullable=False),
            pa.field("flagged", pa.bool_(), nullable=False),
            pa.field("reasons", pa.string(), nullable=False),
        ]
    ),
    GOLD_QUIZ_ITEMS: pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("quiz_id", pa.string(), nullable=False),
            *_KEY_FIELDS,
            pa.field("position", pa.int32(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("question", pa.string(), nullable=False),
            pa.field("options", pa.string(), nullable=False),  # JSON list of {option_id, text}
            pa.field("correct_option_id", pa.string(), nullable=False),
            pa.field("explanation", pa.string(), nullable=False),
            pa.field("source_chunk_id", pa.string(), nullable=False),
            pa.field("page", pa.int32(), nullable=False),
            pa.field("section_id", pa.string(), nullable=False),
            pa.field("difficulty", pa.string(), nullable=False),
            pa.field("fact", pa.string(), nullable=False),
        ]
    ),
    GOLD_FLASHCARDS: pa.schema(
        [
            pa.field("card_id", pa.string(), nullable=False),
            *_KEY_FIELDS,
            pa.field("front", pa.string(), nullable=False),
            pa.field("back", pa.string(), nullable=False),
            pa.field("page", pa.int32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
        ]
    ),
}
_SAFE_VERSION = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")


# ---------------------------------------------------------------------------- row builders


def _key(artifact: Notes | Quiz | Flashcard, *, generator: str, generator_version: str, run_at: datetime) -> dict:
    return {
        "document_id": artifact.document_id,
        "version": artifact.version,
        "course_id": artifact.course_id,
        "generator": generator,
        "generator_version": generator_version,
        "run_at": run_time(run_at),
    }


def notes_row(notes: Notes, *, run_at: datetime) -> dict[str, Any]:
    """The ``gold/notes`` row of one notes artifact (the whole artifact as JSON in ``payload``)."""
    return {
        "notes_id": notes.notes_id,
        **_key(notes, generator=notes.generator, generator_version=notes.generator_version, run_at=run_at),
        "sections": len(notes.sections),
        "key_terms": len(notes.key_terms),
        "citation_precision": notes.quality.citation_precision,
        "section_coverage": notes.quality.section_coverage,
        "flagged": notes.quality.flagged,
        "payload": notes.model_dump_json(),
    }


def quiz_rows(quiz: Quiz, *, run_at: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``gold/quizzes`` row and the ``gold/quiz_items`` rows of one quiz."""
    key = _key(quiz, generator=quiz.generator, generator_version=quiz.generator_version, run_at=run_at)
    quality = quiz.quality
    head = {
        "quiz_id": quiz.quiz_id,
        **key,
        "items": len(quiz.items),
        "answerability": quality.answerability,
        "duplicate_rate": quality.duplicate_rate,
        "distractor_similarity_min": quality.distractor_similarity_min,
        "distractor_similarity_max": quality.distractor_similarity_max,
        "flagged": quality.flagged,
        "reasons": as_json(quality.reasons),
    }
    items = [
        {
            "item_id": item.item_id,
            "quiz_id": quiz.quiz_id,
            **key,
            "position": position,
            "kind": item.kind,
            "question": item.question,
            "options": as_json([option.model_dump() for option in item.options]),
            "correct_option_id": item.correct_option_id,
            "explanation": item.explanation,
            "source_chunk_id": item.source_chunk_id,
            "page": item.page,
            "section_id": item.section_id,
            "difficulty": item.difficulty,
            "fact": item.fact,
        }
        for position, item in enumerate(quiz.items)
    ]
    return head, items


def card_rows(cards: list[Flashcard], *, generator: str, generator_version: str, run_at: datetime) -> list[dict]:
    """The ``gold/flashcards`` rows of a document version's cards."""
    return [
        {
            "card_id": card.card_id,
            **_key(card, generator=generator, generator_version=generator_version, run_at=run_at),
            "front": card.front,
            "back": card.back,
            "page": card.page,
            "source": card.source,
        }
        for card in cards
    ]


# ---------------------------------------------------------------------------- delta-rs I/O


def _key_predicate(document_id: str, version: int, generator_version: str) -> str:
    # Values are validated, never quoted from raw input: the predicate is SQL text for delta-rs.
    document_id = str(uuid.UUID(document_id))
    if not _SAFE_VERSION.match(generator_version):
        raise ValueError(f"generator_version {generator_version!r} must match {_SAFE_VERSION.pattern}")
    return f"document_id = '{document_id}' AND version = {int(version)} AND generator_version = '{generator_version}'"


def replace_rows(
    settings: Settings,
    name: str,
    rows: list[dict[str, Any]],
    *,
    document_id: str,
    version: int,
    generator_version: str,
) -> int:
    """Replaces the rows of one (document version, generator version) in gold table ``name``
    with ``rows`` in one commit; creates the table on first use. Returns the rows written."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import TableNotFoundError

    schema = GOLD_SCHEMAS[name]
    if any(row["document_id"] != document_id or row["version"] != version for row in rows):
        raise ValueError(f"every row written to {name} must belong to document {document_id} v{version}")
    data = pa.Table.from_pylist(rows, schema=schema)
    path, options = delta_location(settings, name)
    try:
        DeltaTable(path, storage_options=options)
    except TableNotFoundError:
        write_deltalake(path, data.slice(0, 0), mode="append", storage_options=options)
    predicate = _key_predicate(document_id, version, generator_version)
    write_deltalake(path, data, mode="overwrite", predicate=predicate, storage_options=options)
    crash_point("after_gold_write", name)  # test-only (core/faults.py)
    return data.num_rows


def read_rows(
    settings: Settings, name: str, *, document_id: str, version: int, generator_version: str | None = None
) -> list[dict[str, Any]]:
    """Rows of one document version (of one generator version, or all); [] when the table does
    not exist yet."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path, options = delta_location(settings, name)
    try:
        dataset = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    except TableNotFoundError:
        return []
    wanted = (pc.field("document_id") == str(uuid.UUID(document_id))) & (pc.field("version") == int(version))
    if generator_version is not None:
        wanted = wanted & (pc.field("generator_version") == generator_version)
    return dataset.to_table(filter=wanted).to_pylist()


def read_where(settings: Settings, name: str, **equals: str | int) -> list[dict[str, Any]]:
    """Rows of gold table ``name`` whose columns equal the given values (e.g. ``quiz_id=...``,
    ``course_id=...``); [] when the table does not exist yet."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    if not equals:
        raise ValueError("read_where needs at least one column to filter on")
    schema = GOLD_SCHEMAS[name]
    wanted = None
    for column, value in equals.items():
        if schema.get_field_index(column) < 0:
            raise ValueError(f"{name} has no column {column!r}")
        condition = pc.field(column) == value
        wanted = condition if wanted is None else wanted & condition
    path, options = delta_location(settings, name)
    try:
        dataset = DeltaTable(path, storage_options=options).to_pyarrow_dataset()
    except TableNotFoundError:
        return []
    return dataset.to_table(filter=wanted).to_pylist()


def latest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of the most recent run (ties: the higher generator version)."""
    return max(rows, key=lambda r: (r["run_at"], r["generator_version"]), default=None)


def read_document_text(settings: Settings, *, document_id: str, version: int) -> dict[str, list[dict[str, Any]]]:
    """The pages and current chunks of one indexed document version from silver, in order."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    key = (pc.field("document_id") == str(uuid.UUID(document_id))) & (pc.field("version") == int(version))
    pages_path, options = delta_location(settings, SILVER_PAGES)
    pages = (
        DeltaTable(pages_path, storage_options=options)
        .to_pyarrow_dataset()
        .to_table(columns=["page_number", "text"], filter=key)
        .sort_by("page_number")
        .to_pylist()
    )
    chunks_path, options = delta_location(settings, SILVER_CHUNKS)
    chunks = (
        DeltaTable(chunks_path, storage_options=options)
        .to_pyarrow_dataset()
        .to_table(columns=["chunk_id", "chunk_index", "page_start", "page_end", "text"], filter=key)
        .sort_by("chunk_index")
        .to_pylist()
    )
    return {"pages": pages, "chunks": chunks}


def as_json(value: Any) -> str:
    """Compact, key-sorted JSON: the same artifact always serialises to the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_time(value: datetime) -> datetime:
    """A timezone-aware run time (the DAG's logical date); a naive one is refused."""
    if value.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    return value
