"""Hot courses in memory: a searching process keeps the chunks of the courses it searches (ids,
pages, text, normalised vectors and the full-text postings) so that a search is a matrix product,
a BM25 over the course's postings and a verbatim check of the few rows holding the phrase's inner
words (``lake.word_rows``), instead of three LanceDB queries and a row fetch.

Why: on a 13,500-chunk course the LanceDB vector query took 9-17 ms, its BM25 query 5-7 ms, the
phrase query 3-6 ms and the take of the fused rows ~4 ms; from memory the same sides take ~1.5,
~1 and ~1.3 ms (bench/search_api.py), the verbatim side 0.06 ms with the word index. The BM25
uses the index's own tokenizer (``LanceTable.tokenize``) and LanceDB's scoring, with the course's
statistics (``lake.bm25``).

Kept current without any signal from the writers. LanceDB row ids are physical addresses
(``fragment << 32 | offset``), and every write (insert, upsert, compaction) puts its rows into
fragments newer than any that existed before it. An entry remembers the table version it saw and
the first address above its rows; when the table's version moves on, the course's rows at or above
that address are read (new chunks, re-embedded chunks, compacted copies) and appended, the older
row of a chunk id masked out; then the course's row count is compared with the live rows: a
difference means rows were deleted (a replaced document version, a removed document) and the entry
is read whole again, as it is when half its rows are masked.

Never in a search's way: a course not cached yet, or whose table has moved on, is loaded or
refreshed on a background thread while searches carry on (LanceDB's own queries for a course not
cached; the entry of the previous table version meanwhile, so a search lags the table by the
refresh, milliseconds for a batch of new rows). Bounded: an LRU over a byte budget
(``lancedb.course_cache_mb``); a course larger than ``lancedb.course_cache_max_rows`` is not cached.
"""

from __future__ import annotations

import bisect
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import numpy as np
import pyarrow as pa

from core.settings import LanceDBSettings
from lake.bm25 import Postings
from lake.vectors import EMBEDDED_COLUMN, TEXT_COLUMN, VECTOR_COLUMN, quote
from lake.word_rows import WordRows

log = logging.getLogger("lake.course_cache")

CACHED_COLUMNS = ["chunk_id", "document_id", "version", "course_id", "page_start", "page_end", TEXT_COLUMN]
_WORD = re.compile(r"[^\W_]+")  # str.isalnum() runs: re's \w is isalnum() or "_"
_SEPARATOR = "\n"  # never inside normalised text, so no match spans two chunks
_ROW_BREAK = "qqzrowbreakzqq"  # a token the index's tokenizer keeps as it is, between rows tokenized at once
FRAGMENT_BITS = 32
TOKENIZE_BATCH = 500
LOAD_DELAY_S = 0.05


