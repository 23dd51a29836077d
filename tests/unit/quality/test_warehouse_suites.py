"""The frames the warehouse and freshness suites validate, built from in-memory tables (no store,
no GX run): references between facts and dimensions, and fresh / stale / empty-but-allowed rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from core.settings import Settings
from lake.gold import GOLD_NOTES, GOLD_QUIZ_ITEMS
from quality.sources import Lake, warehouse_query
from quality.warehouse_suites import FRESHNESS_LAKE, FRESHNESS_WAREHOUSE, warehouse_suites


def _settings(**quality) -> Settings:
    data = Settings(environment="test").model_dump()
    data["quality"].update(quality)
    return Settings(**data)


def test_fact_rows_know_whether_their_dimensions_hold_them():
    lake = Lake(warehouse={
        "dim_courses": pd.DataFrame({"course_id": ["k1"]}),
        "dim_documents": pd.DataFrame({"course_id": ["k1"], "document_id": ["d1"], "version": [1]}),
        "fact_ingestion_jobs": pd.DataFrame({
            "job_id": ["j1", "j2", "j3"], "course_id": ["k1", "k9", ""], "document_id": ["d1", "d1", ""],
            "version": pd.array([1, 2, None], dtype="UInt32"),
        }),
    })  # fmt: skip
    frame = warehouse_suites(_settings())["warehouse/fact_ingestion_jobs"].build(lake)
    assert frame["course_in_dim_courses"].tolist() == [True, False, True]  # a course-less job is no orphan
    assert frame["document_in_dim_documents"].tolist() == [True, False, True]


def test_freshness_rows_are_fresh_stale_or_empty_and_allowed():
    now = datetime.now(UTC)
    lake = Lake(tables={
        GOLD_QUIZ_ITEMS: pd.DataFrame({"run_at": [now - timedelta(hours=1), now - timedelta(hours=30)]}),
        GOLD_NOTES: pd.DataFrame({"run_at": pd.Series([], dtype="datetime64[ns, UTC]")}),
    })  # fmt: skip
    suites = warehouse_suites(_settings(lake_max_age_h=2.0))
    rows = suites[FRESHNESS_LAKE].build(lake).set_index("table")
    assert rows.loc[GOLD_QUIZ_ITEMS, "fresh"] and rows.loc[GOLD_QUIZ_ITEMS, "age_h"] < 1.1
    assert not rows.loc[GOLD_NOTES, "fresh"] and rows.loc[GOLD_NOTES, "rows"] == 0  # empty: stale
    allowed = warehouse_suites(_settings(lake_max_age_h=0.5, allow_empty=[GOLD_NOTES]))
    rows = allowed[FRESHNESS_LAKE].build(lake).set_index("table")
    assert rows.loc[GOLD_NOTES, "fresh"] and rows.loc[GOLD_NOTES, "allowed_empty"]
    assert not rows.loc[GOLD_QUIZ_ITEMS, "fresh"]  # newest row an hour old, limit half an hour
    assert suites[FRESHNESS_WAREHOUSE].build(lake) is None  # no warehouse: skipped, not fresh


def test_warehouse_reads_are_final_with_wide_text_as_length():
    assert warehouse_query("dim_courses") == "SELECT * FROM dim_courses FINAL"
    assert (
        warehouse_query("fact_api_events")
        == "SELECT * REPLACE (length(properties) AS properties) FROM fact_api_events FINAL"
    )
    assert warehouse_query("warehouse_operations") == "SELECT * FROM warehouse_operations"
