"""Spaced repetition with FSRS (the ``fsrs`` package): one review moves a card's state and due time.

The state is FSRS's own JSON (stability, difficulty, step, due...), stored per student and card
by ``records.study``; a card never reviewed has no state and is due now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

Rating = Literal["again", "hard", "good", "easy"]
RATING_VALUES: dict[str, int] = {"again": 1, "hard": 2, "good": 3, "easy": 4}


def review(state: dict[str, Any] | None, rating: Rating, *, at: datetime) -> tuple[dict[str, Any], datetime]:
    """The card's state after a review rated ``rating`` at ``at`` (timezone-aware), and its new due time."""
    import fsrs

    if at.tzinfo is None:
        raise ValueError("review time must be timezone-aware")
    card = fsrs.Card.from_dict(state) if state else fsrs.Card(card_id=0, due=at)  # type: ignore[arg-type]
    updated, _log = fsrs.Scheduler().review_card(card, fsrs.Rating(RATING_VALUES[rating]), review_datetime=at)
    return dict(updated.to_dict()), updated.due


def due(state: dict[str, Any] | None) -> datetime | None:
    """When a card with this state is next due (None: never reviewed, so due now)."""
    if not state:
        return None
    return datetime.fromisoformat(state["due"])