def normalized_words(text: str) -> str:
    """Lower-case words separated by single spaces: punctuation and case aside."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass
class CourseRows:
    """One course's chunks at one table version. Rows are appended; ``alive`` masks the rows
    replaced or deleted since they were read."""

    table_version: int
    watermark: int  # the first row address above every row read: rows written later are at or above it
    columns: dict[str, list[Any]]  # CACHED_COLUMNS + "_rowid", one list each (row access is a list index)
    vectors: np.ndarray  # (n, dim) float32, unit length
    searchable: np.ndarray  # (n,) bool: alive and embedded (a text-first chunk has a placeholder vector)
    alive: np.ndarray  # (n,) bool
    haystack: str  # normalised texts joined by _SEPARATOR
    starts: list[int]  # where each row's text starts in haystack
    position: dict[str, int]  # chunk_id -> its live row
    postings: Postings | None  # None: the table has no full-text index to tokenize with
    words: WordRows  # normalised word -> rows: the verbatim side's prefilter
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.alive)

    @property
    def nbytes(self) -> int:
        """About what the entry holds: vectors, text twice (as read and normalised), postings, ids,
        the word index."""
        return int(self.vectors.nbytes + 2 * len(self.haystack) + 700 * self.rows + self.words.nbytes)

    def __len__(self) -> int:
        return len(self.position)

    def nearest(self, vector: np.ndarray, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` embedded chunks nearest to ``vector`` by cosine, nearest first, shaped like
        LanceDB's vector rows (``chunk_id``, ``_rowid``, ``_distance``) plus the result columns."""
        limit = min(limit, int(self.searchable.sum()))
        if limit <= 0:
            return []
        norm = float(np.linalg.norm(vector)) or 1.0
        similarity = self.vectors @ (np.asarray(vector, dtype=np.float32) / norm)
        similarity[~self.searchable] = -np.inf
        top = np.argpartition(-similarity, limit - 1)[:limit] if limit < len(similarity) else np.arange(self.rows)
        top = top[np.lexsort((top, -similarity[top]))]  # best first; ties by row order, deterministic
        return [self.row(int(i), _distance=float(1.0 - similarity[i])) for i in top]

    def best_text(self, terms: list[str], limit: int) -> list[dict[str, Any]] | None:
        """The BM25 list for the query's index ``terms``, best first, shaped like LanceDB's
        (``_score``); None when the entry has no postings."""
        if self.postings is None:
            return None
        return [self.row(i, _score=score) for i, score in self.postings.search(terms, self.alive, limit)]

    def verbatim(self, wanted: str, limit: int) -> list[dict[str, Any]]:
        """The live chunks whose normalised text contains ``wanted`` (already normalised), in row order."""
        inner = wanted.split(" ")[1:-1]
        if inner:  # only the rows holding every inner word can match (``lake.word_rows``)
            found = []
            for row in self.words.rows_with_all(inner, self.rows).tolist():
                end = self.starts[row + 1] - 1 if row + 1 < self.rows else len(self.haystack)
                if self.alive[row] and self.haystack.find(wanted, self.starts[row], end) >= 0:
                    found.append(row)
                    if len(found) >= limit:
                        break
            return [self.row(i) for i in found]
        found = []
        at = self.haystack.find(wanted) if wanted else -1
        while at >= 0 and len(found) < limit:
            row = bisect.bisect_right(self.starts, at) - 1
            if self.alive[row]:
                found.append(row)
            at = self.haystack.find(wanted, self.starts[row + 1]) if row + 1 < self.rows else -1
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
    """Courses' rows by (table, course), least recently used first out past ``max_bytes``.

    ``synchronous``: a search that finds its course missing or behind loads it itself (tests and
    benchmarks that must know what they measure); otherwise a background thread does."""

    def __init__(
        self, max_bytes: int, max_course_rows: int, *, version_check_s: float = 0.0, synchronous: bool = False
    ) -> None:
        self.max_bytes = max_bytes
        self.max_course_rows = max_course_rows
        self.version_check_s = version_check_s
        self.synchronous = synchronous
        self._entries: OrderedDict[tuple[str, str], CourseRows] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._tables: dict[str, Any] = {}
        self._versions: dict[str, tuple[float, int]] = {}
        self._queue: queue.Queue[tuple[Any, str]] = queue.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._worker: threading.Thread | None = None
        self.loads = self.refreshes = 0  # full loads and incremental refreshes (tests, metrics)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in list(self._entries.values()))

    @property
    def courses(self) -> int:
        return len(self._entries)

    def table(self, name: str, opener: Callable[[], Any]) -> Any:
        """The open handle of table ``name`` (opened by ``opener`` once): a kept handle follows
        other processes' writes within the connection's ``read_consistency_s``, and opening one
        per search cost ~1-2 ms."""
        found = self._tables.get(name)
        if found is None:
            found = self._tables[name] = opener()
        return found

    def get(self, table: Any, course_id: str) -> CourseRows | None:
        """The course's rows, at the table's current version when ``synchronous`` (None when the
        course is not cached: disabled, or over ``max_course_rows``); otherwise what is cached
        now (None at first), brought up to date in the background."""
        if self.max_bytes <= 0:
            return None
        key = (str(getattr(table, "name", "")), course_id)
        version = self._version(table, key[0])
        entry = self._entries.get(key)
        if entry is not None and entry.table_version == version:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry
        if self.synchronous:
            return self._update(table, key, version)
        self._schedule(table, key)
        return entry

    def _version(self, table: Any, name: str) -> int:
        """The table's version, asked at most every ``version_check_s`` (asking crosses to
        LanceDB's event loop thread; the handle itself only looks every ``read_consistency_s``)."""
        now = time.monotonic()
        seen = self._versions.get(name)
        if seen is not None and now - seen[0] < self.version_check_s:
            return seen[1]
        version = int(table.version)
        self._versions[name] = (now, version)
        return version

    def _update(self, table: Any, key: tuple[str, str], version: int | None = None) -> CourseRows | None:
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per course at a time; the others wait for it and use its result
            version = int(table.version) if version is None else version
            entry = self._entries.get(key)
            if entry is not None and entry.table_version == version:
                return entry
            where = f"course_id = {quote(key[1])}"
            fresh = _refreshed(table, where, entry, version) if entry is not None else None
            if fresh is not None:
                self.refreshes += 1
            else:
                fresh = _load(table, where, version, self.max_course_rows)
                self.loads += 1
            with self._lock:
                self._entries.pop(key, None)
                # an empty course is not kept: nothing to search, and nothing to count as cached
                if fresh is not None and fresh.rows and fresh.nbytes <= self.max_bytes:
                    self._entries[key] = fresh
                    self._evict()
            return fresh

    def _schedule(self, table: Any, key: tuple[str, str]) -> None:
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="course-cache", daemon=True)
                self._worker.start()
        self._queue.put((table, key[1]))

    def _work(self) -> None:
        while True:
            table, course_id = self._queue.get()
            time.sleep(LOAD_DELAY_S)  # let the search that asked finish first: both want the same cores
            key = (str(getattr(table, "name", "")), course_id)
            try:
                self._update(table, key)
            except Exception:  # a search falls back to LanceDB's own queries meanwhile
                log.exception("course %s could not be cached", course_id)
            finally:
                with self._lock:
                    self._queued.discard(key)

    def _evict(self) -> None:
        total = self.nbytes
        while total > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes


