"""The searching process's course cache on a real (local directory) LanceDB: it answers as LanceDB
does and follows every kind of write (new chunks, re-embedded chunks, deletions, compaction)."""

import time

import numpy as np
import pytest

from core.settings import LanceDBSettings
from lake import search, vectors
from lake.course_cache import CourseCache, course_cache, normalized_words
from lake.search import hybrid_search

DIM = vectors.DIMENSION
WORDS = "matrix kernel basis span rank eigenvalue narwhal walrus otter heron lemma proof".split()


class _Embedder:
    """The query's vector is a fixed random projection of its words: similar words, similar vectors."""

    def __init__(self) -> None:
        self.table = {w: np.random.default_rng(i).normal(size=DIM).astype("float32") for i, w in enumerate(WORDS)}

    def encode(self, texts):
        out = []
        for text in texts:
            v = sum((self.table.get(w, 0) for w in text.split()), np.zeros(DIM, "float32")) + 1e-3
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


EMBEDDER = _Embedder()


def _rows(document_id, count, *, course="c1", version=1, embedded=True, seed=0, start_page=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        # every chunk of a course has its own length, so no two BM25 scores tie (LanceDB orders ties
        # differently from one query to the next)
        text = " ".join(rng.choice(WORDS, size=6 + start_page + i)) + f" item{document_id}x{i}"
        vector = EMBEDDER.encode([text])[0] if embedded else np.array(vectors.placeholder_vector(), "float32")
        out.append({"chunk_id": f"{document_id}:{version}:{i}", "document_id": document_id, "version": version,
                    "course_id": course, "chunk_index": i, "page_start": start_page + i, "page_end": start_page + i,
                    "text": text, "vector": vector, "embedded": embedded})  # fmt: skip
    return vectors.chunk_rows(out)


@pytest.fixture
def lance(tmp_path):
    # flat scans everywhere: LanceDB's own vector answer is then exact, like the cache's
    settings = LanceDBSettings(uri=str(tmp_path / "lancedb"), read_consistency_s=0.0, flat_scan_max_rows=10**6)
    db = vectors.connect(settings)
    table = vectors.open_chunks(db, settings)
    vectors.upsert_chunks(table, _rows("d1", 40, seed=1))
    vectors.upsert_chunks(table, _rows("d2", 30, course="c2", seed=2))
    vectors.refresh_indexes(table, settings)
    return settings, db, table


QUERIES = ["narwhal walrus", "matrix kernel rank", "the proof of the lemma", "heron otter span basis eigenvalue"]


def _search(lance, cache, query, mode="hybrid", course="c1"):
    settings, db, _ = lance
    hits = hybrid_search(db, course, query, 8, EMBEDDER, settings=settings, mode=mode, cache=cache)
    return [(h.chunk_id, h.page_start, h.text, round(h.score, 9)) for h in hits]


def _same_as_a_fresh_load(lance, cache, course="c1"):
    """What the cache answers after its refreshes equals what a cache reading the course whole
    at this version answers, in every mode."""
    fresh = course_cache(lance[0], synchronous=True)
    for query in QUERIES:
        for mode in ("hybrid", "vector", "text"):
            assert _search(lance, cache, query, mode, course) == _search(lance, fresh, query, mode, course), (
                query,
                mode,
            )


def _cache(lance, **overrides):
    settings = lance[0].model_copy(update=overrides)
    return course_cache(settings, synchronous=True)


def test_cached_vector_side_answers_exactly_as_lancedb(lance):
    cache = _cache(lance)
    for course in ("c1", "c2"):
        for query in QUERIES:
            assert _search(lance, cache, query, "vector", course) == _search(lance, None, query, "vector", course)
    assert cache.loads == 2  # once per course, then served from memory
    assert all(hit[0].startswith("d2:") for hit in _search(lance, cache, "narwhal", course="c2"))


def test_cached_bm25_ranks_as_lancedbs_index_on_a_table_of_one_course(tmp_path):
    settings = LanceDBSettings(uri=str(tmp_path / "one"), read_consistency_s=0.0)
    db = vectors.connect(settings)
    table = vectors.open_chunks(db, settings)
    vectors.upsert_chunks(table, _rows("d1", 60, seed=5))
    vectors.refresh_indexes(table, settings)
    course = _cache((settings,)).get(table, "c1")
    for query in [*QUERIES, "walruses proofs", "eigenvalue eigenvalue kernel"]:
        lancedb_side = search.text_candidates(table, query, "course_id = 'c1'", 10)
        cached_side = course.best_text(search.query_terms(table, search.normalized_words(query)), 10)
        assert [r["chunk_id"] for r in cached_side] == [r["chunk_id"] for r in lancedb_side], query
        assert [r["_score"] for r in cached_side] == pytest.approx([r["_score"] for r in lancedb_side], rel=1e-4)


def test_new_and_re_embedded_chunks_are_merged_without_a_reload(lance):
    _, _, table = lance
    cache = _cache(lance)
    _search(lance, cache, "narwhal")
    vectors.upsert_chunks(table, _rows("d3", 10, embedded=False, seed=3, start_page=100))  # text first
    _same_as_a_fresh_load(lance, cache)
    hits = _search(lance, cache, "narwhal walrus otter", mode="vector")
    assert not any(hit[0].startswith("d3:") for hit in hits)  # placeholders never reach the vector side
    assert any(hit[0].startswith("d3:") for q in QUERIES for hit in _search(lance, cache, q, mode="text"))
    vectors.upsert_chunks(table, _rows("d3", 10, embedded=True, seed=3, start_page=100))  # then embedded
    _same_as_a_fresh_load(lance, cache)
    assert any(hit[0].startswith("d3:") for query in QUERIES for hit in _search(lance, cache, query, mode="vector"))
    assert cache.loads == 1 and cache.refreshes >= 2


def test_compaction_moves_rows_without_changing_answers(lance):
    settings, _, table = lance
    cache = _cache(lance)
    before = [_search(lance, cache, query) for query in QUERIES]
    vectors.upsert_chunks(table, _rows("d1", 5, seed=1))  # the same 5 chunks again: new rows, old masked
    vectors.refresh_indexes(table, settings)  # compaction: every row moves to a new fragment
    assert [_search(lance, cache, query) for query in QUERIES] == before
    _same_as_a_fresh_load(lance, cache)


def test_deleted_chunks_leave_the_cache(lance):
    _, _, table = lance
    cache = _cache(lance)
    _search(lance, cache, "narwhal")
    vectors.upsert_chunks(table, _rows("d1", 40, version=2, seed=4))  # a new version of d1 ...
    vectors.delete_other_versions(table, "d1", 2)  # ... replaces the old one
    _same_as_a_fresh_load(lance, cache)
    assert {hit[0].split(":")[1] for query in QUERIES for hit in _search(lance, cache, query)} == {"2"}
    assert cache.loads == 2  # the deletion was seen (row count) and the course read whole again


def test_a_course_over_the_row_cap_is_searched_in_lancedb(lance):
    cache = _cache(lance, course_cache_max_rows=35)
    for query in QUERIES:  # c1 has 40 rows: not cached, answered by LanceDB
        assert _search(lance, cache, query) == _search(lance, None, query)
    assert cache.get(lance[2], "c1") is None and cache.get(lance[2], "c2") is not None


def test_the_least_recently_used_course_goes_first_past_the_byte_budget(lance):
    _, _, table = lance
    one = _cache(lance)
    size = one.get(table, "c1").nbytes + one.get(table, "c2").nbytes
    cache = CourseCache(size - 1, 10_000, synchronous=True)
    cache.get(table, "c1")
    cache.get(table, "c2")  # over budget: c1 goes
    cache.get(table, "c2")
    cache.get(table, "c1")
    assert cache.loads == 3 and cache.nbytes <= size - 1


def test_a_background_cache_never_holds_a_search_up(lance):
    _, _, table = lance
    cache = course_cache(lance[0])  # as the API keeps it
    assert cache.get(table, "c1") is None  # not cached yet: the search goes to LanceDB meanwhile
    deadline = time.monotonic() + 10
    while cache.get(table, "c1") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get(table, "c1") is not None and cache.loads == 1


def test_verbatim_matches_stay_inside_one_chunk(lance):
    _, _, table = lance
    course = _cache(lance).get(table, "c1")
    first, second = course.haystack.split("\n")[:2]
    assert course.verbatim(first[-20:], 50)[0]["chunk_id"] == course.columns["chunk_id"][0]
    assert course.verbatim(first[-10:] + " " + second[:10], 50) == []  # across the boundary: no match
    assert normalized_words("Don't  PANIC: foo_bar:Nn!") == "don t panic foo bar nn"


def test_query_terms_word_by_word_equal_the_tokenizer_on_the_whole_query(lance):
    _, _, table = lance
    for query in ["How do I make the items of a slide appear one at a time", "running runs ran foo bar nn",
                  "the the eigenvalues eigenvalue", "newcommand namedef lwr htmltag", "a"]:  # fmt: skip
        whole = [token.text for token in table.tokenize(normalized_words(query), column="text")]
        assert search.query_terms(table, normalized_words(query)) == whole, query
        assert search.query_terms(table, normalized_words(query)) == whole, query  # remembered words


def _scanned(course, wanted, limit):
    """The verbatim answer by brute force: every live row's normalised text, in row order."""
    texts = course.haystack.split("\n")
    return [course.columns["chunk_id"][i] for i, text in enumerate(texts) if course.alive[i] and wanted in text][:limit]


def test_verbatim_through_the_word_index_finds_what_a_full_scan_finds(lance):
    """Phrases cut anywhere (first and last words partial), before and after a refresh that masks
    re-written rows and appends new ones to the shared word index."""
    _, _, table = lance
    cache = _cache(lance)
    rng = np.random.default_rng(7)

    def phrases(course):
        texts = course.haystack.split("\n")
        for _ in range(150):
            text = texts[int(rng.integers(len(texts)))]
            begin = int(rng.integers(0, max(1, len(text) - 12)))
            yield text[begin : begin + int(rng.integers(8, 40))].strip()
        yield "narwhal walrus otter"
        yield "no such words here"

    course = cache.get(table, "c1")
    for wanted in phrases(course):
        assert [r["chunk_id"] for r in course.verbatim(wanted, 5)] == _scanned(course, wanted, 5), wanted
    vectors.upsert_chunks(table, _rows("d1", 10, seed=1))  # 10 rows re-written: the old ones masked
    vectors.upsert_chunks(table, _rows("d4", 12, seed=9, start_page=50))  # and new ones
    course = cache.get(table, "c1")
    assert cache.refreshes >= 1 and not course.alive.all()
    for wanted in phrases(course):
        assert [r["chunk_id"] for r in course.verbatim(wanted, 50)] == _scanned(course, wanted, 50), wanted
