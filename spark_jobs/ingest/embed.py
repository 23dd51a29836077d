"""Embedding chunks: in Spark Python workers (one model per worker) or on the driver, with live
progress; plus the warm-up that loads the model before the first upload arrives."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from processing.embedding import DIMENSION
from spark_jobs.ingest.documents import EmbeddedDocument, ParsedDocument
from spark_jobs.ingest.progress import ChunkGroup, ProgressTracker, ProgressUpdate, chunk_groups

if TYPE_CHECKING:
    from pyspark.accumulators import AccumulatorParam
    from pyspark.sql import SparkSession

    from core.settings import EmbeddingSettings, Settings

    _GroupIdsParam = AccumulatorParam[frozenset[int]]
else:
    # pyspark is imported only where Spark runs; at runtime an AccumulatorParam needs no base
    # class, only zero/addInPlace, so the checker alone sees _SetParam as one.
    _GroupIdsParam = object

log = logging.getLogger(__name__)
EmbeddedGroup = tuple[int, int, int, bytes]
ReportProgress = Callable[[ProgressUpdate], None]


class _SetParam(_GroupIdsParam):
    """Accumulator of completed task ids (PySpark AccumulatorParam protocol)."""

    def zero(self, value: frozenset[int]) -> frozenset[int]:
        return frozenset()

    def addInPlace(self, a: frozenset[int], b: frozenset[int]) -> frozenset[int]:
        return frozenset(a) | frozenset(b)


def embed_partition(
    embedding_settings: EmbeddingSettings, threads: int, completed: Any
) -> Callable[[Iterable[tuple[int, int, int, list[str]]]], Iterator[EmbeddedGroup]]:
    """The task closure: (group id, document index, first chunk, texts) -> float32 vector bytes."""

    def run(groups: Iterable[tuple[int, int, int, list[str]]]) -> Iterator[EmbeddedGroup]:
        from processing.embedding import get_embedder

        embedder = get_embedder(embedding_settings, threads=threads)  # once per Python worker
        for gid, index, begin, texts in groups:
            vectors = embedder.encode(texts)
            completed.add(frozenset([gid]))
            yield gid, index, begin, vectors.astype("float32").tobytes()

    return run


def warm_up_partition(embedding_settings: EmbeddingSettings, threads: int) -> Callable[[Any], Iterator[int]]:
    def run(_: Any) -> Iterator[int]:
        from processing.embedding import get_embedder

        get_embedder(embedding_settings, threads=threads).encode(["warm-up"])  # cached in this worker
        yield os.getpid()

    return run


def warm_up_embedders(spark: SparkSession, settings: Settings) -> None:
    """Loads the model where chunks will be embedded before the first upload arrives, so the
    first student's document does not wait for Python workers to start and load it."""
    started = time.perf_counter()
    if settings.embedding.placement == "driver":
        from processing.embedding import get_embedder

        get_embedder(settings.embedding).encode(["warm-up"])
    else:
        slots = spark.sparkContext.defaultParallelism
        spark.sparkContext.setJobDescription("load the embedding model in each Python worker")
        spark.sparkContext.parallelize(range(slots), slots).mapPartitions(
            warm_up_partition(settings.embedding, settings.embedding.executor_threads)
        ).collect()
    log.info("embedding model loaded (%s) in %.1f s", settings.embedding.placement, time.perf_counter() - started)


def _texts(document: ParsedDocument, group: ChunkGroup, per_task: int) -> list[str]:
    # The section context too (``Chunk.embedding_text``): the stored text stays the chunk's own.
    return [c.embedding_text for c in document.chunks[group.begin : group.begin + per_task]]


def embed(
    spark: SparkSession, settings: Settings, documents: Sequence[ParsedDocument], *, report: ReportProgress
) -> list[EmbeddedDocument]:
    """Embeds every chunk, in Spark Python workers or on the driver, reporting progress."""
    import numpy as np

    if not documents:
        return []
    per_task = settings.ingest.chunks_per_task
    groups = chunk_groups([len(d.chunks) for d in documents], per_task)
    tracker = ProgressTracker(
        pages_totals=[d.pages_total for d in documents],
        spans=[[(c.page_start, c.page_end) for c in d.chunks] for d in documents],
        groups=groups,
        per_task=per_task,
        started=[d.upload.started for d in documents],
    )
    lock = threading.Lock()

    def completed(group_ids: frozenset[int]) -> None:
        with lock:  # the poller thread and the final call may overlap
            for update in tracker.complete(group_ids):
                report(update)

    vectors = [np.zeros((len(d.chunks), DIMENSION), dtype=np.float32) for d in documents]
    if settings.embedding.placement == "driver":
        from processing.embedding import get_embedder

        embedder = get_embedder(settings.embedding)
        for group in groups:
            texts = _texts(documents[group.index], group, per_task)
            vectors[group.index][group.begin : group.begin + len(texts)] = embedder.encode(texts)
            completed(frozenset([group.group_id]))
    else:
        sc = spark.sparkContext
        accumulator = sc.accumulator(frozenset(), _SetParam())
        payload = [(g.group_id, g.index, g.begin, _texts(documents[g.index], g, per_task)) for g in groups]
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(0.25):
                completed(accumulator.value)

        poller = threading.Thread(target=poll, daemon=True, name="ingest-progress")
        poller.start()
        try:
            sc.setJobDescription(f"embed {sum(len(d.chunks) for d in documents)} chunks in {len(groups)} tasks")
            run = embed_partition(settings.embedding, settings.embedding.executor_threads, accumulator)
            results = sc.parallelize(payload, len(payload)).mapPartitions(run).collect()
        finally:
            stop.set()
            poller.join()
        for _, index, begin, blob in results:
            block = np.frombuffer(blob, dtype=np.float32).reshape(-1, DIMENSION)
            vectors[index][begin : begin + len(block)] = block
        completed(frozenset(g.group_id for g in groups))
    return [EmbeddedDocument(document, vectors[i]) for i, document in enumerate(documents)]