def course_cache(settings: LanceDBSettings, *, synchronous: bool = False) -> CourseCache:
    """The cache a searching process keeps, sized by its settings; the table version is asked at
    most every ``read_consistency_s`` (what a kept LanceDB handle waits between looks anyway)."""
    return CourseCache(settings.course_cache_mb * 2**20, settings.course_cache_max_rows,
                       version_check_s=settings.read_consistency_s, synchronous=synchronous)  # fmt: skip


def _read(table: Any, where: str, limit: int | None) -> pa.Table:
    query = table.search().where(where, prefilter=True).with_row_id(True)
    return query.select([*CACHED_COLUMNS, VECTOR_COLUMN, EMBEDDED_COLUMN]).limit(limit).to_arrow()


def index_terms(table: Any, texts: list[str]) -> list[list[str]] | None:
    """Each text's terms as the table's full-text index sees them (its tokenizer: stemmed, stop
    words out), tokenized ``TOKENIZE_BATCH`` texts per call; None without a full-text index."""
    out: list[list[str]] = []
    try:
        for begin in range(0, len(texts), TOKENIZE_BATCH):
            joined = f" {_ROW_BREAK} ".join(texts[begin : begin + TOKENIZE_BATCH])
            current: list[str] = []
            for token in table.tokenize(joined, column=TEXT_COLUMN):
                if token.text == _ROW_BREAK:
                    out.append(current)
                    current = []
                else:
                    current.append(token.text)
            out.append(current)
    except (ValueError, RuntimeError) as exc:  # no full-text index on the column
        log.warning("no index tokenizer (%s): BM25 stays in LanceDB", exc)
        return None
    if len(out) != len(texts) and texts:  # the row break was not kept as one token
        log.warning("the index tokenizer split %d texts into %d rows: BM25 stays in LanceDB", len(texts), len(out))
        return None
    return out if texts else []


@dataclass
class _Read:
    columns: dict[str, list[Any]]
    vectors: np.ndarray
    embedded: np.ndarray
    normalized: list[str]
    terms: list[list[str]] | None


