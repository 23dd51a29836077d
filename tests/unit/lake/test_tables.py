"""Delta write helpers that need no Spark session."""

from __future__ import annotations

import pytest
from delta.exceptions import ConcurrentAppendException, ConcurrentDeleteReadException

from lake.tables import retry_on_conflict


def test_retry_on_conflict_runs_a_keyed_write_again_until_it_commits():
    attempts = []

    def write():
        attempts.append(1)
        if len(attempts) < 3:
            raise (ConcurrentAppendException if len(attempts) == 1 else ConcurrentDeleteReadException)("lost race")
        return "committed"

    assert retry_on_conflict(write, what="test", backoff_s=0) == "committed"
    assert len(attempts) == 3


def test_retry_on_conflict_gives_up_after_its_attempts():
    attempts = []

    def write():
        attempts.append(1)
        raise ConcurrentAppendException("always loses")

    with pytest.raises(ConcurrentAppendException):
        retry_on_conflict(write, what="test", attempts=4, backoff_s=0)
    assert len(attempts) == 4


def test_retry_on_conflict_does_not_retry_other_errors():
    attempts = []

    def write():
        attempts.append(1)
        raise ValueError("bad schema")

    with pytest.raises(ValueError, match="bad schema"):
        retry_on_conflict(write, what="test", backoff_s=0)
    assert len(attempts) == 1
