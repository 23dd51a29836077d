"""Hybrid retrieval over LanceDB ``chunks``: vector search plus full-text search, both filtered
to one course, fused by reciprocal rank (RRF).

RRF uses ranks only, so the cosine distances of the vector side and the BM25 scores of the text
side need no calibration against each other. A third list holds the candidates that contain the
query verbatim (case and punctuation aside): a student quoting a sentence from the course wants
that sentence's page, and BM25 alone ranks every chunk sharing a few of its words close behind.

Chunks of replaced document versions are deleted from LanceDB when the new version is indexed,
so every row searched is a current version.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from core.settings import LanceDBSettings
from lake.course_cache import CourseCache, index_terms, normalized_words
from lake.index_versions import live_index
from lake.vectors import EMBEDDED_COLUMN, TEXT_COLUMN, VECTOR_COLUMN, open_chunks, placeholder_vector, quote

if TYPE_CHECKING:
    import lancedb

SearchMode = Literal["hybrid", "text", "vector"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "text", "vector")

RESULT_COLUMNS = ["chunk_id", "document_id", "version", "course_id", "page_start", "page_end", "text"]


class QueryEmbedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    document_id: str
    version: int
    course_id: str
    page_start: int
    page_end: int
    text: str
    score: float  # fused RRF score: higher is better
    vector_rank: int | None  # 1-based rank in the vector list, None if absent
    text_rank: int | None  # 1-based rank in the full-text list, None if absent


def hybrid_search(
    db: lancedb.DBConnection,
    course_id: str,
    query: str,
    k: int,
    embedder: QueryEmbedder,
    *,
    settings: LanceDBSettings | None = None,
    mode: SearchMode = "hybrid",
    table_name: str | None = None,
    cache: CourseCache | None = None,
) -> list[SearchHit]:
    """The ``k`` best chunks of ``course_id`` for ``query``: ``hybrid`` fuses the vector and
    full-text lists; ``text`` and ``vector`` return one side alone (same hit shape). The live
    index version's table is searched (``lake.index_versions``), or ``table_name``. A long-lived
    searcher passes its ``cache`` (``lake.course_cache``): table handles and hot courses' rows."""
    settings = settings or LanceDBSettings()
    query = query.strip()
    if not query or k <= 0:
        return []
    try:
        table = _open_table(db, settings, table_name, cache)
    except (FileNotFoundError, ValueError):
        return []
    where = f"course_id = {quote(course_id)}"
    candidates = max(settings.candidates, k)
    course = cache.get(table, course_id) if cache is not None else None

    # Every side returns chunk ids, row ids and its score only: the page and text columns are
    # read for the fused head alone (from the course cache, else one take by row id), since
    # reading them for every candidate of every list cost ~15 ms per side at 1M rows
    # (bench/search_scale.py).
    words = normalized_words(query)
    phrase = words if len(words.split()) >= PHRASE_MIN_WORDS else ""
    # A cached course answers all three sides from memory (``lake.course_cache``), all on this
    # thread: embedding the query on a worker meanwhile saved nothing (BM25 and the verbatim
    # check hold the GIL the embedder's Python needs) and the hand-off widened the tail (API
    # p95 15.6 ms with it, 12.0 without, bench/search_api.py). Otherwise the LanceDB queries of
    # the text side run on worker threads while this one embeds the query
    # (``lancedb.parallel_sides``): they let go of the GIL and take longer.
    text_rows: list[dict[str, Any]] | None = None
    if course is not None and course.postings is not None and mode != "vector" and words:
        text_rows = course.best_text(query_terms(table, words), candidates)
    text_side: Future[list[dict[str, Any]]] | None = None
    phrase_side: Future[list[dict[str, Any]]] | None = None
    if mode != "vector" and settings.parallel_sides and text_rows is None:
        text_side = _sides().submit(text_candidates, table, query, where, candidates)
        if course is None and phrase:
            phrase_side = _sides().submit(verbatim_candidates, table, query, where, settings.phrase_candidates)
    verbatim: list[dict[str, Any]] = []
    if mode != "vector" and course is not None:
        verbatim = course.verbatim(phrase, settings.phrase_candidates)
    lists: list[tuple[str, list[dict[str, Any]], float]] = []
    if mode != "text":
        vector = embedder.encode([query])[0]
        if course is not None:
            vector_rows = course.nearest(vector, candidates)
        else:
            vector_rows = vector_candidates(table, vector, where, candidates, settings)
        lists.append(("vector_rank", vector_rows, settings.vector_weight))
    if mode != "vector":
        if phrase_side is not None:
            verbatim = phrase_side.result()
        elif course is None:
            verbatim = verbatim_candidates(table, query, where, settings.phrase_candidates)
        if text_rows is None:
            text_rows = text_side.result() if text_side else text_candidates(table, query, where, candidates)
        lists.append(("text_rank", text_rows, settings.text_weight))
        if verbatim:
            if course is not None:  # found in row order: rank them as BM25 does
                bm25_rank = {row["chunk_id"]: rank for rank, row in enumerate(text_rows)}
                verbatim.sort(key=lambda row: bm25_rank.get(row["chunk_id"], len(bm25_rank)))
            lists.append(("phrase_rank", verbatim, settings.phrase_weight))
    entries = rrf_entries(lists, rrf_k=settings.rrf_k)
    pool = entries[: max(k, settings.page_pool)] if settings.one_hit_per_page else entries[:k]
    unfilled = [e["row"] for e in pool if course is None or not course.fill(e["row"])]
    _fill_rows(table, where, unfilled)
    # Page scoring is part of the fusion: ``text`` and ``vector`` return their list as it ranks,
    # the best chunk of each page span (with it, vector alone on bench/retrieval's questions
    # reads R@1 0.524, R@5 0.794; without, 0.413 and 0.810).
    page_weight = settings.page_weight if mode == "hybrid" else 0.0
    best = best_pages(pool, k, page_weight=page_weight, one_per_page=settings.one_hit_per_page)
    return [
        SearchHit(
            chunk_id=e["row"]["chunk_id"],
            document_id=e["row"]["document_id"],
            version=int(e["row"]["version"]),
            course_id=e["row"]["course_id"],
            page_start=int(e["row"]["page_start"]),
            page_end=int(e["row"]["page_end"]),
            text=e["row"]["text"],
            score=e["score"],
            vector_rank=e["vector_rank"],
            text_rank=e["text_rank"],
        )
        for e in best
    ]


