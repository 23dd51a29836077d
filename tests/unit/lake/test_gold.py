"""Gold tables with delta-rs: a rerun replaces exactly its own rows, nothing else moves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from lake import gold


def _card(document_id: str, version: int, n: int, generator_version: str = "offline-1") -> dict:
    return {
        "card_id": f"{document_id}-{version}-{n}",
        "document_id": document_id,
        "version": version,
        "course_id": "c",
        "generator": "offline",
        "generator_version": generator_version,
        "run_at": datetime(2026, 12, 1, tzinfo=UTC),
        "front": f"term {n}",
        "back": f"definition {n}",
        "page": n + 1,
        "source": "key_term",
    }


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(environment="test", lake={"root": str(tmp_path / "lake")})


def test_a_rerun_replaces_only_its_own_rows(settings):
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    write = gold.replace_rows
    write(settings, gold.GOLD_FLASHCARDS, [_card(one, 1, n) for n in range(3)], document_id=one, version=1,
          generator_version="offline-1")  # fmt: skip
    write(settings, gold.GOLD_FLASHCARDS, [_card(two, 1, n) for n in range(2)], document_id=two, version=1,
          generator_version="offline-1")  # fmt: skip
    # the same document again, now with 4 cards: its 3 rows are replaced, the other document's stay
    write(settings, gold.GOLD_FLASHCARDS, [_card(one, 1, n) for n in range(4)], document_id=one, version=1,
          generator_version="offline-1")  # fmt: skip
    write(settings, gold.GOLD_FLASHCARDS, [_card(one, 1, n) for n in range(4)], document_id=one, version=1,
          generator_version="offline-1")  # fmt: skip
    mine = gold.read_rows(settings, gold.GOLD_FLASHCARDS, document_id=one, version=1)
    theirs = gold.read_rows(settings, gold.GOLD_FLASHCARDS, document_id=two, version=1)
    assert sorted(r["card_id"] for r in mine) == sorted(f"{one}-1-{n}" for n in range(4))
    assert len(theirs) == 2


def test_rows_of_another_document_and_unsafe_keys_are_refused(settings):
    one = str(uuid.uuid4())
    with pytest.raises(ValueError, match="must belong"):
        gold.replace_rows(settings, gold.GOLD_FLASHCARDS, [_card(str(uuid.uuid4()), 1, 0)], document_id=one,
                          version=1, generator_version="offline-1")  # fmt: skip
    with pytest.raises(ValueError, match="generator_version"):
        gold.replace_rows(settings, gold.GOLD_FLASHCARDS, [_card(one, 1, 0, "x' OR '1'='1")], document_id=one,
                          version=1, generator_version="x' OR '1'='1")  # fmt: skip
    with pytest.raises(ValueError):
        gold.read_rows(settings, gold.GOLD_FLASHCARDS, document_id="1 OR 1=1", version=1)


def test_reading_a_table_that_does_not_exist_yet_is_empty(settings):
    assert gold.read_rows(settings, gold.GOLD_NOTES, document_id=str(uuid.uuid4()), version=1) == []
