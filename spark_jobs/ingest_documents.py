"""Streaming ingestion: ``documents.uploaded`` -> bronze -> pypdf / chunks / embeddings -> silver
Delta tables + LanceDB ``chunks``, with live progress and dead letters.

Run continuously (processing-time trigger) or with ``--available-now`` (backfills, tests)::

    python -m spark_jobs.ingest_documents [--available-now] [--trigger-seconds 2]

This module wires the stream (Kafka source, foreachBatch handler, checkpoint, trigger, the
readiness heartbeat) and holds ``main``; each micro-batch runs the steps of
``spark_jobs.ingest.batch.DocumentIngestor`` (see ``spark_jobs/ingest/``).

Exactly once: the checkpoint lives under ``lake.checkpoint_root``; every write is keyed, so a
micro-batch replayed after a crash rewrites nothing. A document whose ``silver/documents`` row
is already final is not processed again (its outcome is re-reported, with the same event id).
A document's own problem (bad PDF, missing object, no text) fails that document only; an
unreachable object store is retried with backoff first; an infrastructure error fails the
micro-batch, and the restarted stream replays it.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.events import TOPIC_DOCUMENTS_FAILED, TOPIC_DOCUMENTS_INDEXED, TOPIC_DOCUMENTS_UPLOADED
from core.settings import PROJECT_ROOT, Settings
from core.shard_map import ShardMapMismatch
from lake import tables
from spark_jobs.ingest.batch import BatchStats, DocumentIngestor
from spark_jobs.ingest.embed import warm_up_embedders
from spark_jobs.ingest.heartbeat import heartbeat_listener, stream_is_ready
from spark_jobs.ingest.logs import configure_json_logging
from spark_jobs.ingest.metrics import StreamMetrics, metrics_listener
from spark_jobs.ingest.status_sinks import DocumentStatusSink, FanOutSink, RedisKafkaStatusSink
from spark_jobs.status_airflow import AirflowAssetSink
from spark_jobs.status_postgres import PostgresStatusSink

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

    from lake.store import ObjectStore

__all__ = [
    "JOB_NAME",
    "BatchStats",
    "DocumentIngestor",
    "DocumentStatusSink",
    "FanOutSink",
    "RedisKafkaStatusSink",
    "checkpoint_location",
    "main",
    "prepare",
    "run_available_now",
    "spark_session",
    "start_stream",
    "stream_is_ready",
]

log = logging.getLogger("spark_jobs.ingest_documents")
JOB_NAME = "ingest_documents"


def checkpoint_location(settings: Settings) -> str:
    root = settings.lake.checkpoint_root.rstrip("/")
    return f"{root}/{JOB_NAME}" if "://" in root else str(Path(root).resolve() / JOB_NAME)


def stream_app_id(settings: Settings) -> str:
    """The bronze writer's txnAppId: stable for one checkpoint, different for another."""
    return f"{JOB_NAME}-{hashlib.sha1(checkpoint_location(settings).encode()).hexdigest()[:16]}"  # noqa: S324


def spark_session(settings: Settings) -> SparkSession:
    """The job's SparkSession; Python workers must import this project (``lake``, ``spark_jobs``)."""
    from lake.spark import build_spark_session

    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *paths])
    spark = build_spark_session(settings, JOB_NAME)
    # Arrow for createDataFrame(pyarrow.Table) and friends.
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    return spark


def prepare(spark: SparkSession, settings: Settings) -> None:
    """Topics, tables and the embedding model exist before the first micro-batch."""
    from lake.migrations import apply_migrations as apply_lake_migrations
    from processing.embedding import ensure_onnx_int8, resolve_precision
    from streaming.kafka import ensure_topics

    topics = (TOPIC_DOCUMENTS_UPLOADED, TOPIC_DOCUMENTS_INDEXED, TOPIC_DOCUMENTS_FAILED)
    ensure_topics(settings.kafka, [settings.kafka.topic(t) for t in topics])
    tables.ensure_tables(spark, settings.lake, change_data_feed=settings.ingest.change_data_feed)
    apply_lake_migrations(settings)  # columns added in code exist before the first write needs them
    # `auto` is calibrated here, once per machine (cached on disk), before any worker loads the model.
    precision = resolve_precision(settings.embedding.precision, settings.embedding)
    if precision == "int8":
        ensure_onnx_int8(settings.embedding)  # export once here, not in two workers at once
    embedding = settings.embedding
    log.info("embedding: %s, %s precision, on the %s", embedding.model_package, precision, embedding.placement)
    warm_up_embedders(spark, settings)


