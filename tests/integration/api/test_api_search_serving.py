"""Search as an API instance serves it: a torch-free query embedder, loaded at start-up (no cold
first search), and the `mode` query parameter."""

import os
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pytest

from core.settings import PROJECT_ROOT
from tests.integration.api.api_testkit import create_course, derive, free_port, sign_up

pytestmark = pytest.mark.integration

QUERIES = [
    "eigenvalues of a symmetric matrix",
    "What is the rank of a linear map?",
    "photosynthesis in the chloroplast",
    "Kafka consumer group rebalancing",
]


def test_query_embedder_vectors_are_within_cosine_0_99_of_the_pipelines(api_settings):
    from processing.embedding import Embedder, get_embedder
    from processing.query_embedding import query_embedder

    long_query = " ".join(["how does the spectral theorem apply to a real symmetric matrix"] * 8)[:500]
    queries = [*QUERIES, "a", long_query]  # one word, and as long as the API accepts (500 characters)
    embedder = query_embedder(api_settings.embedding)
    pipeline = get_embedder(api_settings.embedding)
    reference = Embedder(api_settings.embedding.model_copy(update={"precision": "fp32"}))

    def one_by_one(model) -> np.ndarray:  # the API encodes one query per call
        return np.vstack([model.encode([query]) for query in queries])

    served = one_by_one(embedder)
    for name, other in (("pipeline", one_by_one(pipeline)), ("fp32 reference", one_by_one(reference))):
        cosines = np.sum(served * other, axis=1)  # all unit length
        print(f"query embedder vs the {name}: min cosine {cosines.min():.4f}")
        assert cosines.min() >= 0.99, (name, cosines)


def _seed_chunks(settings, course_id: str, count: int = 120, *, extra: str = "") -> None:
    from lake.vectors import chunk_rows, connect, ensure_fts_index, open_chunks, upsert_chunks
    from processing.query_embedding import query_embedder

    words = "matrix vector eigenvalue basis span kernel rank determinant inverse linear map subspace".split()
    texts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(40)) + f" passage {i}" for i in range(count)]
    texts = [text + extra for text in texts]
    vectors = query_embedder(settings.embedding).encode(texts)
    document_id = str(uuid.uuid4())
    rows = [
        {
            "chunk_id": f"{document_id}:1:{i}",
            "document_id": document_id,
            "version": 1,
            "course_id": course_id,
            "chunk_index": i,
            "page_start": i + 1,
            "page_end": i + 1,
            "text": text,
            "vector": vector.tolist(),
        }
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]
    table = open_chunks(connect(settings.lancedb), settings.lancedb)
    upsert_chunks(table, chunk_rows(rows))
    ensure_fts_index(table)


def _env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LAKEHOUSE_ENVIRONMENT": "test",
        "LAKEHOUSE_POSTGRES__SHARDS": str(settings.postgres.shards),
        "LAKEHOUSE_POSTGRES__SHARD_DB_PREFIX": settings.postgres.shard_db_prefix,
        "LAKEHOUSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "LAKEHOUSE_API__JWT_SECRET": settings.api.jwt_secret.get_secret_value(),
        "LAKEHOUSE_API__RATE_LIMIT_PER_MINUTE": "100000",
        "LAKEHOUSE_API__RATE_LIMIT_IP_PER_MINUTE": "100000",
        "LAKEHOUSE_API__LOG_LEVEL": "WARNING",
        "LAKEHOUSE_LANCEDB__URI": settings.lancedb.uri,
    }


def test_first_search_of_a_fresh_api_process_is_as_fast_as_the_next_and_torch_is_never_loaded(
    client, api_settings, tmp_path
):
    settings = derive(api_settings, lancedb={"uri": str(tmp_path / "lancedb")})
    teacher = sign_up(client, role="instructor")
    courses = [create_course(client, teacher, title=f"Searchable {i}") for i in range(len(QUERIES))]
    for course in courses:
        _seed_chunks(settings, course["id"])
    course = courses[0]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app_from_env", "--factory", "--port", str(port)],
        env=_env(settings),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        statuses = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                statuses.append(ready.json()["status"])
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        assert statuses[-1] == "ready", statuses
        assert [d["ok"] for d in ready.json()["dependencies"] if d["name"] == "search"] == [True]

        with httpx.Client(base_url=base, headers=teacher.headers, timeout=30) as http:
            # The process's first search against the first searches of other courses of the same
            # size in the now warm process: a course's first search is answered by LanceDB while
            # the course cache (lake.course_cache) reads it in the background, so what differs
            # is only what a fresh process has not loaded yet (model, table handle, index files).
            timings = []
            for other, query in zip(courses, QUERIES, strict=True):  # a different query each time
                started = time.perf_counter()
                found = http.get(f"/v1/courses/{other['id']}/search", params={"q": query, "k": 5})
                timings.append(time.perf_counter() - started)
                assert found.status_code == 200, found.text
                assert found.json()["hits"], "the seeded course has chunks"
            first, rest = timings[0], statistics.median(timings[1:])
            print(f"first search {first * 1000:.1f} ms; other courses' first searches {rest * 1000:.1f} ms")
            assert first <= 2 * rest, f"first search {first * 1000:.1f} ms, the next ones {rest * 1000:.1f} ms"
            url = f"/v1/courses/{course['id']}/search"

            # A course searched before is served from the process's course cache; chunks written
            # since (another process: the stream) are found all the same, within moments.
            assert not http.get(url, params={"q": "axolotl", "mode": "text"}).json()["hits"]
            _seed_chunks(settings, course["id"], 5, extra=" axolotl")
            written, hits = time.monotonic(), []
            while not hits and time.monotonic() - written < 15:
                hits = http.get(url, params={"q": "axolotl", "mode": "text", "k": 10}).json()["hits"]
                time.sleep(0.05)
            print(f"new chunks found {time.monotonic() - written:.2f} s after their write")
            assert len(hits) == 5 and all("axolotl" in hit["text"] for hit in hits)

            text = http.get(url, params={"q": "eigenvalue", "mode": "text", "k": 3})
            assert text.status_code == 200 and all("eigenvalue" in h["text"] for h in text.json()["hits"])
            assert http.get(url, params={"q": "eigenvalue", "mode": "vector"}).status_code == 200
            wrong = http.get(url, params={"q": "eigenvalue", "mode": "fuzzy"})
            assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"

        with open(f"/proc/{server.pid}/maps") as maps:
            libraries = maps.read()
        assert "libtorch" not in libraries and "onnxruntime" in libraries
    finally:
        server.terminate()
        server.wait(timeout=15)
