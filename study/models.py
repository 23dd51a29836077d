"""The data contract of study material: what generation reads and what the gold tables hold.

Ids are stable (uuid5 of the document version, the generator version and the item's own key),
so a rerun of the same generator on the same document version writes the same rows.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STUDY_NAMESPACE = uuid.UUID("6b2f7c1e-3a57-4d0e-9f3b-2c9d51a8e7a4")


def stable_id(*parts: object) -> str:
    """A deterministic id from its parts (document, version, generator version, key ...)."""
    return str(uuid.uuid5(STUDY_NAMESPACE, "\x1f".join(str(p) for p in parts)))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- input: one indexed document version, read from silver/pages and silver/chunks
class PageText(_Model):
    number: int = Field(ge=1)
    text: str


class ChunkText(_Model):
    chunk_id: str
    page_start: int = Field(ge=1)
    page_end: int = Field(ge=1)
    text: str


class DocumentText(_Model):
    document_id: str
    version: int = Field(ge=1)
    course_id: str
    title: str = ""
    pages: list[PageText]
    chunks: list[ChunkText]
    outline: list[tuple[str, int]] = Field(
        default_factory=list, description="(title, first page) of the PDF's outline entries, when it has one"
    )


# ---- notes
class CitedSentence(_Model):
    text: str
    pages: list[int] = Field(min_length=1, description="Pages the sentence comes from")


class Section(_Model):
    section_id: str
    title: str
    page_start: int
    page_end: int


class SectionNote(_Model):
    section: Section
    sentences: list[CitedSentence]


class KeyTerm(_Model):
    term: str
    definition: CitedSentence


class NotesQuality(_Model):
    citation_precision: float = Field(ge=0, le=1, description="Share of note words found on their cited pages")
    section_coverage: float = Field(ge=0, le=1, description="Share of sections with at least one note")
    sections: int
    sections_covered: int
    flagged: bool
    reasons: list[str] = Field(default_factory=list)


class Notes(_Model):
    notes_id: str
    document_id: str
    version: int
    course_id: str
    generator: str
    generator_version: str
    sections: list[SectionNote]
    overview: list[CitedSentence]
    key_terms: list[KeyTerm]
    quality: NotesQuality


# ---- quizzes
class QuizOption(_Model):
    option_id: str
    text: str


class QuizItem(_Model):
    item_id: str
    kind: Literal["mcq", "cloze"]
    question: str
    options: list[QuizOption] = Field(min_length=4, max_length=4)
    correct_option_id: str
    explanation: str
    source_chunk_id: str
    page: int
    section_id: str
    difficulty: Literal["easy", "medium", "hard"]
    fact: str = Field(description="Normalised statement of the fact tested: no two items share one")


class QuizQuality(_Model):
    answerability: float = Field(
        ge=0,
        le=1,
        description="Share of items whose key is in its source chunk, found by full-text search from the question",
    )
    duplicate_rate: float = Field(ge=0, le=1)
    distractor_similarity_min: float
    distractor_similarity_max: float
    items: int
    flagged: bool
    reasons: list[str] = Field(default_factory=list)


class Quiz(_Model):
    quiz_id: str
    document_id: str
    version: int
    course_id: str
    generator: str
    generator_version: str
    items: list[QuizItem]
    quality: QuizQuality


# ---- flashcards
class Flashcard(_Model):
    card_id: str
    document_id: str
    version: int
    course_id: str
    front: str
    back: str
    page: int
    source: Literal["key_term", "cloze"]
