"""Pages done and ETA per document while its chunks are embedded.

A page is done once none of the chunks covering it still waits for its vector. Embedding runs
in groups of chunks (one Spark task each); as groups complete, ``complete`` answers the
progress updates to report: pages done only ever grows, and a report is sent at most every
``min_interval_s`` per document, except the final one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkGroup:
    """Chunks ``begin`` .. ``begin + size - 1`` of document ``index``, embedded together."""

    group_id: int
    index: int
    begin: int


@dataclass(frozen=True)
class ProgressUpdate:
    index: int
    pages_done: int
    pages_total: int
    eta_s: float | None


def chunk_groups(chunk_counts: Sequence[int], per_task: int) -> list[ChunkGroup]:
    """Groups of at most ``per_task`` chunks, numbered in document order."""
    groups: list[ChunkGroup] = []
    for index, count in enumerate(chunk_counts):
        for begin in range(0, count, per_task):
            groups.append(ChunkGroup(len(groups), index, begin))
    return groups


class ProgressTracker:
    """Pages done per document = pages none of whose chunks is still waiting for its vector.

    ``spans[i]`` holds document ``i``'s chunks' page spans (first, last page), in chunk order.
    """

    def __init__(
        self,
        *,
        pages_totals: Sequence[int],
        spans: Sequence[Sequence[tuple[int, int]]],
        groups: Sequence[ChunkGroup],
        per_task: int,
        started: Sequence[float],
        clock: Callable[[], float] = time.perf_counter,
        min_interval_s: float = 0.5,
    ) -> None:
        self.pages_totals = list(pages_totals)
        self.started = list(started)
        self.clock = clock
        self.min_interval_s = min_interval_s
        self._pending: dict[int, tuple[int, frozenset[int]]] = {}
        for group in groups:
            pages: set[int] = set()
            for first, last in spans[group.index][group.begin : group.begin + per_task]:
                pages.update(range(first, last + 1))
            self._pending[group.group_id] = (group.index, frozenset(pages))
        self._reported = [0] * len(self.pages_totals)
        self._last_report = [float("-inf")] * len(self.pages_totals)

    def pages_done(self) -> list[int]:
        """Pages done per document, from the groups still pending."""
        waiting: list[set[int]] = [set() for _ in self.pages_totals]
        for index, pages in self._pending.values():
            waiting[index] |= pages
        return [total - len(waiting[i]) for i, total in enumerate(self.pages_totals)]

    def complete(self, group_ids: Iterable[int]) -> list[ProgressUpdate]:
        """Marks groups as embedded; the updates worth reporting now."""
        for group_id in group_ids:
            self._pending.pop(group_id, None)
        now = self.clock()
        updates = []
        for index, done in enumerate(self.pages_done()):
            total = self.pages_totals[index]
            if done <= self._reported[index]:
                continue
            if done < total and now - self._last_report[index] < self.min_interval_s:
                continue
            elapsed = now - self.started[index]
            eta = (total - done) * elapsed / done if done else None
            self._reported[index], self._last_report[index] = done, now
            updates.append(ProgressUpdate(index, done, total, eta))
        return updates