_SIDE_POOL: ThreadPoolExecutor | None = None


def _sides() -> ThreadPoolExecutor:
    """Two threads for the LanceDB queries of the text side (created on first use)."""
    global _SIDE_POOL
    if _SIDE_POOL is None:
        _SIDE_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="search-side")
    return _SIDE_POOL


def _open_table(db: Any, settings: LanceDBSettings, table_name: str | None, cache: CourseCache | None) -> Any:
    if cache is None:
        return open_chunks(db, settings, create=False, name=table_name)
    name = table_name or live_index(db, settings).table_name
    return cache.table(name, lambda: open_chunks(db, settings, create=False, name=name))


_COURSE_ROWS: dict[tuple[str, str], tuple[float, int]] = {}
COURSE_ROWS_TTL_S = 30.0


def course_rows(table: Any, where: str) -> int:
    """Rows matching ``where`` (one course), counted through the B-tree and remembered for
    ``COURSE_ROWS_TTL_S``: it only picks the vector search's plan, so a stale count is harmless."""
    key = (getattr(table, "name", ""), where)  # the handle is opened per search: key by table name
    now = time.monotonic()
    cached = _COURSE_ROWS.get(key)
    if cached is not None and now - cached[0] < COURSE_ROWS_TTL_S:
        return cached[1]
    count = int(table.count_rows(where))
    if len(_COURSE_ROWS) > 10_000:
        _COURSE_ROWS.clear()
    _COURSE_ROWS[key] = (now, count)
    return count


ID_COLUMNS = ["chunk_id"]  # with the row id: what each side returns (a string column reads cheaply)


