from core.tracing import parse_traceparent, start_span

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_parse_traceparent_accepts_valid_and_bytes():
    parsed = parse_traceparent(INCOMING.encode())
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.flags) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )
    assert parsed.header == INCOMING


def test_parse_traceparent_refuses_malformed():
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", INCOMING[:-1], "01" + INCOMING[2:]):
        assert parse_traceparent(bad) is None, bad


def test_start_span_continues_incoming_trace():
    with start_span("upload", traceparent=INCOMING) as span:
        assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span.span_id != "00f067aa0ba902b7"
        assert parse_traceparent(span.traceparent).trace_id == span.trace_id


def test_start_span_without_parent_starts_new_trace():
    with start_span("upload", traceparent="not a traceparent") as first, start_span("upload") as second:
        assert parse_traceparent(first.traceparent) is not None
        assert first.trace_id != "0" * 32
        assert second.trace_id != first.trace_id  # no parent given: a new trace, even inside another span
