"""Which rows hold a word: the verbatim side's prefilter (pure; append-only, like ``lake.bm25``'s
postings, and shared the same way between a course's successive cache entries).

A phrase found verbatim in a chunk's normalised text holds each of its inner words whole: in the
phrase they sit between two spaces, and the text's words are separated by single spaces. So only
the rows that hold every inner word can match, and the verbatim side looks into those few rows
instead of scanning the course's whole text (on 13,528 chunks the scan took 1.4-2.1 ms p50 and
2.4-4.9 ms p95, holding the GIL throughout: ``bench/search_api.py``). The first and last words
of the phrase may be cut (the scan finds "ample text" in "example text"), so they are not used.
"""

from __future__ import annotations

import numpy as np

_EMPTY = np.zeros(0, dtype=np.int64)


class WordRows:
    """Word -> the ascending rows whose normalised text holds it."""

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._arrays: dict[str, np.ndarray] = {}  # built on first use per word
        self._count = 0
        self._pairs = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """About what the index holds: a list slot per (word, row), a list per word, and the
        arrays built for the words searched."""
        return 8 * self._pairs + 120 * len(self._rows) + sum(a.nbytes for a in list(self._arrays.values()))

    def append(self, normalized: str) -> int:
        """Adds a row of normalised text (lower-case words separated by single spaces); its row."""
        row = self._count
        words = set(normalized.split(" "))
        words.discard("")
        for word in words:
            self._rows.setdefault(word, []).append(row)
        self._pairs += len(words)
        self._count += 1
        return row

    def _array(self, word: str) -> np.ndarray:
        # Lists only grow (a refresh may append while a search reads): an array built from a
        # shorter list than the current one is stale.
        rows = self._rows.get(word)
        if rows is None:
            return _EMPTY
        found = self._arrays.get(word)
        if found is None or len(found) != len(rows):
            found = self._arrays[word] = np.asarray(rows, dtype=np.int64)
        return found

    def rows_with_all(self, words: list[str], rows_known: int) -> np.ndarray:
        """The rows below ``rows_known`` holding every one of ``words``, ascending."""
        arrays = sorted((self._array(word) for word in set(words)), key=len)
        if not arrays:
            return _EMPTY
        result = arrays[0][: int(np.searchsorted(arrays[0], rows_known))]
        for rows in arrays[1:]:
            if not len(result):
                break
            at = np.searchsorted(rows, result)
            inside = at < len(rows)
            result = result[inside][rows[at[inside]] == result[inside]]
        return result
