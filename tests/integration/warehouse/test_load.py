"""The warehouse load end to end on the real stack (PostgreSQL shards, Kafka, a Delta table) into an
embedded chdb warehouse: every analyst view equals the same figure computed here from PostgreSQL,
the lake and the events sent; a second load (incremental, then full) leaves identical counts and
checksums; a malformed analytics event lands in the dead-letter topic with its reason."""

from __future__ import annotations

import json
import math
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import numpy as np
import pytest
from psycopg.rows import dict_row

from tests.integration.api.api_testkit import shard_conn
from tests.integration.warehouse.warehouse_testkit import build_world, send_events, warehouse_settings

TABLES = ("dim_courses", "dim_documents", "fact_ingestion_jobs", "fact_quiz_attempts", "fact_reviews",
          "fact_api_events", "dim_quiz_items")  # fmt: skip


@pytest.fixture(scope="module")
def loaded(api_settings, tmp_path_factory):
    from warehouse.load import load_warehouse

    settings = warehouse_settings(api_settings, tmp_path_factory.mktemp("warehouse"), uuid.uuid4().hex[:10])
    world = build_world(settings)
    send_events(world)
    report = load_warehouse(settings)
    print(report.as_dict())
    return world, report


def _query(settings, sql: str) -> list[tuple]:
    from warehouse.client import warehouse_session

    with warehouse_session(settings.warehouse) as client:
        return client.query(sql).result_rows


def _pg(settings, sql: str) -> list[dict]:
    rows = []
    for shard in range(settings.postgres.shards):
        with shard_conn(settings, shard) as conn:
            conn.row_factory = dict_row
            rows += conn.execute(sql).fetchall()
    return rows


def _checksums(settings) -> dict[str, tuple]:
    sql = " UNION ALL ".join(
        f"SELECT '{t}', count(), groupBitXor(cityHash64(*)), (SELECT count() FROM {t}) FROM {t} FINAL" for t in TABLES
    )
    return {row[0]: row[1:] for row in _query(settings, sql)}


def test_load_reports_every_source_and_dead_letters(loaded):
    world, report = loaded
    by_source = {s.source: s for s in report.sources}
    assert set(by_source) == {"postgres", "lake", "analytics"}
    assert by_source["analytics"].rows == len(world.events)
    assert by_source["analytics"].dead_letters == world.malformed
    assert by_source["lake"].rows == len(world.items)


def test_malformed_events_land_in_the_dead_letter_topic_with_their_reason(loaded):
    from core.events import TOPIC_ANALYTICS_DLQ
    from streaming.kafka import json_consumer

    world, _report = loaded
    consumer = json_consumer(world.settings.kafka, world.settings.kafka.topic(TOPIC_ANALYTICS_DLQ), group_id=None,
                             consumer_timeout_ms=5000)  # fmt: skip
    letters = [record.value for record in consumer]
    consumer.close()
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 2, letters
    assert reasons[0].startswith("not an AnalyticsEvent"), reasons
    assert reasons[1] == "search.performed: property 'result_count' is missing", reasons
    assert any(letter["raw"] == "{not json" for letter in letters)
    loaded_ids = {r[0] for r in _query(world.settings, "SELECT event_id FROM fact_api_events FINAL")}
    assert "bad-1" not in loaded_ids and len(loaded_ids) == len(world.events)


def test_active_students_match_postgres_and_events(loaded):
    world, _ = loaded
    activity: dict[tuple, set] = defaultdict(set)
    for table, at in (("quiz_attempts", "created_at"), ("card_reviews", "reviewed_at")):
        for row in _pg(world.settings, f"SELECT course_id::text AS c, user_id::text AS u, {at} AS t FROM {table}"):
            activity[(row["c"], row["t"].astimezone(UTC).date())].add(row["u"])
    day = datetime.now(UTC).date()
    for event in world.events:  # sent just now: today (UTC)
        activity[(event["course_id"], day)].add(event["user_id"])
    expected = {(c, d): len(users) for (c, d), users in activity.items()}
    got = {(c, d): n for c, d, n in _query(world.settings, "SELECT * FROM v_daily_active_students")}
    assert got == expected
    weekly = {(c, w): n for c, w, n in _query(world.settings, "SELECT * FROM v_weekly_active_students")}
    assert sorted(weekly.values()) == sorted(expected.values())  # one day, so one week each


