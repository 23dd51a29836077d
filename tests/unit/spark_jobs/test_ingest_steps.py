"""The ingestion job's pure steps, without Spark: page ranges, event parsing, progress, ids, reads."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import uuid
from datetime import UTC, datetime

import pytest

from core.events import DocumentUploaded
from core.settings import ObjectStoreSettings
from lake.store import LocalObjectStore
from processing import samples
from spark_jobs.ingest.documents import FailedDocument, OpenedDocument
from spark_jobs.ingest.events import SourceEvent, Upload, outcome_event_id, parse_uploaded, sort_events
from spark_jobs.ingest.pages import extraction_ranges, page_ranges
from spark_jobs.ingest.progress import ProgressTracker, chunk_groups
from spark_jobs.ingest.raw import RawUploadReader, RetryPolicy, is_transient, open_document


def _event(**changes) -> DocumentUploaded:
    values = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2024, 5, 1, tzinfo=UTC),
        "document_id": "doc-1",
        "course_id": "course-1",
        "version": 1,
        "job_id": "job-1",
        "uploaded_by": "student-1",
        "object_uri": "file:///nowhere.pdf",
        "filename": "a.pdf",
        "size_bytes": 10,
        "sha256": "0" * 64,
    }
    return DocumentUploaded(**{**values, **changes})


def _source(value: str | None, offset: int = 0, partition: int = 0) -> SourceEvent:
    return SourceEvent("t.documents.uploaded", partition, offset, None, value)


# ---- page ranges


def test_page_ranges_cover_every_page_once_in_order():
    assert page_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert page_ranges(4, 4) == [(0, 4)]
    assert page_ranges(0, 4) == []
    covered = [page for start, stop in page_ranges(101, 7) for page in range(start, stop)]
    assert covered == list(range(101))


def test_page_ranges_reject_an_empty_task():
    with pytest.raises(ValueError):
        page_ranges(10, 0)


def test_extraction_ranges_give_one_range_per_slot_but_never_fewer_pages_than_a_task():
    # 500 pages on 2 slots: 2 ranges of 250; 30 pages: one range (25 is the floor per task).
    assert extraction_ranges([500, 30], pages_per_task=25, slots=2) == [(0, 0, 250), (0, 250, 500), (1, 0, 25),
                                                                         (1, 25, 30)]  # fmt: skip
    assert extraction_ranges([3], pages_per_task=25, slots=0) == [(0, 0, 3)]


# ---- upload events


def test_parse_uploaded_accepts_a_valid_event():
    event = _event()
    assert parse_uploaded(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "invalid document.uploaded event: empty message"),
        ("this is { not json", "invalid document.uploaded event: message: "),
        (json.dumps({"event_id": "x"}), "invalid document.uploaded event: occurred_at: Field required"),
    ],
)
def test_parse_uploaded_gives_a_dead_letter_reason_for_an_invalid_event(value, reason):
    with pytest.raises(ValueError) as raised:
        parse_uploaded(value)
    assert str(raised.value).startswith(reason)


def test_sort_events_dead_letters_invalid_ones_and_keeps_one_upload_per_version():
    good, again = _event(document_id="d1"), _event(document_id="d1")  # same version, two event ids
    other = _event(document_id="d2")
    sources = [
        _source(other.model_dump_json(), offset=3),
        _source("garbage", offset=1),
        _source(good.model_dump_json(), offset=0),
        _source(again.model_dump_json(), offset=2),
    ]
    result = sort_events(sources, started=1.0)
    assert [u.event for u in result.uploads] == [good, other]  # in offset order, the first copy wins
    assert result.duplicates == 1
    assert [d.raw for d in result.dead_letters] == ["garbage"]
    assert result.dead_letters[0].reason.startswith("invalid document.uploaded event")


# ---- outcome event ids


def test_outcome_event_ids_are_deterministic_and_distinct_per_kind():
    event = _event()
    assert outcome_event_id("indexed", event) == outcome_event_id("indexed", event.model_copy())
    assert outcome_event_id("indexed", event) != outcome_event_id("failed", event)
    assert outcome_event_id("failed", None, "raw-a") == outcome_event_id("failed", None, "raw-a")
    assert outcome_event_id("failed", None, "raw-a") != outcome_event_id("failed", None, "raw-b")
    # A new upload event of the same document (a retry) is a new outcome.
    assert outcome_event_id("indexed", event) != outcome_event_id("indexed", _event())
    uuid.UUID(outcome_event_id("indexed", event))


# ---- progress and ETA


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _tracker(clock, *, min_interval_s=0.0):
    # Document 0: 10 pages, 10 chunks of one page each, 2 per group (5 groups);
    # document 1: 4 pages, 2 chunks each spanning two pages (1 group).
    spans = [[(p, p) for p in range(1, 11)], [(1, 2), (3, 4)]]
    groups = chunk_groups([10, 2], 2)
    tracker = ProgressTracker(
        pages_totals=[10, 4], spans=spans, groups=groups, per_task=2, started=[0.0, 0.0], clock=clock,
        min_interval_s=min_interval_s,
    )  # fmt: skip
    return tracker


def test_chunk_groups_number_groups_in_document_order():
    groups = chunk_groups([5, 0, 2], 2)
    assert [(g.group_id, g.index, g.begin) for g in groups] == [(0, 0, 0), (1, 0, 2), (2, 0, 4), (3, 2, 0)]


def test_progress_reports_intermediate_pages_done_that_never_go_down_and_an_eta():
    clock = _Clock()
    tracker = _tracker(clock)
    seen: dict[int, list[int]] = {0: [], 1: []}
    # Groups finish out of order, some twice (an accumulator read again), as Spark tasks do.
    for gid in [2, 0, 0, 4, 1, 2, 3, 5]:
        clock.now += 1.0
        for update in tracker.complete([gid]):
            seen[update.index].append(update.pages_done)
            if update.pages_done < update.pages_total:
                assert update.eta_s is not None and update.eta_s > 0
            else:
                assert update.eta_s == 0
    assert seen[0] == sorted(seen[0]) and len(set(seen[0])) == len(seen[0]), seen
    assert any(0 < done < 10 for done in seen[0]), seen
    assert seen[0][-1] == 10 and seen[1] == [4]
    assert tracker.pages_done() == [10, 4]


def test_progress_eta_is_remaining_pages_at_the_observed_rate():
    clock = _Clock()
    tracker = _tracker(clock)
    clock.now = 4.0
    [update] = tracker.complete([0])  # pages 1-2 of 10 done after 4 s: 8 pages left at 2 s a page
    assert (update.index, update.pages_done, update.eta_s) == (0, 2, pytest.approx(16.0))


def test_progress_is_rate_limited_except_for_the_final_report():
    clock = _Clock()
    tracker = _tracker(clock, min_interval_s=10.0)
    assert [u.pages_done for u in tracker.complete([0])] == [2]
    clock.now = 1.0
    assert tracker.complete([1]) == []  # too soon after the last report
    clock.now = 2.0
    updates = tracker.complete([2, 3, 4, 5])
    assert sorted((u.index, u.pages_done) for u in updates) == [(0, 10), (1, 4)]


def test_progress_counts_pages_without_chunks_as_done():
    tracker = ProgressTracker(
        pages_totals=[5], spans=[[(2, 3)]], groups=chunk_groups([1], 4), per_task=4, started=[0.0]
    )
    assert tracker.pages_done() == [3]


# ---- raw upload reads


def _refused() -> ConnectionRefusedError:
    """A real refused connection: a port that was just bound, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError as exc:
        return exc
    raise AssertionError("the closed port accepted a connection")


