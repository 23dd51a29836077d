"""LanceDB chunks table and hybrid search on an embedded (local directory) LanceDB."""

import numpy as np
import pytest

from core.settings import LanceDBSettings
from lake import vectors
from lake.search import hybrid_search


class _FixedEmbedder:
    """Maps a query to a chosen vector, so the vector side is under the test's control."""

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def encode(self, texts):
        return np.stack([self.vector for _ in texts])


def _rows(document_id, version, count, *, course_id="c1", rng, topic="filler"):
    out = []
    for i in range(count):
        v = rng.normal(size=vectors.DIMENSION).astype("float32")
        out.append(
            {
                "chunk_id": f"{document_id}:{version}:{i}",
                "document_id": document_id,
                "version": version,
                "course_id": course_id,
                "chunk_index": i,
                "page_start": i + 1,
                "page_end": i + 1,
                "text": f"chunk {i} about {topic} number{i}",
                "vector": v / np.linalg.norm(v),
            }
        )
    return out


def _chunk_ids(table, *, document_id=None) -> list[str]:
    """Every chunk id (optionally of one document), duplicates kept."""
    query = table.search().select(["chunk_id"]).limit(None)
    if document_id is not None:
        query = query.where(f"document_id = {vectors.quote(document_id)}")
    return query.to_arrow().column("chunk_id").to_pylist()


@pytest.fixture
def lance(tmp_path):
    settings = LanceDBSettings(uri=str(tmp_path / "lancedb"), vector_index_min_rows=300)
    db = vectors.connect(settings)
    return settings, db, vectors.open_chunks(db, settings)


def test_upsert_chunks_twice_keeps_one_row_per_chunk_id(lance):
    _, _, table = lance
    rows = vectors.chunk_rows(_rows("d1", 1, 20, rng=np.random.default_rng(1)))
    vectors.upsert_chunks(table, rows)
    vectors.upsert_chunks(table, rows)
    ids = _chunk_ids(table)
    assert len(ids) == len(set(ids)) == 20


def test_delete_other_versions_keeps_only_the_current_version(lance):
    _, _, table = lance
    rng = np.random.default_rng(2)
    vectors.upsert_chunks(table, vectors.chunk_rows(_rows("d1", 1, 5, rng=rng) + _rows("d2", 1, 3, rng=rng)))
    vectors.upsert_chunks(table, vectors.chunk_rows(_rows("d1", 2, 4, rng=rng)))
    vectors.delete_other_versions(table, "d1", 2)
    assert sorted(_chunk_ids(table, document_id="d1")) == [f"d1:2:{i}" for i in range(4)]
    assert len(_chunk_ids(table, document_id="d2")) == 3


def test_hybrid_search_fuses_vector_and_text_hits_within_the_course(lance):
    settings, db, table = lance
    rng = np.random.default_rng(3)
    rows = _rows("d1", 1, 50, rng=rng) + _rows("other", 1, 50, course_id="c2", rng=rng, topic="narwhal")
    rows[7]["text"] = "the narwhal checkpoint remembers offsets"
    vectors.upsert_chunks(table, vectors.chunk_rows(rows))
    target = rows[12]["vector"]  # the vector side points at chunk 12, the text side at chunk 7
    hits = hybrid_search(db, "c1", "narwhal checkpoint", 5, _FixedEmbedder(target), settings=settings)
    assert {h.chunk_id for h in hits[:2]} == {"d1:1:7", "d1:1:12"}
    assert all(h.course_id == "c1" for h in hits)
    by_id = {h.chunk_id: h for h in hits}
    assert by_id["d1:1:7"].text_rank == 1 and by_id["d1:1:12"].vector_rank == 1
    # The vector side reads no text; the hits get theirs afterwards.
    assert by_id["d1:1:12"].text == rows[12]["text"] and by_id["d1:1:7"].text == rows[7]["text"]
    vector_only = hybrid_search(db, "c1", "zzz", 3, _FixedEmbedder(target), settings=settings, mode="vector")
    assert [h.text for h in vector_only] == [rows[int(h.chunk_id.split(":")[2])]["text"] for h in vector_only]
    assert hits == sorted(hits, key=lambda h: -h.score)


