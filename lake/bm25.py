"""BM25 over one course's chunks in memory (pure: tokens in, ranked rows out).

Scored the way LanceDB's full-text index scores (Okapi BM25, k1 = 1.2, b = 0.75,
idf = ln(1 + (N - n + 0.5) / (n + 0.5)), a query's terms OR-ed, a repeated term counted again), on
tokens from the index's own tokenizer (``LanceTable.tokenize``: stemmed, stop words removed), but
with the course's statistics (N, n and the mean length over the course's live chunks) instead of
the whole table's: a term common in other courses is not discounted in this one.

Rows are only ever appended; a replaced or deleted row is masked out by the caller's ``alive``
array, which also keeps it out of the statistics.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

K1 = 1.2
B = 0.75


class Postings:
    """Term -> (rows, term frequencies) of appended token lists, and each row's length."""

    def __init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._frequencies: dict[str, list[int]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # built on first use per term
        self._lengths: list[int] = []
        self._length_array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._lengths)

    def append(self, tokens: list[str]) -> int:
        """Adds a row of ``tokens``; its row number."""
        row = len(self._lengths)
        for term, count in Counter(tokens).items():
            self._rows.setdefault(term, []).append(row)
            self._frequencies.setdefault(term, []).append(count)
            self._arrays.pop(term, None)
        self._lengths.append(len(tokens))
        self._length_array = None
        return row

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        # Lists only grow (another thread may append while this one reads): an array built from a
        # shorter list than the current one is stale.
        rows_list, frequency_list = self._rows.get(term, []), self._frequencies.get(term, [])
        found = self._arrays.get(term)
        if found is None or len(found[0]) != len(rows_list):
            count = min(len(rows_list), len(frequency_list))  # an append may be between the two lists
            rows = np.asarray(rows_list[:count], dtype=np.int64)
            frequencies = np.asarray(frequency_list[:count], dtype=np.float32)
            found = self._arrays[term] = (rows, frequencies)
        return found

    def lengths(self) -> np.ndarray:
        if self._length_array is None or len(self._length_array) != len(self._lengths):
            self._length_array = np.asarray(self._lengths, dtype=np.float32)
        return self._length_array

    def search(self, terms: list[str], alive: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """The ``limit`` best live rows for the query ``terms`` as (row, score), best first; rows
        matching no term are not returned. Equal scores keep row order."""
        rows_known = len(alive)  # a caller may know fewer rows than were appended since
        lengths = self.lengths()[:rows_known]
        live_rows = int(alive.sum())
        if not terms or not live_rows or limit <= 0:
            return []
        mean_length = float(lengths[alive].mean()) or 1.0
        scores = np.zeros(rows_known, dtype=np.float32)
        for term in terms:  # a term the query repeats counts each time, as in LanceDB
            rows, frequencies = self._postings(term)
            known = int(np.searchsorted(rows, rows_known))  # rows ascend: appended in order
            rows, frequencies = rows[:known], frequencies[:known]
            if not len(rows):
                continue
            keep = alive[rows]
            rows, frequencies = rows[keep], frequencies[keep]
            if not len(rows):
                continue
            idf = math.log(1.0 + (live_rows - len(rows) + 0.5) / (len(rows) + 0.5))
            norm = K1 * (1.0 - B + B * lengths[rows] / mean_length)
            scores[rows] += idf * frequencies * (K1 + 1.0) / (frequencies + norm)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > limit:
            matched = matched[np.argpartition(-scores[matched], limit - 1)[:limit]]
        ranked = matched[np.lexsort((matched, -scores[matched]))]
        return [(int(row), float(scores[row])) for row in ranked]
