"""The warehouse suites and the freshness suites on a loaded warehouse (private shards, lake, topics
and chdb path): a deliberately corrupted fact row fails its expectations with that row named and
nothing else fails; a stale or empty table fails freshness unless its emptiness is allowed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import Settings
from tests.integration.warehouse.warehouse_testkit import (
    World,
    build_world,
    private_shards,
    send_events,
    warehouse_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(settings: Settings, stack, tmp_path_factory) -> Iterator[World]:
    from warehouse.load import load_warehouse

    root = tmp_path_factory.mktemp("warehouse_quality")
    with private_shards(settings) as private:
        data = warehouse_settings(private, root, uuid.uuid4().hex[:10]).model_dump()
        data["stack"].update(state_dir=root / "state")
        world = build_world(Settings(**data), students=3)
        send_events(world)
        load_warehouse(world.settings)
        yield world


def _failures(message: str) -> set[str]:
    return {line for line in message.splitlines()[1:] if line}


def test_a_corrupted_fact_row_fails_its_expectations_naming_the_row(world: World) -> None:
    from quality.runner import QualityCheckFailed, check_warehouse_outputs
    from warehouse.client import warehouse_session

    review_id = f"corrupt-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC)
    row = [review_id, "u", "card", "no-such-course", 9, at, None, at + timedelta(days=1), 1.0, "review", 1.0, 5.0,
           1, at]  # fmt: skip
    with warehouse_session(world.settings.warehouse) as client:
        columns = [c for c, *_ in client.query("DESCRIBE TABLE fact_reviews").result_rows]
        client.insert("fact_reviews", [row], column_names=columns)
    try:
        with pytest.raises(QualityCheckFailed) as failed:
            check_warehouse_outputs(world.settings)
    finally:
        with warehouse_session(world.settings.warehouse) as client:
            client.command(f"DELETE FROM fact_reviews WHERE review_id = '{review_id}'")
    print(failed.value)
    assert _failures(str(failed.value)) == {
        f"warehouse/fact_reviews: expect_column_values_to_be_between(rating): 1 unexpected; rows: {review_id}",
        f"warehouse/fact_reviews: expect_column_values_to_be_in_set(course_in_dim_courses): 1 unexpected;"
        f" rows: {review_id}",
    }
    # The row gone, every warehouse suite passes (what the DAG's check task runs).
    statuses = check_warehouse_outputs(world.settings)
    assert {s["status"] for s in statuses.values()} == {"passed"}, statuses
    assert statuses["warehouse/fact_quiz_attempts"]["rows"] > 0 and statuses["freshness/warehouse"]["rows"] == 3


def test_stale_and_empty_tables_fail_freshness_unless_allowed_empty(world: World) -> None:
    from deltalake import write_deltalake

    from lake.gold import GOLD_NOTES, GOLD_QUIZ_ITEMS, GOLD_SCHEMAS
    from lake.tables import delta_location
    from quality import runner
    from quality.warehouse_suites import FRESHNESS_LAKE, FRESHNESS_WAREHOUSE

    path, options = delta_location(world.settings, GOLD_NOTES)
    write_deltalake(path, GOLD_SCHEMAS[GOLD_NOTES].empty_table(), storage_options=options)  # created, no row
    suites = [FRESHNESS_LAKE, FRESHNESS_WAREHOUSE]
    data = world.settings.model_dump()
    data["quality"].update(lake_max_age_h=1e-6, warehouse_max_age_h=1e-6)  # 3.6 ms: everything is stale
    report = runner.check(Settings(**data), suites)
    print("\n".join(report.failures()))
    failing = {r.suite: sorted(i for f in r.failures for i in f.ids) for r in report.results}
    assert failing == {FRESHNESS_LAKE: sorted([GOLD_NOTES, GOLD_QUIZ_ITEMS]),
                       FRESHNESS_WAREHOUSE: ["analytics", "lake", "postgres"]}  # fmt: skip
    # Defaults (a week, three hours) with gold/notes explicitly allowed to be empty: all fresh.
    data["quality"].update(lake_max_age_h=168.0, warehouse_max_age_h=3.0, allow_empty=[GOLD_NOTES])
    report = runner.check(Settings(**data), suites)
    assert report.success, report.failures()
    lake = next(r for r in report.results if r.suite == FRESHNESS_LAKE)
    assert lake.rows == 2  # gold/quiz_items and the empty gold/notes (the other tables do not exist)