@pytest.mark.parametrize("flat_scan_max_rows", [0, 50_000], ids=["ivf-index", "exact-scan"])
def test_hybrid_search_with_a_vector_index_keeps_recall_with_refine(lance, flat_scan_max_rows):
    settings, db, table = lance
    settings = settings.model_copy(update={"flat_scan_max_rows": flat_scan_max_rows})
    rng = np.random.default_rng(4)
    rows = _rows("d1", 1, 600, rng=rng)
    vectors.upsert_chunks(table, vectors.chunk_rows(rows))
    assert vectors.ensure_vector_index(table, settings) is True
    assert "vector" in {c for index in table.list_indices() for c in index.columns}
    found = 0
    for probe in range(0, 600, 30):
        hits = hybrid_search(db, "c1", "zzzz", 1, _FixedEmbedder(rows[probe]["vector"]), settings=settings)
        found += hits[0].chunk_id == rows[probe]["chunk_id"]
    assert found >= 19  # of 20 exact-match probes


def test_maintain_compacts_and_reports_indexes(lance):
    settings, _, table = lance
    rng = np.random.default_rng(5)
    for batch in range(3):
        vectors.upsert_chunks(table, vectors.chunk_rows(_rows(f"d{batch}", 1, 10, rng=rng)))
    report = vectors.maintain(table, settings)
    assert report["rows"] == 30 and report["indices"]["text"] == "FTS"


def test_hybrid_search_on_a_missing_table_or_blank_query_is_empty(tmp_path):
    settings = LanceDBSettings(uri=str(tmp_path / "none"))
    db = vectors.connect(settings)
    embedder = _FixedEmbedder(np.ones(vectors.DIMENSION, dtype="float32"))
    assert hybrid_search(db, "c1", "anything", 5, embedder, settings=settings) == []
    assert hybrid_search(db, "c1", "   ", 5, embedder, settings=settings) == []


def test_fuse_breaks_a_mirrored_rank_tie_towards_the_text_match():
    from lake.search import fuse

    vector_first = {"chunk_id": "a-vector-favourite"}
    text_first = {"chunk_id": "z-contains-the-words"}  # sorts last by id: the tie-break must win
    vector_rows = [vector_first, *({"chunk_id": f"v{i}"} for i in range(9)), text_first]  # ranks 1 and 11
    text_rows = [text_first, *({"chunk_id": f"t{i}"} for i in range(9)), vector_first]  # mirrored
    best = fuse(vector_rows, text_rows, rrf_k=60, k=3)
    assert best[0]["score"] == pytest.approx(best[1]["score"])
    assert [e["row"]["chunk_id"] for e in best[:2]] == ["z-contains-the-words", "a-vector-favourite"]
    assert (best[0]["text_rank"], best[0]["vector_rank"]) == (1, 11)


def _ranked(prefix: str, count: int) -> list[dict]:
    return [{"chunk_id": f"{prefix}{i}", "text": f"filler text {prefix} {i}"} for i in range(count)]


def test_fuse_puts_the_chunk_quoting_the_query_first():
    # The ranks the demo's 300-page book produced: the chunk with the quoted sentence was text #1
    # but vector #11, and a chunk sharing a few words (vector #6, text #5) out-fused it.
    from lake.search import fuse

    quoting = {"chunk_id": "page-42", "text": "up trend. Marmalade sharding keeps every zebra partition perfectly"
               " balanced, so the ... "}  # fmt: skip
    sharing = {"chunk_id": "page-111", "text": "stage trigger sharding partition balanced stream retry"}
    vector_rows = [*_ranked("v", 5), sharing, *_ranked("w", 4), quoting]
    text_rows = [quoting, *_ranked("t", 3), sharing]
    query = "Marmalade sharding keeps every zebra partition perfectly balanced"
    without = fuse(vector_rows, text_rows, rrf_k=60, k=2)
    assert without[0]["row"]["chunk_id"] == "page-111"  # what plain RRF does
    best = fuse(vector_rows, text_rows, rrf_k=60, k=2, phrase=query.upper() + "!")
    assert best[0]["row"]["chunk_id"] == "page-42" and best[0]["phrase_rank"] == 1


def test_fuse_ignores_short_phrases():
    from lake.search import fuse

    rows = [{"chunk_id": "a", "text": "kafka partitions"}, {"chunk_id": "b", "text": "other words"}]
    best = fuse(rows, list(reversed(rows)), rrf_k=60, k=2, phrase="kafka partitions")
    assert all("phrase_rank" not in e for e in best)