def _split(table: Any, read: pa.Table) -> _Read:
    """Arrow rows -> lists, unit vectors, the embedded mask, normalised texts and index terms."""
    flat = np.asarray(read.column(VECTOR_COLUMN).combine_chunks().flatten(), dtype=np.float32)
    vectors = flat.reshape(read.num_rows, -1) if read.num_rows else np.zeros((0, 1), np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    embedded = np.asarray(read.column(EMBEDDED_COLUMN).to_numpy(zero_copy_only=False), dtype=bool)
    columns = {name: read.column(name).to_pylist() for name in (*CACHED_COLUMNS, "_rowid")}
    texts = columns[TEXT_COLUMN]
    return _Read(columns, vectors, embedded, [normalized_words(t) for t in texts], index_terms(table, texts))


def _watermark(row_ids: list[int], previous: int = 0) -> int:
    if not row_ids:
        return previous
    return max(previous, ((max(row_ids) >> FRAGMENT_BITS) + 1) << FRAGMENT_BITS)


def _load(table: Any, where: str, version: int, max_rows: int) -> CourseRows | None:
    read = _read(table, where, max_rows + 1)
    if read.num_rows > max_rows:
        return None
    new = _split(table, read)
    postings = None
    if new.terms is not None:
        postings = Postings()
        for terms in new.terms:
            postings.append(terms)
    words = WordRows()
    for normalized in new.normalized:
        words.append(normalized)
    alive = np.ones(read.num_rows, dtype=bool)
    starts = list(accumulate((len(n) + 1 for n in new.normalized[:-1]), initial=0)) if new.normalized else []
    return CourseRows(version, _watermark(new.columns["_rowid"]), new.columns, new.vectors, alive & new.embedded,
                      alive, _SEPARATOR.join(new.normalized), starts,
                      {chunk_id: i for i, chunk_id in enumerate(new.columns["chunk_id"])}, postings, words)  # fmt: skip


def _refreshed(table: Any, where: str, entry: CourseRows, version: int) -> CourseRows | None:
    """``entry`` brought to ``version`` by the rows written since (appended; the older row of a
    chunk id masked out), or None when rows were deleted since or half the rows are masked (the
    caller reads the course whole)."""
    read = _read(table, f"{where} AND _rowid >= {entry.watermark}", None)
    position = dict(entry.position)
    alive = entry.alive.copy()
    new_ids = read.column("chunk_id").to_pylist()
    for chunk_id in new_ids:
        old = position.pop(chunk_id, None)
        if old is not None:
            alive[old] = False
    if int(table.count_rows(where)) != len(position) + len(new_ids):
        return None  # rows deleted since the entry was read
    if not new_ids:
        return CourseRows(version, entry.watermark, entry.columns, entry.vectors, entry.searchable, entry.alive,
                          entry.haystack, entry.starts, entry.position, entry.postings, entry.words)  # fmt: skip
    if (~alive).sum() > len(alive) // 2:
        return None  # mostly rows read again (compaction moves them): read whole, the memory back
    new = _split(table, read)
    if (entry.postings is None) != (new.terms is None):
        return None  # the full-text index appeared or went: read whole
    base = entry.rows
    columns = {name: values[:base] + new.columns[name] for name, values in entry.columns.items()}
    position.update({chunk_id: base + i for i, chunk_id in enumerate(new_ids)})
    if entry.postings is not None and new.terms is not None:
        for terms in new.terms:  # shared with the previous entry, which only reads its first rows
            entry.postings.append(terms)
    for normalized in new.normalized:  # shared too
        entry.words.append(normalized)
    alive = np.concatenate([alive, np.ones(len(new_ids), dtype=bool)])
    embedded = np.concatenate([entry.searchable, new.embedded])  # an old live row's flag is in searchable
    starts = entry.starts + [len(entry.haystack) + 1 + s for s in accumulate(
        (len(n) + 1 for n in new.normalized[:-1]), initial=0)]  # fmt: skip
    return CourseRows(version, _watermark(new.columns["_rowid"], entry.watermark), columns,
                      np.concatenate([entry.vectors, new.vectors]) if base else new.vectors, alive & embedded, alive,
                      entry.haystack + _SEPARATOR + _SEPARATOR.join(new.normalized), starts, position,
                      entry.postings, entry.words)  # fmt: skip