def test_ingestion_views_match_postgres_jobs(loaded):
    world, _ = loaded
    jobs = _pg(world.settings, "SELECT id::text AS id, kind, status, error, pages_total, created_at, updated_at,"
               " COALESCE(searchable_at, updated_at) AS searchable_at FROM jobs")  # fmt: skip
    done = [j for j in jobs if j["status"] == "succeeded" and j["kind"] == "ingest_document"]
    searchable, indexed = defaultdict(list), defaultdict(list)
    for j in done:
        day = j["created_at"].astimezone(UTC).date()
        searchable[day].append((j["searchable_at"] - j["created_at"]).total_seconds())
        indexed[day].append((j["updated_at"] - j["created_at"]).total_seconds())
    rows = {r[0]: r for r in _query(world.settings, "SELECT * FROM v_ingestion_latency")}
    assert rows.keys() == indexed.keys()
    for day in indexed:
        assert rows[day][1] == len(indexed[day])
        for got, q in zip(rows[day][2:5], (50, 95, 99), strict=True):
            assert got == pytest.approx(np.percentile(searchable[day], q), abs=0.002)
        for got, q in zip(rows[day][5:8], (50, 95, 99), strict=True):
            assert got == pytest.approx(np.percentile(indexed[day], q), abs=0.002)
        assert rows[day][2] < rows[day][5]  # text first: searchable before indexed
    # This world's jobs: searchable half way to indexed, in the fact table as recorded.
    facts = {r[0]: r[1:] for r in _query(world.settings, "SELECT job_id, dateDiff('millisecond', queued_at,"
             " searchable_at), dateDiff('millisecond', queued_at, indexed_at) FROM fact_ingestion_jobs FINAL"
             " WHERE outcome = 'succeeded'")}  # fmt: skip
    mine = [facts[j["id"]] for j in done if j["id"] in world.jobs]
    assert len(mine) == 4 and all(s == pytest.approx(i / 2, abs=5) for s, i in mine), mine  # ms
    # Taken up one second after the upload: queued 1 s, processing the rest, as PostgreSQL recorded.
    split = {r[0]: r[1:] for r in _query(world.settings, "SELECT job_id, queued_seconds, processing_seconds,"
             " total_seconds FROM fact_ingestion_jobs FINAL WHERE outcome = 'succeeded'")}  # fmt: skip
    for job_id in (j["id"] for j in done if j["id"] in world.jobs):
        queued, processing, total = split[job_id]
        assert queued == pytest.approx(1, abs=0.005) and processing == pytest.approx(total - 1, abs=0.005)
    hours = Counter()
    for j in done:
        hours[j["searchable_at"].astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)] += j[
            "pages_total"
        ]
    assert {h: p for h, p, _n in _query(world.settings, "SELECT * FROM v_pages_per_hour")} == dict(hours)
    failures = Counter(j["error"] for j in jobs if j["status"] == "failed")
    assert {r: n for r, n, _ in _query(world.settings, "SELECT * FROM v_failure_reasons")} == dict(failures)


def test_quiz_views_match_postgres_attempts_and_gold_items(loaded):
    from lake import gold

    world, _ = loaded
    attempts = _pg(
        world.settings,
        "SELECT course_id::text AS c, quiz_id AS q, score::float8 AS s, max_score::float8 AS m, answers"
        " FROM quiz_attempts",
    )
    buckets = Counter((a["c"], min(math.floor((10 * a["s"]) / a["m"]), 9)) for a in attempts)
    got = {(c, b): n for c, b, _r, n in _query(world.settings, "SELECT * FROM v_quiz_score_distribution")}
    assert got == dict(buckets)

    answers = defaultdict(list)  # item -> [(correct, attempt share, chosen)] of this test's quiz
    for a in attempts:
        if a["q"] != world.quiz_id:
            continue  # other tests of the session may have left attempts on the shared shards
        for answer in a["answers"]:
            answers[answer["item_id"]].append((int(answer["correct"]), a["s"] / a["m"], answer["chosen_option_id"]))
    analysis = {r[2]: r for r in _query(world.settings, "SELECT * FROM v_item_analysis") if r[1] == world.quiz_id}
    assert set(analysis) == set(answers)
    for item_id, rows in answers.items():
        _c, _q, _i, question, n, difficulty, discrimination, strong_n, _strong_correct, flags = analysis[item_id]
        correct = [c for c, _s, _p in rows]
        assert n == len(rows) and question.startswith("Question")
        assert difficulty == pytest.approx(sum(correct) / len(rows))
        if len(set(correct)) > 1:
            assert discrimination == pytest.approx(statistics.correlation(correct, [s for _c, s, _p in rows]))
        strong = [c for c, s, _p in rows if s >= 0.75]
        assert strong_n == len(strong)
        assert ("everyone_correct" in flags) == (sum(correct) == len(rows))
        assert ("strong_students_miss" in flags) == (bool(strong) and sum(strong) / len(strong) < 0.5)
    assert "everyone_correct" in analysis[world.items[0]["item_id"]][-1]

    items = gold.read_where(world.settings, gold.GOLD_QUIZ_ITEMS, quiz_id=world.quiz_id)
    options = {(r[2], r[3]): r for r in _query(world.settings, "SELECT * FROM v_item_options")}
    for item in items:
        picks = Counter(p for _c, _s, p in answers[item["item_id"]])
        for option in json.loads(item["options"]):
            row = options[(item["item_id"], option["option_id"])]
            assert row[5] == (option["option_id"] == item["correct_option_id"])
            assert row[6] == picks[option["option_id"]] and row[7] == len(answers[item["item_id"]])
            assert row[8] == pytest.approx(picks[option["option_id"]] / len(answers[item["item_id"]]))