def vector_candidates(
    table: Any, vector: Any, where: str, candidates: int, settings: LanceDBSettings
) -> list[dict[str, Any]]:
    """The nearest embedded chunks (chunk id, row id, distance), nearest first.

    Chunks written text-first carry the same placeholder vector (``placeholder_vector``), so
    their cosine distance to the query is known in advance: only rows at that distance are
    checked for ``embedded`` (one take, usually of no rows), and only when dropping them leaves
    too few is the search repeated with ``embedded`` in its filter (reading that column, or
    filtering on it, for every query cost ~4-7 ms at 1M rows)."""
    rows = _nearest(table, vector, where, candidates, settings)
    norm = float(np.linalg.norm(vector)) or 1.0
    placeholder = 1.0 - float(np.dot(vector, placeholder_vector())) / norm
    suspects = [row for row in rows if abs(row["_distance"] - placeholder) < PLACEHOLDER_TOLERANCE]
    if not suspects:
        return rows
    taken = table.take_row_ids([row["_rowid"] for row in suspects]).select(["chunk_id", EMBEDDED_COLUMN]).to_list()
    pending = {r["chunk_id"] for r in taken if not r[EMBEDDED_COLUMN]}
    embedded = [row for row in rows if row["chunk_id"] not in pending]
    if len(embedded) < len(rows) and len(embedded) < candidates:
        embedded = _nearest(table, vector, f"{where} AND {EMBEDDED_COLUMN}", candidates, settings)
    return embedded


PLACEHOLDER_TOLERANCE = 1e-4


def _nearest(table: Any, vector: Any, where: str, candidates: int, settings: LanceDBSettings) -> list[dict[str, Any]]:
    search: Any = table.search(vector, vector_column_name=VECTOR_COLUMN)  # a vector query builder
    vector_query = (
        search.distance_type("cosine")
        .where(where, prefilter=True)
        .with_row_id(True)
        .select([*ID_COLUMNS, "_distance"])
        .limit(candidates)
    )
    if course_rows(table, where) <= settings.flat_scan_max_rows:
        # A course's chunks are few next to the table: an exact scan of the rows the course_id
        # B-tree selects, exact recall and no IVF probing or re-ranking.
        vector_query = vector_query.bypass_vector_index()
    elif VECTOR_COLUMN in {column for index in table.list_indices() for column in index.columns}:
        # IVF_PQ alone has poor recall here (~0.2 @10); re-ranking on full vectors restores it.
        vector_query = vector_query.nprobes(settings.nprobes).refine_factor(settings.refine_factor)
    return list(vector_query.to_list())


_WORD_TERMS: dict[tuple[str, str], list[str]] = {}
WORD_TERMS_MAX = 200_000


def query_terms(table: Any, words: str) -> list[str]:
    """The query's terms as the table's full-text index sees them (its tokenizer: stemmed, stop
    words out). The tokenizer works word by word, so each word's terms are remembered and only
    words not seen before are sent to it (one call: asking crosses to LanceDB's event loop
    thread, 0.6 ms p50 and 1.5 ms p95 on bench/search_api.py's questions)."""
    name = str(getattr(table, "name", ""))
    split = words.split()
    unknown = list(dict.fromkeys(word for word in split if (name, word) not in _WORD_TERMS))
    if unknown:
        if len(_WORD_TERMS) > WORD_TERMS_MAX:
            _WORD_TERMS.clear()
        found = index_terms(table, unknown)
        if found is None:  # the words did not tokenize one by one: the whole query, as it is
            return [token.text for token in table.tokenize(words, column=TEXT_COLUMN)]
        _WORD_TERMS.update({(name, word): terms for word, terms in zip(unknown, found, strict=True)})
    return [term for word in split for term in _WORD_TERMS.get((name, word), [])]


def text_candidates(table: Any, query: str, where: str, limit: int) -> list[dict[str, Any]]:
    """The BM25 list (chunk id, row id, score), best first."""
    words = normalized_words(query)  # the FTS parser gives meaning to quotes and operators
    if not words:
        return []
    fts = table.search(words, query_type="fts").where(where, prefilter=True).with_row_id(True)
    return list(fts.select([*ID_COLUMNS, "_score"]).limit(limit).to_list())


