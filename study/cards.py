"""Flashcards: one per key term (term -> definition with its page) and one per cloze item
(sentence with a blank -> the missing term)."""

from __future__ import annotations

from study.models import Flashcard, Notes, Quiz, stable_id
from study.quality import correct_text
from study.text import normalise


def _pages(pages: list[int]) -> str:
    return f"page {pages[0]}" if len(pages) == 1 else f"pages {', '.join(map(str, pages))}"


def flashcards(notes: Notes, quiz: Quiz | None = None) -> list[Flashcard]:
    """Cards from the notes' key terms and the quiz's cloze items, with stable ids."""
    cards: list[Flashcard] = []
    seen: set[str] = set()
    common = {"document_id": notes.document_id, "version": notes.version, "course_id": notes.course_id}
    for key in notes.key_terms:
        card_id = stable_id(notes.notes_id, "card", "key_term", normalise(key.term))
        if card_id in seen:
            continue
        seen.add(card_id)
        cards.append(
            Flashcard(
                card_id=card_id,
                front=key.term,
                back=f"{key.definition.text} ({_pages(key.definition.pages)})",
                page=key.definition.pages[0],
                source="key_term",
                **common,
            )
        )
    for item in quiz.items if quiz else []:
        if item.kind != "cloze":
            continue
        card_id = stable_id(notes.notes_id, "card", "cloze", item.item_id)
        if card_id in seen:
            continue
        seen.add(card_id)
        cards.append(
            Flashcard(
                card_id=card_id,
                front=item.question,
                back=f"{correct_text(item)} (page {item.page})",
                page=item.page,
                source="cloze",
                **common,
            )
        )
    return cards