class _FlakyStore:
    def __init__(self, store, failures: int) -> None:
        self.store, self.failures, self.reads = store, failures, 0

    def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        if self.reads <= self.failures:
            raise _refused()
        return self.store.get_bytes(key)


def _stored(tmp_path, data: bytes) -> tuple[LocalObjectStore, ObjectStoreSettings, Upload]:
    settings = ObjectStoreSettings(mode="local", local_root=tmp_path)
    store = LocalObjectStore(tmp_path)
    store.put_stream("raw/a.pdf", io.BytesIO(data))
    event = _event(object_uri=store.uri("raw/a.pdf"), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    return store, settings, Upload(_source(None), event, started=0.0)


def test_open_document_retries_an_unreachable_store_and_then_reads_the_pdf(tmp_path):
    data = samples.short_pdf("Retried reads still index.", pages=2)
    store, settings, upload = _stored(tmp_path, data)
    flaky, waits = _FlakyStore(store, failures=2), []
    reader = RawUploadReader(settings, RetryPolicy(3, 0.5, 0.75), store=flaky, sleep=waits.append)  # type: ignore[arg-type]
    opened = open_document(upload, reader)
    assert isinstance(opened, OpenedDocument) and opened.pages_total == 2 and opened.data == data
    assert flaky.reads == 3 and waits == [0.5, 0.75]  # exponential, capped


def test_open_document_fails_with_the_cause_once_the_store_stays_unreachable(tmp_path):
    store, settings, upload = _stored(tmp_path, samples.short_pdf("never read"))
    flaky = _FlakyStore(store, failures=10)
    reader = RawUploadReader(settings, RetryPolicy(3, 0.0, 0.0), store=flaky, sleep=lambda _: None)  # type: ignore[arg-type]
    failed = open_document(upload, reader)
    assert isinstance(failed, FailedDocument) and flaky.reads == 3
    assert failed.reason.startswith("object store unreachable after 3 attempts: ConnectionRefusedError")


def test_open_document_fails_permanent_errors_at_once_with_their_reason(tmp_path):
    data = samples.short_pdf("hash me")
    store, settings, upload = _stored(tmp_path, data)
    reader = RawUploadReader(settings, RetryPolicy(3, 0.0, 0.0), store=store, sleep=pytest.fail)
    mismatch = open_document(Upload(upload.source, upload.event.model_copy(update={"sha256": "1" * 64}), 0.0), reader)
    assert isinstance(mismatch, FailedDocument) and mismatch.reason.startswith("content hash mismatch")
    store.delete("raw/a.pdf")
    missing = open_document(upload, reader)
    assert isinstance(missing, FailedDocument) and missing.reason.startswith("raw upload missing at ")
    store.put_stream("raw/a.pdf", io.BytesIO(samples.corrupt_pdf()))
    corrupt = open_document(
        Upload(
            upload.source,
            upload.event.model_copy(update={"sha256": hashlib.sha256(samples.corrupt_pdf()).hexdigest()}),
            0.0,
        ),
        reader,
    )
    assert isinstance(corrupt, FailedDocument) and corrupt.reason.startswith("corrupt PDF")


def test_is_transient_tells_network_and_5xx_errors_from_missing_objects():
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert is_transient(_refused()) and is_transient(TimeoutError())
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(client_error("InternalError", 500)) and is_transient(client_error("SlowDown", 503))
    assert not is_transient(client_error("NoSuchKey", 404)) and not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(FileNotFoundError()) and not is_transient(ValueError("bad URI"))


# ---- section context: title and outline carried from the raw PDF to what is embedded


def _outlined_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    plain = samples.short_pdf("Overlays show items one at a time.", pages=3)  # no metadata title
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
    writer.add_outline_item("1 Overlays", 1)  # page 2
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_the_outline_read_at_opening_reaches_what_is_embedded_but_not_the_stored_text(tmp_path):
    from core.settings import IngestSettings
    from spark_jobs.ingest import embed, extract

    store, settings, upload = _stored(tmp_path, _outlined_pdf())
    reader = RawUploadReader(settings, RetryPolicy(1, 0.0, 0.0), store=store, sleep=pytest.fail)
    opened = open_document(upload, reader)
    assert isinstance(opened, OpenedDocument)
    assert opened.title == "a" and opened.outline == ((2, ("1 Overlays",)),)  # no PDF title: the file name's stem
    texts = [(number, f"Page {number}. " + "Overlays show items one at a time. " * 20) for number in (1, 2, 3)]
    [parsed] = extract.gather_pages([opened], [(0, texts, None)])
    chunked = extract.chunk(parsed, IngestSettings(chunk_size=300, chunk_overlap=0))
    assert not isinstance(chunked, FailedDocument)
    contexts = {c.page_start: c.context for c in chunked.chunks}
    assert contexts[1] == "a." and contexts[3] == "a. 1 Overlays"
    [group] = chunk_groups([len(chunked.chunks)], len(chunked.chunks))
    embedded = embed._texts(chunked, group, len(chunked.chunks))
    assert embedded == [f"{c.context}\n{c.text}" for c in chunked.chunks]
    assert not any(c.text.startswith("a.") for c in chunked.chunks)  # the stored text is the chunk's own


def test_an_outline_that_cannot_be_read_in_time_leaves_the_document_without_context():
    from processing.pdf import Limits, bounded_outline

    assert bounded_outline(_outlined_pdf(), Limits(timeout_s=0)) == ("", [])  # out of time: no context, no error
    assert bounded_outline(samples.corrupt_pdf(), Limits()) == ("", [])
