"""The searching process's course cache on a real (local directory) LanceDB: it answers as LanceDB
does and follows every kind of write (new chunks, re-embedded chunks, deletions, compaction)."""

import numpy as np
import pytest

from core.settings import LanceDBSettings
from lake import vectors
from lake.course_cache import CourseCache, normalized_words
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
    # flat scans everywhere: LanceDB's own answer is then exact, like the cache's
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


def _same_as_lancedb(lance, cache, course="c1"):
    for query in QUERIES:
        for mode in ("hybrid", "vector", "text"):
            cached, direct = _search(lance, cache, query, mode, course), _search(lance, None, query, mode, course)
            assert cached == direct, (query, mode)


def test_cached_search_answers_exactly_as_lancedb(lance):
    cache = CourseCache(64 * 2**20, 10_000)
    _same_as_lancedb(lance, cache)
    _same_as_lancedb(lance, cache, course="c2")
    assert cache.loads == 2  # once per course, then served from memory
    assert all(hit[0].startswith("d2:") for hit in _search(lance, cache, "narwhal", course="c2"))


def test_new_and_re_embedded_chunks_are_merged_without_a_reload(lance):
    settings, _, table = lance
    cache = CourseCache(64 * 2**20, 10_000)
    _search(lance, cache, "narwhal")
    vectors.upsert_chunks(table, _rows("d3", 10, embedded=False, seed=3, start_page=100))  # text first
    _same_as_lancedb(lance, cache)
    hits = _search(lance, cache, "narwhal walrus otter", mode="vector")
    assert not any(hit[0].startswith("d3:") for hit in hits)  # placeholders never reach the vector side
    vectors.upsert_chunks(table, _rows("d3", 10, embedded=True, seed=3, start_page=100))  # then embedded
    vectors.refresh_indexes(table, settings)  # compaction too: every row moves to a new fragment
    _same_as_lancedb(lance, cache)
    assert any(hit[0].startswith("d3:") for query in QUERIES for hit in _search(lance, cache, query, mode="vector"))
    assert cache.loads == 1 and cache.refreshes >= 2


def test_deleted_chunks_leave_the_cache(lance):
    _, _, table = lance
    cache = CourseCache(64 * 2**20, 10_000)
    _search(lance, cache, "narwhal")
    vectors.upsert_chunks(table, _rows("d1", 40, version=2, seed=4))  # a new version of d1 ...
    vectors.delete_other_versions(table, "d1", 2)  # ... replaces the old one
    _same_as_lancedb(lance, cache)
    assert {hit[0].split(":")[1] for query in QUERIES for hit in _search(lance, cache, query)} == {"2"}
    assert cache.loads == 2  # the deletion was seen (row count) and the course read whole again


def test_a_course_over_the_row_cap_is_searched_in_lancedb(lance):
    cache = CourseCache(64 * 2**20, 35)
    _same_as_lancedb(lance, cache)  # c1 has 40 rows: not cached, still answered
    assert cache.get(lance[2], "c1") is None and cache.get(lance[2], "c2") is not None


def test_the_least_recently_used_course_goes_first_past_the_byte_budget(lance):
    _, _, table = lance
    one = CourseCache(64 * 2**20, 10_000)
    size = one.get(table, "c1").nbytes + one.get(table, "c2").nbytes
    cache = CourseCache(size - 1, 10_000)
    cache.get(table, "c1")
    cache.get(table, "c2")  # over budget: c1 goes
    cache.get(table, "c2")
    cache.get(table, "c1")
    assert cache.loads == 3 and cache.nbytes <= size - 1


def test_verbatim_matches_stay_inside_one_chunk(lance):
    _, _, table = lance
    course = CourseCache(64 * 2**20, 10_000).get(table, "c1")
    first, second = course.normalized[0], course.normalized[1]
    assert course.verbatim(first[-20:], 50)[0]["chunk_id"] == course.columns["chunk_id"][0]
    assert course.verbatim(first[-10:] + " " + second[:10], 50) == []  # across the boundary: no match
    assert normalized_words("Don't  PANIC: foo_bar:Nn!") == "don t panic foo bar nn"