def start_stream(
    spark: SparkSession,
    settings: Settings,
    sink: DocumentStatusSink,
    *,
    available_now: bool,
    trigger_seconds: float | None = None,
    raw_store: ObjectStore | None = None,
    metrics: StreamMetrics | None = None,
) -> tuple[StreamingQuery, DocumentIngestor]:
    """Starts the Kafka -> foreachBatch stream with its heartbeat; returns the query and its batch
    handler. ``raw_store`` replaces the configured object store for reading raw uploads;
    ``metrics`` (optional) receives each batch's figures and the lag."""
    ingestor = DocumentIngestor(
        spark, settings, sink, app_id=stream_app_id(settings), raw_store=raw_store, metrics=metrics
    )
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.servers)
        .option("subscribe", settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED))
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.ingest.max_offsets_per_trigger)
        .option("failOnDataLoss", "false")
        .option("includeHeaders", "true")  # the upload's traceparent
        .load()
    )
    writer = (
        source.writeStream.queryName(JOB_NAME)
        .foreachBatch(ingestor.process_batch)
        .option("checkpointLocation", checkpoint_location(settings))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{trigger_seconds or settings.ingest.trigger_seconds} seconds")
    listeners = [heartbeat_listener(settings, query_name=JOB_NAME)]
    if metrics is not None:
        listeners.append(metrics_listener(metrics, query_name=JOB_NAME))
    for listener in listeners:
        spark.streams.addListener(listener)
    try:
        query = writer.start()
    except BaseException:
        for listener in listeners:
            spark.streams.removeListener(listener)
        raise
    _LISTENERS[query.id] = listeners
    return query, ingestor


# The listeners of each started query, removed once the caller is done with the query.
_LISTENERS: dict[str, list[StreamingQueryListener]] = {}


def stop_stream(spark: SparkSession, query: StreamingQuery) -> None:
    """Stops the query (if running) and removes its heartbeat listener."""
    if query.isActive:
        query.stop()
    for listener in _LISTENERS.pop(query.id, []):
        spark.streams.removeListener(listener)
        if hasattr(listener, "clear"):  # the heartbeat, detached first: no late progress event rewrites it
            listener.clear()


def run_available_now(
    settings: Settings,
    *,
    spark: SparkSession | None = None,
    sink: DocumentStatusSink | None = None,
    raw_store: ObjectStore | None = None,
    metrics: StreamMetrics | None = None,
) -> list[BatchStats]:
    """Processes everything on the topic now, then returns the per-batch statistics."""
    spark = spark or spark_session(settings)
    own_sink = sink is None
    sink = sink or RedisKafkaStatusSink(settings)
    prepare(spark, settings)
    query, ingestor = start_stream(spark, settings, sink, available_now=True, raw_store=raw_store, metrics=metrics)
    try:
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"ingest stream failed: {query.exception()}")
    finally:
        stop_stream(spark, query)
        if own_sink:
            sink.close()
    return ingestor.stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest_documents", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--available-now", action="store_true", help="process what is on the topic, then stop")
    parser.add_argument("--trigger-seconds", type=float, default=None, help="processing-time trigger interval")
    args = parser.parse_args(argv)
    configure_json_logging()

    settings = Settings()
    metrics = StreamMetrics()
    if settings.ingest.metrics_port:
        try:
            port = metrics.serve(settings.ingest.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on 127.0.0.1:%d (ingest.metrics_port): %s",
                      settings.ingest.metrics_port, exc)  # fmt: skip
            return 2
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
    postgres_sink = PostgresStatusSink(settings)
    try:
        postgres_sink.records  # noqa: B018 - opens the shards: refuses a shard map other than the recorded one
    except ShardMapMismatch as exc:
        log.error("%s", exc)
        return 2
    spark = spark_session(settings)
    # The durable rows first, then Redis/Kafka (whoever is notified reads a final row), then
    # the Airflow asset event that schedules the study DAGs.
    sink = FanOutSink(postgres_sink, RedisKafkaStatusSink(settings), AirflowAssetSink(settings))
    try:
        if args.available_now:
            stats = run_available_now(settings, spark=spark, sink=sink, metrics=metrics)
            log.info("available-now run done: %d batch(es), %d indexed, %d failed",
                     len(stats), sum(s.indexed for s in stats), sum(s.failed for s in stats))  # fmt: skip
            return 0
        prepare(spark, settings)
        query, _ = start_stream(
            spark, settings, sink, available_now=False, trigger_seconds=args.trigger_seconds, metrics=metrics
        )
        log.info("%s: stream started, reading %s", JOB_NAME, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED))
        try:
            query.awaitTermination()
        finally:
            stop_stream(spark, query)
        return 0 if query.exception() is None else 1
    finally:
        sink.close()
        metrics.close()


if __name__ == "__main__":
    sys.exit(main())
