"""The offline path on a small hand-written course text with an outline, and the quality scores."""

from __future__ import annotations

import numpy as np
import pytest

from study.generators import OfflineGenerator
from study.models import CitedSentence, DocumentText, KeyTerm, SectionNote
from study.notes import generate_notes
from study.quality import QualityThresholds, citation_precision, duplicate_flags, notes_quality
from study.quiz import generate_quiz
from study.sections import split_sections
from study.text import normalise, squash, term_key
from tests.unit.study.course_text import PAGES, course_document


@pytest.fixture(scope="module")
def course() -> DocumentText:
    return course_document()


def test_generate_notes_uses_the_outline_and_cites_exact_pages(course: DocumentText, embedder):
    notes = generate_notes(course, generator=OfflineGenerator(embedder))
    assert [note.section.title for note in notes.sections] == ["Stream processing", "Kafka", "Lakehouse tables"]
    assert notes.quality.section_coverage == 1.0 and notes.quality.citation_precision == 1.0
    texts = {n: t for n, t in PAGES.items()}
    for note in notes.sections:
        for sentence in note.sentences:
            assert sentence.pages == [sentence.pages[0]] and sentence.text in squash(texts[sentence.pages[0]])
            assert not sentence.text.startswith(("Stream Processing Basics", "Kafka Logs", "Lakehouse Tables"))
    terms = {normalise(key.term) for key in notes.key_terms}
    assert {"partition", "watermark", "stream", "broker", "transaction log", "window"} <= terms
    assert "stores" not in terms and "lake" not in terms  # a verb; a fragment of "Delta Lake"
    assert len({term_key(key.term) for key in notes.key_terms}) == len(notes.key_terms)  # no plural twins


def test_generate_quiz_on_a_short_course_text_keeps_distractors_plausible(course: DocumentText, embedder):
    generator = OfflineGenerator(embedder)
    notes = generate_notes(course, generator=generator)
    quiz = generate_quiz(course, notes, generator=generator, embedder=embedder, items=4)
    assert len(quiz.items) == 4
    assert quiz.quality.answerability == 1.0 and quiz.quality.duplicate_rate == 0.0
    band = QualityThresholds()
    assert band.distractor_min_similarity <= quiz.quality.distractor_similarity_min
    assert quiz.quality.distractor_similarity_max <= band.distractor_max_similarity
    for item in quiz.items:
        key = next(o.text for o in item.options if o.option_id == item.correct_option_id)
        assert key.lower() in PAGES[item.page].lower()
        assert item.source_chunk_id == f"chunk-{item.page}"


def test_citation_precision_drops_for_a_wrong_page():
    sentence = CitedSentence(text="A partition is an ordered, append-only log of records.", pages=[3])
    assert citation_precision(sentence, PAGES) == 1.0
    wrong = CitedSentence(text=sentence.text, pages=[6])
    assert citation_precision(wrong, PAGES) < 0.5


def test_notes_quality_flags_low_precision_and_uncovered_sections(course: DocumentText):
    sections = split_sections(course, section_pages=2)
    invented = CitedSentence(text="Quantum teleportation replaces brokers entirely.", pages=[1])
    notes = [SectionNote(section=sections[0], sentences=[invented]), SectionNote(section=sections[1], sentences=[])]
    quality = notes_quality(course, notes, key_terms=[KeyTerm(term="broker", definition=invented)])
    assert quality.flagged and quality.sections_covered == 1 and quality.section_coverage == 0.5
    assert quality.citation_precision < 0.2
    assert any("citation precision" in r for r in quality.reasons) and any("coverage" in r for r in quality.reasons)


def test_duplicate_flags_catch_equal_and_near_equal_facts():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.999, 0.0447]], dtype=np.float32)
    assert duplicate_flags(["A b.", "a  B", "c"]) == [False, True, False]
    assert duplicate_flags(["x", "y", "z"], vectors, similarity=0.95) == [False, False, True]
