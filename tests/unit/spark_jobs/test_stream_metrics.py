import io
import json
import logging
import urllib.request
from datetime import UTC, datetime
from types import SimpleNamespace

from core.events import DocumentUploaded
from spark_jobs.ingest.batch import BatchStats
from spark_jobs.ingest.events import SourceEvent, Upload
from spark_jobs.ingest.logs import JsonLineFormatter, log_stage
from spark_jobs.ingest.metrics import StreamMetrics, failure_kind, lag_by_topic

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_failure_kind_is_a_bounded_slug():
    assert failure_kind("not a PDF: the file does not start with %PDF-") == "not_a_pdf"
    assert failure_kind("invalid document.uploaded event: version: ...") == "invalid_document_uploaded_event"
    assert failure_kind(":") == "unknown"
    assert len(failure_kind("x" * 500)) <= 48


def test_lag_by_topic_sums_partitions_behind_latest():
    end = json.dumps({"t.documents.uploaded": {"0": 10, "1": 4}})
    latest = json.dumps({"t.documents.uploaded": {"0": 12, "1": 4, "2": 3}})
    assert lag_by_topic(end, latest) == {"t.documents.uploaded": 5}
    assert lag_by_topic(None, latest) == {}


def test_metrics_are_scraped_over_http_after_a_batch():
    metrics = StreamMetrics()
    port = metrics.serve(0)
    try:
        stats = BatchStats(3, events=4, indexed=2, failed=2, failure_reasons=["not a PDF: x", "not a PDF: y"])
        metrics.observe_batch(stats, seconds=2.0)
        source = SimpleNamespace(endOffset='{"topic": {"0": 4}}', latestOffset='{"topic": {"0": 9}}')
        metrics.observe_progress([source])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    assert "lakehouse_stream_input_rows_total 4.0" in body
    assert "lakehouse_stream_batch_duration_seconds_count 1.0" in body
    assert "lakehouse_stream_documents_per_second 2.0" in body
    assert 'lakehouse_stream_failures_total{reason="not_a_pdf"} 2.0' in body
    assert 'lakehouse_stream_lag_messages{topic="topic"} 5.0' in body


def test_stage_log_line_carries_the_trace_id_from_the_header():
    event = DocumentUploaded(
        event_id="e1", occurred_at=datetime.now(UTC), document_id="d1", course_id="c1", version=1, job_id="j1",
        uploaded_by="u1", object_uri="file:///x.pdf", filename="x.pdf", size_bytes=1, sha256="0" * 64,
    )  # fmt: skip
    upload = Upload(SourceEvent("t", 0, 7, "d1", "{}", TRACEPARENT), event, started=0.0)
    logger = logging.getLogger("test.stream.stage")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLineFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_stage(logger, upload, "indexed", batch_id=5, reason="a\nb")
    finally:
        logger.removeHandler(handler)
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(record["span_id"]) == 16 and record["span_id"] != "00f067aa0ba902b7"  # the stage's own span
    assert (record["document_id"], record["job_id"], record["stage"], record["batch_id"]) == ("d1", "j1", "indexed", 5)
    assert record["reason"] == "a\nb"  # escaped inside one line
