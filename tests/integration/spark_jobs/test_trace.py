"""A trace id followed from the upload's 202 answer, through the Kafka header, to the ingestion
stream's log lines (``lakehouse trace``'s reader), and the stream's metrics scraped over HTTP."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from api.context import JsonLogFormatter, install_log_record_factory
from api.main import create_app
from cli.trace import journey
from core.events import TOPIC_DOCUMENTS_UPLOADED
from processing.samples import short_pdf
from spark_jobs.ingest.logs import JsonLineFormatter
from spark_jobs.ingest.metrics import StreamMetrics
from tests.integration.api.api_testkit import create_course, derive, sign_up
from tests.integration.spark_jobs.ingest_testkit import RecordingSink

INCOMING_TRACE = uuid.uuid4().hex
INCOMING = f"00-{INCOMING_TRACE}-{uuid.uuid4().hex[:16]}-01"


class _Capture:
    """A JSON-lines file handler on one logger (INFO and up) for the length of a ``with``."""

    def __init__(self, name: str, path: Path, formatter: logging.Formatter) -> None:
        self.logger, self.handler = logging.getLogger(name), logging.FileHandler(path)
        self.handler.setFormatter(formatter)

    def __enter__(self) -> _Capture:
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_trace_id_follows_an_upload_into_the_stream_logs(api_settings, spark, tmp_path):
    settings = derive(
        api_settings,
        kafka={"topic_prefix": f"tr{uuid.uuid4().hex[:8]}."},
        lake={"root": str(tmp_path / "lake"), "checkpoint_root": str(tmp_path / "checkpoints")},
        lancedb={"uri": str(tmp_path / "lancedb")},
        object_store={"local_root": tmp_path / "objects"},
    )
    api_log, stream_log = tmp_path / "api.log", tmp_path / "stream.log"
    install_log_record_factory()  # request ids on the API's lines, as configure_logging does
    pdf = short_pdf(f"tracing {uuid.uuid4()}", pages=2)
    with _Capture("api", api_log, JsonLogFormatter()), TestClient(create_app(settings)) as client:
        teacher = sign_up(client, role="instructor")
        course = create_course(client, teacher)
        answer = client.post(
            f"/v1/courses/{course['id']}/documents",
            files=[("files", ("traced.pdf", pdf, "application/pdf"))],
            headers={**teacher.headers, "traceparent": INCOMING},
        )
        assert answer.status_code == 202, answer.text
        [job] = answer.json()["jobs"]
        # A second upload without a traceparent starts a trace of its own.
        fresh = client.post(
            f"/v1/courses/{course['id']}/documents",
            files=[("files", ("other.pdf", short_pdf(f"other {uuid.uuid4()}"), "application/pdf"))],
            headers=teacher.headers,
        )
        assert fresh.status_code == 202, fresh.text
    document_id, trace_id = job["document_id"], job["trace_id"]
    assert trace_id == INCOMING_TRACE  # the caller's trace is continued
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.json()["jobs"][0]["trace_id"])
    assert fresh.json()["jobs"][0]["trace_id"] != trace_id

    # The Kafka message carries the upload span's traceparent: same trace, the API's span as parent.
    from streaming.kafka import json_consumer

    consumer = json_consumer(
        settings.kafka, settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED), group_id=None, consumer_timeout_ms=4000
    )
    try:
        headers = {m.value["document_id"]: dict(m.headers) for m in consumer}
    finally:
        consumer.close()
    header = headers[document_id]["traceparent"].decode()
    assert header.startswith(f"00-{trace_id}-") and header != INCOMING

    from spark_jobs.ingest_documents import run_available_now

    metrics = StreamMetrics()
    started = time.perf_counter()
    with _Capture("spark_jobs.ingest_documents", stream_log, JsonLineFormatter()):
        run_available_now(settings, spark=spark, sink=RecordingSink(), metrics=metrics)
    stream_seconds = time.perf_counter() - started

    lines = journey(document_id, [api_log, stream_log])
    [access] = [line for line in lines if line.get("path")]  # the POST's access line, by its request id
    assert (access["method"], access["status"]) == ("POST", 202), access
    stages = [line["stage"] for line in lines if line.get("stage")]
    assert stages == ["queued", "received", "started", "searchable", "indexed"], lines
    assert {line["trace_id"] for line in lines if line.get("stage")} == {trace_id}
    assert all(line.get("document_id") in (None, document_id) for line in lines)
    stream_lines = [json.loads(raw) for raw in stream_log.read_text().splitlines()]
    assert {line["trace_id"] for line in stream_lines if line.get("document_id") == document_id} == {trace_id}

    port = metrics.serve(0)
    try:
        deadline = time.monotonic() + 15
        body = _scrape(port)
        while "lakehouse_stream_lag_messages{" not in body and time.monotonic() < deadline:
            time.sleep(0.2)  # the lag comes with a progress event, delivered asynchronously
            body = _scrape(port)
    finally:
        metrics.close()
    assert "lakehouse_stream_input_rows_total 2.0" in body
    assert 'lakehouse_stream_documents_total{outcome="indexed"} 2.0' in body
    assert re.search(r"lakehouse_stream_batch_duration_seconds_count [1-9]", body)
    topic = settings.kafka.topic(TOPIC_DOCUMENTS_UPLOADED)
    assert f'lakehouse_stream_lag_messages{{topic="{topic}"}} 0.0' in body, body
    print(f"stream run {stream_seconds:.1f} s; journey of {document_id}: {len(lines)} lines")
