"""An Anki deck (``.apkg``) of a course's flashcards, built with ``genanki``.

Model and deck ids are derived from stable ids, and each note's guid from the card id, so a
re-export updates the same notes in a student's Anki collection instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

_MODEL_NAME = "Lakehouse for Learning card"


def _id(text: str) -> int:
    # Anki ids are 31-bit-safe positive integers; derived, so they are the same on every export.
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16) + (1 << 30)


def deck_bytes(*, course_id: str, title: str, cards: list[dict[str, Any]]) -> bytes:
    """The ``.apkg`` bytes of ``cards`` (dicts with card_id, front, back, page)."""
    import genanki

    model = genanki.Model(
        _id("model:" + _MODEL_NAME),
        _MODEL_NAME,
        fields=[{"name": "Front"}, {"name": "Back"}, {"name": "Page"}],
        templates=[
            {
                "name": "Card",
                "qfmt": "{{Front}}",
                "afmt": '{{FrontSide}}<hr id="answer">{{Back}}<br><small>page {{Page}}</small>',
            }
        ],
    )
    deck = genanki.Deck(_id("deck:" + course_id), title or "Course")
    for card in cards:
        deck.add_note(
            genanki.Note(
                model=model,
                fields=[card["front"], card["back"], str(card["page"])],
                guid=genanki.guid_for(card["card_id"]),
            )
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deck.apkg"
        genanki.Package(deck).write_to_file(str(path), timestamp=0)
        return path.read_bytes()
