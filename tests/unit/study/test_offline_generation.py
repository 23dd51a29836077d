"""The offline path end to end on the generated demo book: notes, quiz, flashcards, quality."""

from __future__ import annotations

import pytest

from study.cards import flashcards
from study.generators import OfflineGenerator, StudyGenerator
from study.models import DocumentText, Notes, Quiz
from study.notes import generate_notes
from study.quality import QualityThresholds, citation_precision, correct_text
from study.quiz import generate_quiz
from study.sections import split_sections
from study.text import contains_term, normalise, squash


@pytest.fixture(scope="module")
def book_notes(book: DocumentText, embedder) -> Notes:
    return generate_notes(book, generator=OfflineGenerator(embedder), section_pages=5)


@pytest.fixture(scope="module")
def book_quiz(book: DocumentText, book_notes: Notes, embedder) -> Quiz:
    return generate_quiz(book, book_notes, generator=OfflineGenerator(embedder), embedder=embedder, items=10)


def test_offline_generator_satisfies_the_protocol(embedder):
    assert isinstance(OfflineGenerator(embedder), StudyGenerator)


def test_generate_notes_covers_every_section(book: DocumentText, book_notes: Notes):
    expected = split_sections(book, section_pages=5)
    assert [note.section for note in book_notes.sections] == expected
    assert all(note.sentences for note in book_notes.sections)
    assert book_notes.quality.section_coverage == 1.0 and not book_notes.quality.flagged
    assert book_notes.overview and book_notes.key_terms


def test_generate_notes_cites_pages_that_hold_the_words(book: DocumentText, book_notes: Notes):
    texts = {page.number: page.text for page in book.pages}
    for note in book_notes.sections:
        for sentence in note.sentences:
            assert all(note.section.page_start <= p <= note.section.page_end for p in sentence.pages)
            assert citation_precision(sentence, texts) >= 0.95, sentence
    for key in book_notes.key_terms:
        assert contains_term(key.definition.text, key.term)
        assert citation_precision(key.definition, texts) >= 0.95
    assert book_notes.quality.citation_precision >= 0.95


def test_generate_notes_reports_progress_after_each_section(book: DocumentText, embedder):
    calls: list[tuple[int, int]] = []
    generate_notes(
        book, generator=OfflineGenerator(embedder), section_pages=8, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_generate_notes_and_quiz_are_deterministic(book: DocumentText, book_notes: Notes, book_quiz: Quiz, embedder):
    generator = OfflineGenerator(embedder)  # a fresh one: nothing cached from the first run
    notes = generate_notes(book, generator=generator, section_pages=5)
    assert notes == book_notes
    assert generate_quiz(book, notes, generator=generator, embedder=embedder, items=10) == book_quiz


def test_generate_quiz_gives_the_requested_items_answerable_from_their_chunks(book: DocumentText, book_quiz: Quiz):
    chunks = {chunk.chunk_id: chunk for chunk in book.chunks}
    assert len(book_quiz.items) == 10
    assert {item.kind for item in book_quiz.items} == {"mcq", "cloze"}
    for item in book_quiz.items:
        chunk = chunks[item.source_chunk_id]
        assert contains_term(squash(chunk.text), correct_text(item))
        assert chunk.page_start <= item.page <= chunk.page_end
    assert book_quiz.quality.answerability == 1.0 and book_quiz.quality.duplicate_rate == 0.0


def test_generate_quiz_options_are_valid_and_distractors_never_the_key(book_quiz: Quiz):
    positions = set()
    for item in book_quiz.items:
        ids = [option.option_id for option in item.options]
        assert len(set(ids)) == 4 and item.correct_option_id in ids
        key = normalise(correct_text(item))
        texts = [normalise(option.text) for option in item.options]
        assert texts.count(key) == 1 and len(set(texts)) == 4
        assert "_____" in item.question or item.kind == "mcq"
        assert not contains_term(item.question, correct_text(item))
        positions.add(ids.index(item.correct_option_id))
    assert len(positions) > 1  # the answer is not always in the same place


def test_generate_quiz_never_tests_one_fact_twice(book_quiz: Quiz):
    facts = [item.fact for item in book_quiz.items]
    assert len(set(facts)) == len(facts)
    assert len({item.item_id for item in book_quiz.items}) == len(facts)


def test_generate_quiz_keeps_distractors_in_the_similarity_band(book_quiz: Quiz):
    band = QualityThresholds()
    assert band.distractor_min_similarity <= book_quiz.quality.distractor_similarity_min
    assert book_quiz.quality.distractor_similarity_max <= band.distractor_max_similarity
    assert not book_quiz.quality.flagged, book_quiz.quality.reasons


def test_generate_quiz_skips_facts_search_cannot_find(book: DocumentText, book_notes: Notes, embedder):
    generator = OfflineGenerator(embedder)
    quiz = generate_quiz(book, book_notes, generator=generator, embedder=embedder, items=3, search=lambda q: [])
    assert quiz.items == [] and quiz.quality.flagged
    assert "only 0 of 3 items" in quiz.quality.reasons

    def exact(question: str) -> list[str]:
        # A full-text search stand-in that always ranks the chunk holding the visible words first.
        words = set(normalise(question.split(": ", 1)[-1].replace("_____", " ")).split())
        return sorted(book.chunks, key=lambda c: -len(words & set(normalise(c.text).split())))[0:5]

    found = generate_quiz(
        book,
        book_notes,
        generator=generator,
        embedder=embedder,
        items=3,
        search=lambda q: [c.chunk_id for c in exact(q)],
    )
    assert len(found.items) == 3 and found.quality.answerability == 1.0


def test_flashcards_from_key_terms_and_cloze_items(book_notes: Notes, book_quiz: Quiz):
    cards = flashcards(book_notes, book_quiz)
    cloze = [item for item in book_quiz.items if item.kind == "cloze"]
    assert len(cards) == len(book_notes.key_terms) + len(cloze)
    assert len({card.card_id for card in cards}) == len(cards)
    first = cards[0]
    assert first.source == "key_term" and first.front == book_notes.key_terms[0].term
    assert f"page {first.page}" in first.back
    assert cards[-1].source == "cloze" and "_____" in cards[-1].front
    assert flashcards(book_notes, book_quiz) == cards


def test_build_generator_defaults_to_the_offline_generator(embedder):
    from core.settings import LLMSettings
    from study.generators import build_generator

    generator = build_generator(LLMSettings(), embedder)
    assert isinstance(generator, OfflineGenerator) and generator.version == "offline-extractive-1"
    assert OfflineGenerator(embedder, max_terms=10).version != generator.version  # other output, other ids