def test_a_quoted_sentence_of_stop_words_is_found_by_the_phrase_query(lance):
    # BM25 drops stop words, so "what you should say or should" is nearly one word to it; the
    # phrase query on the index's token positions finds the one chunk quoting it.
    from lake.search import full_text

    settings, db, table = lance
    settings = settings.model_copy(update={"candidates": 5})
    rng = np.random.default_rng(5)
    rows = _rows("d1", 1, 40, rng=rng, topic="yourself alone, say yourself alone, say")
    rows[17]["text"] = "Remind yourself of what you should say or should not say during the whole talk, please."
    vectors.upsert_chunks(table, vectors.chunk_rows(rows))
    vectors.refresh_indexes(table, settings)
    embedder = _FixedEmbedder(rows[3]["vector"])  # the vector side points elsewhere
    query = "yourself of what you should say or should"
    # BM25's own top 5 misses it: only the phrase query can bring it in.
    assert "d1:1:17" not in [r["chunk_id"] for r in full_text(table, query, "course_id = 'c1'", 5)]
    for mode in ("hybrid", "text"):
        hits = hybrid_search(db, "c1", query, 5, embedder, settings=settings, mode=mode)
        assert hits[0].chunk_id == "d1:1:17", (mode, hits[0])


def test_one_hit_per_page_keeps_the_best_chunk_of_each_page():
    from lake.search import fuse

    same_page = [{"chunk_id": f"p1-{i}", "document_id": "d", "version": 1, "page_start": 1, "page_end": 1}
                 for i in range(3)]  # fmt: skip
    other = {"chunk_id": "p2", "document_id": "d", "version": 1, "page_start": 2, "page_end": 2}
    rows = [*same_page, other]
    every = fuse(rows, rows, rrf_k=30, k=4)
    assert [e["row"]["chunk_id"] for e in every] == ["p1-0", "p1-1", "p1-2", "p2"]
    deduped = fuse(rows, rows, rrf_k=30, k=4, one_per_page=True)
    assert [e["row"]["chunk_id"] for e in deduped] == ["p1-0", "p2"]


def test_an_index_without_positions_is_rebuilt_with_them(tmp_path):
    settings = LanceDBSettings(uri=str(tmp_path / "old"))
    db = vectors.connect(settings)
    table = db.create_table("chunks", schema=vectors.chunks_schema())
    vectors.upsert_chunks(table, vectors.chunk_rows(_rows("d1", 1, 5, rng=np.random.default_rng(2))))
    table.create_fts_index(vectors.TEXT_COLUMN, with_position=False)  # what older versions built
    assert vectors.ensure_fts_index(table) is True
    assert vectors.ensure_fts_index(table) is False
    (index,) = [i for i in table.list_indices() if vectors.TEXT_COLUMN in i.columns]
    assert index.index_details["with_position"] is True


def test_a_page_with_several_matching_chunks_outranks_a_page_with_one_slightly_better():
    from lake.search import best_pages

    def entry(chunk_id, page, score):
        row = {"chunk_id": chunk_id, "document_id": "d", "version": 1, "page_start": page, "page_end": page}
        return {"row": row, "score": score, "vector_rank": None, "text_rank": None}

    entries = [entry("a", 1, 0.050), entry("b", 2, 0.048), entry("c", 2, 0.030), entry("d", 3, 0.010)]
    assert [e["row"]["chunk_id"] for e in best_pages(entries, 3, page_weight=0.0, one_per_page=True)] == ["a", "b", "d"]
    ranked = best_pages(entries, 3, page_weight=0.15, one_per_page=True)
    assert [e["row"]["chunk_id"] for e in ranked] == ["b", "a", "d"]  # page 2: 0.048 + 0.15 * 0.030
    assert ranked[0]["score"] == pytest.approx(0.0525)


def test_text_first_placeholders_never_reach_the_vector_side_even_when_nearest(lance):
    settings, db, table = lance
    rows = _rows("d1", 1, 30, rng=np.random.default_rng(9))
    pending = _rows("d2", 1, 5, rng=np.random.default_rng(10), topic="pending")
    for row in pending:
        row["vector"] = np.array(vectors.placeholder_vector(), dtype="float32")
        row["embedded"] = False
    vectors.upsert_chunks(table, vectors.chunk_rows(rows + pending))
    query = np.array(vectors.placeholder_vector(), dtype="float32")  # the placeholders are its nearest rows
    hits = hybrid_search(db, "c1", "zzzz", 10, _FixedEmbedder(query), settings=settings, mode="vector")
    assert len(hits) == 10 and all(h.document_id == "d1" for h in hits)
    text_hits = hybrid_search(db, "c1", "pending", 5, _FixedEmbedder(query), settings=settings, mode="text")
    assert {h.document_id for h in text_hits} == {"d2"}  # searchable by text before the embeddings land
