"""Hot courses in memory: a searching process keeps the chunks of the courses it searches (ids,
pages, text and normalised vectors) so that the vector side of a search is one matrix product and
the verbatim side one string scan, instead of two LanceDB queries and a row fetch.

Why: on a 13,500-chunk course the LanceDB vector query took 9-17 ms, the phrase query 3-6 ms and
the take of the fused rows ~4 ms; the matrix product over the same rows takes under 1 ms
(bench/search_api.py). The full-text (BM25) side stays in LanceDB's index.

Kept current without any signal from the writers. LanceDB row ids are physical addresses
(``fragment << 32 | offset``), and every write (insert, upsert, compaction) puts its rows into
fragments newer than any that existed before it. An entry remembers the table version it saw and
the first address above its rows; when the table's version moves on, the course's rows at or above
that address are read (the rows written since: new chunks, re-embedded chunks, compacted copies)
and merged by ``chunk_id``, then the course's row count is compared with the merged rows: a
difference means rows were deleted (a replaced document version, a removed document), and the
entry is loaded whole again. So a search sees exactly what LanceDB's own query would at that table
version, at a cost of two small queries per version change per course.

Bounded: an LRU over a byte budget (``lancedb.course_cache_mb``); a course larger than
``lancedb.course_cache_max_rows`` is not cached (searched in LanceDB as before).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import pyarrow as pa

from lake.vectors import EMBEDDED_COLUMN, TEXT_COLUMN, VECTOR_COLUMN, quote

CACHED_COLUMNS = ["chunk_id", "document_id", "version", "course_id", "page_start", "page_end", TEXT_COLUMN]
_WORD = re.compile(r"[^\W_]+")  # str.isalnum() runs: re's \w is isalnum() or "_"
_SEPARATOR = "\n"  # never inside normalised text, so no match spans two chunks
FRAGMENT_BITS = 32


def normalized_words(text: str) -> str:
    """Lower-case words separated by single spaces: punctuation and case aside."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class CourseRows:
    """One course's chunks at one table version, in load order."""

    table_version: int
    watermark: int  # the first row address above every row read: rows written later are at or above it
    columns: dict[str, list[Any]]  # CACHED_COLUMNS + "_rowid", one list each (row access is a list index)
    vectors: np.ndarray  # (n, dim) float32, unit length
    embedded: np.ndarray  # (n,) bool: False while a chunk has its placeholder vector
    normalized: list[str]  # normalized_words(text) per row
    haystack: str  # normalized texts joined by _SEPARATOR
    starts: list[int]  # where each row's text starts in haystack
    position: dict[str, int]  # chunk_id -> row

    @classmethod
    def build(cls, columns: dict[str, list[Any]], vectors: np.ndarray, embedded: np.ndarray,
              normalized: list[str], table_version: int, watermark: int) -> CourseRows:  # fmt: skip
        starts = list(accumulate((len(n) + 1 for n in normalized[:-1]), initial=0)) if normalized else []
        return cls(table_version, watermark, columns, vectors, embedded, normalized, _SEPARATOR.join(normalized),
                   starts, {chunk_id: i for i, chunk_id in enumerate(columns["chunk_id"])})  # fmt: skip

    @property
    def nbytes(self) -> int:
        """About what the entry holds: vectors, text twice (as read and normalised), ids and pages."""
        return int(self.vectors.nbytes + 2 * len(self.haystack) + 400 * len(self.position))

    def __len__(self) -> int:
        return len(self.position)

    def nearest(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` embedded chunks nearest to ``vector`` by cosine, nearest first, shaped like
        LanceDB's vector rows (``chunk_id``, ``_rowid``, ``_distance``) plus the result columns."""
        limit = min(limit, int(self.embedded.sum()))
        if limit <= 0:
            return []
        norm = float(np.linalg.norm(vector)) or 1.0
        similarity = self.vectors @ (np.asarray(vector, dtype=np.float32) / norm)
        similarity[~self.embedded] = -np.inf
        top = np.argpartition(-similarity, limit - 1)[:limit] if limit < len(similarity) else np.arange(len(similarity))
        top = top[np.lexsort((top, -similarity[top]))]  # best first; ties by load order, deterministic
        return [self.row(int(i), _distance=float(1.0 - similarity[i])) for i in top]

    def verbatim(self, wanted: str, limit: int) -> list[dict[str, Any]]:
        """The chunks whose normalised text contains ``wanted`` (already normalised), in load order."""
        found: list[int] = []
        at = self.haystack.find(wanted) if wanted else -1
        while at >= 0 and len(found) < limit:
            row = bisect.bisect_right(self.starts, at) - 1
            found.append(row)
            at = self.haystack.find(wanted, self.starts[row + 1]) if row + 1 < len(self.starts) else -1
        return [self.row(i) for i in found]

    def row(self, i: int, **extra: Any) -> dict[str, Any]:
        """Row ``i`` with its result columns (what the fusion and the hit need)."""
        out = {name: values[i] for name, values in self.columns.items()}
        out.update(extra)
        return out

    def fill(self, row: dict[str, Any]) -> bool:
        """Adds the result columns to an id-only row of this course; False if the chunk is unknown."""
        i = self.position.get(row["chunk_id"])
        if i is None:
            return False
        for name in CACHED_COLUMNS:
            row.setdefault(name, self.columns[name][i])
        return True


class CourseCache:
    """Courses' rows by (table, course), least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int, max_course_rows: int) -> None:
        self.max_bytes = max_bytes
        self.max_course_rows = max_course_rows
        self._entries: OrderedDict[tuple[str, str], CourseRows] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._tables: dict[str, Any] = {}
        self.loads = self.refreshes = 0  # full loads and incremental refreshes (tests, metrics)

    def table(self, name: str, opener: Callable[[], Any]) -> Any:
        """The open handle of table ``name`` (opened by ``opener`` once): a kept handle follows
        other processes' writes within the connection's ``read_consistency_s``, and opening one
        per search cost ~1-2 ms."""
        found = self._tables.get(name)
        if found is None:
            found = self._tables[name] = opener()
        return found

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def get(self, table: Any, course_id: str) -> CourseRows | None:
        """The course's rows at the table's current version, or None when it is not cached
        (disabled, or the course is larger than ``max_course_rows``)."""
        if self.max_bytes <= 0:
            return None
        key = (str(getattr(table, "name", "")), course_id)
        version = int(table.version)
        entry = self._entries.get(key)
        if entry is not None and entry.table_version == version:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per course at a time; the others wait for it and use its result
            entry = self._entries.get(key)
            if entry is not None and entry.table_version == version:
                return entry
            where = f"course_id = {quote(course_id)}"
            fresh = _refreshed(table, where, entry, version) if entry is not None else None
            if fresh is not None:
                self.refreshes += 1
            else:
                fresh = _load(table, where, version, self.max_course_rows)
                self.loads += 1
            with self._lock:
                self._entries.pop(key, None)
                if fresh is not None and fresh.nbytes <= self.max_bytes:
                    self._entries[key] = fresh
                    self._evict()
            return fresh

    def _evict(self) -> None:
        total = self.nbytes
        while total > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes


def _read(table: Any, where: str, limit: int | None) -> pa.Table:
    query = table.search().where(where, prefilter=True).with_row_id(True)
    return query.select([*CACHED_COLUMNS, VECTOR_COLUMN, EMBEDDED_COLUMN]).limit(limit).to_arrow()


def _split(read: pa.Table) -> tuple[dict[str, list[Any]], np.ndarray, np.ndarray, list[str]]:
    """Arrow rows -> (cached columns as lists, unit vectors, embedded mask, normalised texts)."""
    flat = np.asarray(read.column(VECTOR_COLUMN).combine_chunks().flatten(), dtype=np.float32)
    vectors = flat.reshape(read.num_rows, -1) if read.num_rows else np.zeros((0, 1), np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    embedded = np.asarray(read.column(EMBEDDED_COLUMN).to_numpy(zero_copy_only=False), dtype=bool)
    columns = {name: read.column(name).to_pylist() for name in (*CACHED_COLUMNS, "_rowid")}
    normalized = [normalized_words(text) for text in columns[TEXT_COLUMN]]
    return columns, vectors, embedded, normalized


def _watermark(row_ids: list[int], previous: int = 0) -> int:
    if not row_ids:
        return previous
    return max(previous, ((max(row_ids) >> FRAGMENT_BITS) + 1) << FRAGMENT_BITS)


def _load(table: Any, where: str, version: int, max_rows: int) -> CourseRows | None:
    read = _read(table, where, max_rows + 1)
    if read.num_rows > max_rows:
        return None
    columns, vectors, embedded, normalized = _split(read)
    return CourseRows.build(columns, vectors, embedded, normalized, version, _watermark(columns["_rowid"]))


def _refreshed(table: Any, where: str, entry: CourseRows, version: int) -> CourseRows | None:
    """``entry`` brought to ``version`` by the rows written since (merged by chunk id), or None
    when rows were deleted since (the caller loads the course whole)."""
    new = _read(table, f"{where} AND _rowid >= {entry.watermark}", None)
    columns, vectors, embedded, normalized = _split(new)
    fresh = set(columns["chunk_id"])
    keep = np.array([chunk_id not in fresh for chunk_id in entry.columns["chunk_id"]], dtype=bool)
    if int(table.count_rows(where)) != int(keep.sum()) + new.num_rows:
        return None  # rows deleted since the entry was read
    if not new.num_rows:
        return CourseRows.build(entry.columns, entry.vectors, entry.embedded, entry.normalized, version,
                                entry.watermark)  # fmt: skip
    kept = np.flatnonzero(keep).tolist()
    merged = {name: [values[i] for i in kept] + columns[name] for name, values in entry.columns.items()}
    return CourseRows.build(
        merged,
        np.concatenate([entry.vectors[keep], vectors]) if len(entry) else vectors,
        np.concatenate([entry.embedded[keep], embedded]),
        [entry.normalized[i] for i in kept] + normalized,
        version,
        _watermark(columns["_rowid"], entry.watermark),
    )