def verbatim_candidates(table: Any, query: str, where: str, limit: int) -> list[dict[str, Any]]:
    """The chunks quoting a 3+ word query verbatim (case and punctuation aside), in the phrase
    query's order: its matches (token positions; stop words dropped, so a superset) are read
    with their text and kept only if the text really contains the query's words in order.
    Empty for short queries and for an index without positions."""
    wanted = normalized_words(query)
    if len(wanted.split()) < PHRASE_MIN_WORDS:
        return []
    matches = phrase_matches(table, query, where, limit, columns=[*ID_COLUMNS, TEXT_COLUMN, "_score"])
    return [row for row in matches or [] if wanted in normalized_words(row[TEXT_COLUMN])]


def _fill_rows(table: Any, where: str, rows: list[dict[str, Any]]) -> None:
    """Fills the result columns into rows that carry only ids: by row id (one take), or by
    chunk id when a compaction moved the rows in between."""
    missing = [row for row in rows if "page_start" not in row]
    if not missing:
        return
    taken_rows = table.take_row_ids([row["_rowid"] for row in missing]).select(RESULT_COLUMNS).to_list()
    taken = {r["chunk_id"]: r for r in taken_rows}
    if any(row["chunk_id"] not in taken for row in missing):
        ids = ", ".join(quote(row["chunk_id"]) for row in missing)
        query = table.search().where(f"{where} AND chunk_id IN ({ids})").select(RESULT_COLUMNS)
        taken = {r["chunk_id"]: r for r in query.limit(len(missing)).to_list()}
    for row in missing:
        found = taken.get(row["chunk_id"])
        row.update(found or {column: "" if column == TEXT_COLUMN else 0 for column in RESULT_COLUMNS[1:]})
        if found is None:
            row["document_id"] = row["course_id"] = ""


def rrf_entries(lists: list[tuple[str, list[dict[str, Any]], float]], *, rrf_k: int) -> list[dict[str, Any]]:
    """Weighted reciprocal rank fusion of ranked lists of rows keyed by ``chunk_id``, best first:
    each list ``(side, rows, weight)`` adds ``weight / (rrf_k + rank)``.

    Mirrored ranks (vector #1 / text #11 against text #1 / vector #11) fuse to exactly the same
    score; the tie goes to the better full-text rank, because a chunk that contains the query's
    words is the better citation. Then chunk id, so the order is deterministic."""
    fused: dict[str, dict[str, Any]] = {}
    text_rows = 0
    for side, rows, weight in lists:
        if side == "text_rank":
            text_rows = len(rows)
        for rank, row in enumerate(rows, start=1):
            entry = fused.setdefault(
                row["chunk_id"], {"row": row, "score": 0.0, "vector_rank": None, "text_rank": None}
            )
            entry["score"] += weight / (rrf_k + rank)
            entry[side] = rank
    return sorted(
        fused.values(),
        key=lambda e: (-round(e["score"], 12), e["text_rank"] or text_rows + 1, e["row"]["chunk_id"]),
    )


def best_pages(entries: list[dict[str, Any]], k: int, *, page_weight: float, one_per_page: bool) -> list[dict]:
    """The ``k`` best hits of fused ``entries`` (best first). With ``one_per_page``, one hit per
    page span, its best chunk, scored ``best + page_weight * (sum of the span's other chunks
    among entries)``: a page several chunks of which match is a better answer than a page with
    one (questions gained recall@5 .810 -> .873 on bench/retrieval at 0.15)."""
    if not one_per_page:
        return entries[:k]
    pages: dict[tuple[Any, ...], dict[str, Any]] = {}
    order = []
    for entry in entries:
        row = entry["row"]
        key = (row.get("document_id"), row.get("version"), row.get("page_start"), row.get("page_end"))
        if key in pages:
            pages[key]["score"] += page_weight * entry["score"]
        else:
            pages[key] = {**entry}
            order.append(key)
    # sorted() is stable: pages of equal score keep the fused order
    ranked = sorted((pages[key] for key in order), key=lambda e: -round(e["score"], 12))
    return ranked[:k]


