"""The stream's Prometheus metrics: batch duration, input rows, documents/s, failures by reason
and the lag behind the topic's end offsets, on the job's own registry.

``DocumentIngestor`` updates the batch figures at the end of each micro-batch; the lag comes from
each query progress event (a ``StreamingQueryListener``): the Kafka source reports the offsets it
read up to (``endOffset``) and the topic's latest offsets (``latestOffset``). ``main()`` serves the
registry on loopback at ``ingest.metrics_port``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from pyspark.sql.streaming.listener import StreamingQueryListener

log = logging.getLogger(__name__)
BATCH_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
REASON_MAX_CHARS = 48


def failure_kind(reason: str) -> str:
    """A bounded label for a failure reason: its words before the first colon, as a slug
    ("not a PDF: ..." -> ``not_a_pdf``), so the label set stays small."""
    head = reason.split(":", 1)[0].strip().lower()
    slug = re.sub(r"[^a-z0-9]+", "_", head).strip("_")[:REASON_MAX_CHARS]
    return slug or "unknown"


def lag_by_topic(end_offset: str | None, latest_offset: str | None) -> dict[str, int]:
    """Messages not read yet per topic: latest minus end offset, summed over partitions (JSON of
    Spark's Kafka source progress, e.g. ``{"topic": {"0": 12}}``)."""
    if not end_offset or not latest_offset:
        return {}
    end, latest = json.loads(end_offset), json.loads(latest_offset)
    lag: dict[str, int] = {}
    for topic, partitions in latest.items():
        read = end.get(topic, {})
        lag[topic] = sum(max(int(offset) - int(read.get(p, 0)), 0) for p, offset in partitions.items())
    return lag


class BatchFigures(Protocol):
    """What the metrics read of a finished micro-batch (``spark_jobs.ingest.batch.BatchStats``)."""

    events: int
    indexed: int
    failed: int
    failure_reasons: list[str]


class StreamMetrics:
    """The ingestion stream's metrics on its own registry (several streams in one test process
    do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_duration = Histogram(
            "lakehouse_stream_batch_duration_seconds", "Wall time of a micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.input_rows = Counter("lakehouse_stream_input_rows", "Kafka messages read by micro-batches", registry=r)
        self.documents = Counter(
            "lakehouse_stream_documents", "Documents finished, by outcome", ["outcome"], registry=r
        )
        self.documents_per_second = Gauge(
            "lakehouse_stream_documents_per_second", "Documents finished per second in the last batch", registry=r
        )
        self.failures = Counter(
            "lakehouse_stream_failures", "Failed documents and dead letters, by reason", ["reason"], registry=r
        )
        self.lag = Gauge(
            "lakehouse_stream_lag_messages", "Messages behind the topic's end offsets", ["topic"], registry=r
        )
        self._server: Any = None

    def observe_batch(self, stats: BatchFigures, *, seconds: float) -> None:
        """The figures of one finished micro-batch."""
        self.batch_duration.observe(seconds)
        self.input_rows.inc(stats.events)
        self.documents.labels("indexed").inc(stats.indexed)
        self.documents.labels("failed").inc(stats.failed)
        self.documents_per_second.set((stats.indexed + stats.failed) / seconds if seconds > 0 else 0.0)
        for reason in stats.failure_reasons:
            self.failures.labels(failure_kind(reason)).inc()

    def observe_progress(self, sources: list[Any]) -> None:
        """The lag of each Kafka source of a query progress event."""
        for source in sources:
            for topic, lag in lag_by_topic(source.endOffset, getattr(source, "latestOffset", None)).items():
                self.lag.labels(topic).set(lag)

    def serve(self, port: int, *, host: str = "127.0.0.1") -> int:
        """Serves the registry over HTTP on loopback; returns the bound port (``0`` picks one)."""
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def metrics_listener(metrics: StreamMetrics, *, query_name: str) -> StreamingQueryListener:
    """A listener that sets the lag of the query named ``query_name`` at every progress event."""
    from pyspark.sql.streaming import StreamingQueryListener

    class MetricsListener(StreamingQueryListener):
        def __init__(self) -> None:
            self.query_id: str | None = None

        def onQueryStarted(self, event: Any) -> None:
            if event.name == query_name:
                self.query_id = str(event.id)

        def onQueryProgress(self, event: Any) -> None:
            if str(event.progress.id) != self.query_id:
                return
            try:
                metrics.observe_progress(list(event.progress.sources))
            except Exception:
                log.warning("stream lag not measured", exc_info=True)

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            pass

    return MetricsListener()