def test_retention_and_low_score_searches_match_the_sources(loaded):
    world, _ = loaded
    reviews = _pg(world.settings, "SELECT course_id::text AS c, rating, due_before FROM card_reviews")
    expected = {}
    for course in {r["c"] for r in reviews}:
        repeat = [r for r in reviews if r["c"] == course and r["due_before"] is not None]
        # A course whose cards were only seen for the first time has no retention yet (NULL),
        # which other tests sharing these shards produce.
        retention = sum(r["rating"] > 1 for r in repeat) / len(repeat) if repeat else None
        expected[course] = (len([r for r in reviews if r["c"] == course]), retention)
    got = {r[0]: (r[1], r[6]) for r in _query(world.settings, "SELECT * FROM v_flashcard_retention")}
    assert got.keys() == expected.keys()
    assert any(retention is not None for _, retention in expected.values()), "no repeat review to check"
    for course, (n, retention) in expected.items():
        assert got[course][0] == n
        assert got[course][1] is None if retention is None else got[course][1] == pytest.approx(retention)

    low = sorted(e["query"] for e in world.events if e["name"] == "search.performed"
                 and (e["result_count"] == 0 or (e["top_score"] or 0) < 0.025))  # fmt: skip
    assert sorted(r[3] for r in _query(world.settings, "SELECT * FROM v_low_score_searches")) == low


def test_load_twice_leaves_identical_counts_and_checksums(loaded):
    from warehouse.load import load_warehouse

    world, _ = loaded
    before = _checksums(world.settings)
    assert all(final == plain for _t, (final, _x, plain) in before.items())  # merged: no duplicate left
    again = load_warehouse(world.settings)
    lake = next(s for s in again.sources if s.source == "lake")
    assert lake.rows == 0 and "+0 files" in lake.watermark  # nothing changed: no Delta file read
    assert _checksums(world.settings) == before
    full = load_warehouse(world.settings, full=True)
    assert full.rows >= sum(v[0] for k, v in before.items() if k not in ("fact_api_events",))
    assert _checksums(world.settings) == before


def test_sql_command_prints_a_view_as_csv_and_json_and_report_renders_every_view(loaded, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cli import warehouse as cli_warehouse
    from cli.main import app

    world, _ = loaded
    monkeypatch.setattr(cli_warehouse, "_settings", lambda: world.settings)
    runner = CliRunner()
    done = runner.invoke(app, ["sql", "SELECT course_id, reviews FROM v_flashcard_retention", "--format", "csv"])
    assert done.exit_code == 0, done.output
    expected = _query(world.settings, "SELECT course_id, reviews FROM v_flashcard_retention")
    assert done.output.splitlines() == ["course_id,reviews", *(f"{c},{n}" for c, n in expected)]
    done = runner.invoke(app, ["sql", "SELECT item_id, flags FROM v_item_analysis", "-f", "json"])
    assert done.exit_code == 0, done.output
    assert {"item_id", "flags"} <= set(json.loads(done.output)[0])
    done = runner.invoke(app, ["sql", "SELECT * FROM no_such_table"])
    assert done.exit_code == 1 and "no_such_table" in done.output

    out = tmp_path / "report.html"
    done = runner.invoke(app, ["report", "--output", str(out)])
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert page.count("<svg") >= 6 and "Item analysis" in page and "everyone_correct" in page
    print(f"report at {out}")