PHRASE_MIN_WORDS = 3  # shorter queries are keywords, which BM25 already ranks


def fuse(
    vector_rows: list[dict[str, Any]],
    text_rows: list[dict[str, Any]],
    *,
    rrf_k: int,
    k: int,
    phrase: str | None = None,
    phrase_rows: list[dict[str, Any]] | None = None,
    vector_weight: float = 1.0,
    text_weight: float = 1.0,
    phrase_weight: float = 1.0,
    one_per_page: bool = False,
    page_weight: float = 0.0,
) -> list[dict]:
    """Weighted reciprocal rank fusion of the ranked lists (rows keyed by ``chunk_id``), best
    first: each list adds ``weight / (rrf_k + rank)``.

    With ``phrase`` (of ``PHRASE_MIN_WORDS`` words or more), the chunks that contain it verbatim
    (case and punctuation aside) form a third list weighted ``phrase_weight``, taken from
    ``phrase_rows`` (the full-text index's phrase query) first, then from the other two lists.
    The verbatim check matters: the index drops stop words, so its phrase query alone would
    match "yourself say" for "yourself of what you should say".

    Mirrored ranks (vector #1 / text #11 against text #1 / vector #11) fuse to exactly the same
    score; the tie goes to the better full-text rank, because a chunk that contains the query's
    words is the better citation. Then chunk id, so the order is deterministic. With
    ``one_per_page``, only the best chunk of each page span is kept (the rest would repeat the
    same citation), scored as ``best_pages`` says. Rows carry their columns (``hybrid_search``
    fuses id-only rows through the same ``rrf_entries`` and ``best_pages``)."""
    lists: list[tuple[str, list[dict[str, Any]], float]] = [
        ("vector_rank", vector_rows, vector_weight),
        ("text_rank", text_rows, text_weight),
    ]
    wanted = normalized_words(phrase or "")
    if len(wanted.split()) >= PHRASE_MIN_WORDS:
        seen: set[str] = set()
        verbatim = []
        for row in [*(phrase_rows or []), *text_rows, *vector_rows]:
            if row["chunk_id"] not in seen and wanted in normalized_words(row.get("text", "")):
                verbatim.append(row)
            seen.add(row["chunk_id"])
        lists.append(("phrase_rank", verbatim, phrase_weight))
    return best_pages(rrf_entries(lists, rrf_k=rrf_k), k, page_weight=page_weight, one_per_page=one_per_page)


def phrase_matches(
    table: Any, query: str, where: str, limit: int, *, columns: list[str] | None = None
) -> list[dict[str, Any]] | None:
    """Chunks containing the query's words in order (a phrase query on the full-text index's
    positions), or None when the query is too short or the index keeps no positions."""
    from lancedb.query import PhraseQuery

    words = normalized_words(query)
    if len(words.split()) < PHRASE_MIN_WORDS:
        return None
    try:
        return list(
            table.search(PhraseQuery(words, TEXT_COLUMN, slop=0), query_type="fts")  # type: ignore[call-arg]
            .where(where, prefilter=True)
            .with_row_id(True)
            .select(columns or [*RESULT_COLUMNS, "_score"])
            .limit(limit)
            .to_list()
        )
    except (ValueError, RuntimeError) as exc:  # an index built without positions
        if "position" not in str(exc).lower():
            raise
        return None


def full_text(table: Any, query: str, where: str, limit: int) -> list[dict[str, Any]]:
    # The FTS parser gives meaning to quotes and operators; a student's query is plain words.
    words = normalized_words(query)  # the index lower-cases too
    if not words:
        return []
    return (
        table.search(words, query_type="fts")
        .where(where, prefilter=True)
        .select([*RESULT_COLUMNS, "_score"])
        .limit(limit)
        .to_list()
    )
