"""The Great Expectations suites of the warehouse's facts and dimensions, and the freshness suites.

Warehouse suites (``warehouse/<table>``) check each table as the analysts read it (``FINAL``):
exactly the columns the loader writes, not-null keys, unique ids, value ranges and, as derived
boolean columns, references between facts and dimensions (``course_in_dim_courses``,
``document_in_dim_documents``, ``item_in_dim_quiz_items``). A failing row is named by its key.

Freshness suites (``freshness/lake``, ``freshness/warehouse``) have one row per lake table (its
newest row time: ``bronze`` Kafka time, ``silver/documents`` upload time, ``silver/pages|chunks``
their documents' upload time, gold ``run_at``) or per warehouse load source (its newest
successful load): ``fresh`` when that time is within ``quality.lake_max_age_h`` /
``quality.warehouse_max_age_h``. An empty table is stale unless it is listed in
``quality.allow_empty`` (then it is marked fresh with the age left empty): never skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import great_expectations.expectations as gxe

from lake.gold import GOLD_FLASHCARDS, GOLD_NOTES, GOLD_QUIZ_ITEMS, GOLD_QUIZZES, GOLD_SCHEMAS
from lake.tables import BRONZE_DOCUMENT_EVENTS, SILVER_CHUNKS, SILVER_DOCUMENTS, SILVER_PAGES
from quality.suites import Suite
from warehouse.rows import COLUMNS, EVENT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from core.settings import Settings
    from quality.sources import Lake

FRESHNESS_LAKE = "freshness/lake"
FRESHNESS_WAREHOUSE = "freshness/warehouse"
LOAD_SOURCES = ("postgres", "lake", "analytics")
# Each warehouse table and the columns the loader writes.
TABLES: dict[str, list[str]] = {
    **{table: list(columns) for table, columns in COLUMNS.values()},
    "fact_api_events": list(EVENT_COLUMNS),
    "dim_quiz_items": [*GOLD_SCHEMAS[GOLD_QUIZ_ITEMS].names, "delta_version"],
}
# Lake table -> the column holding its newest row time (None: the time of its documents' upload).
LAKE_TIMES: dict[str, str | None] = {
    BRONZE_DOCUMENT_EVENTS: "kafka_timestamp", SILVER_DOCUMENTS: "uploaded_at", SILVER_PAGES: None,
    SILVER_CHUNKS: None, GOLD_NOTES: "run_at", GOLD_QUIZZES: "run_at", GOLD_QUIZ_ITEMS: "run_at",
    GOLD_FLASHCARDS: "run_at",
}  # fmt: skip


# ---------------------------------------------------------------------------- warehouse tables


def _frame(lake: Lake, table: str) -> pd.DataFrame | None:
    return None if lake.warehouse is None else lake.warehouse.get(table)


def _keys(lake: Lake, table: str, *columns: str) -> set[tuple]:
    frame = _frame(lake, table)
    if frame is None or frame.empty:
        return set()
    return set(frame[list(columns)].itertuples(index=False, name=None))


def _in(lake: Lake, frame: pd.DataFrame, table: str, columns: tuple[str, ...], *, blank_ok: bool = False) -> list:
    import pandas as pd

    known = _keys(lake, table, *columns)
    out = []
    for key in frame[list(columns)].itertuples(index=False, name=None):
        missing = any(pd.isna(v) or v == "" for v in key)
        out.append(blank_ok if missing else tuple(int(v) if isinstance(v, float | int) else v for v in key) in known)
    return out


def _build(table: str, checks: dict[str, tuple[str, tuple[str, ...], bool]]) -> Any:
    """A builder of ``table``'s frame with derived ``name: (dimension, columns, blank_ok)`` checks."""

    def build(lake: Lake) -> pd.DataFrame | None:
        frame = _frame(lake, table)
        if frame is None:
            return None
        frame = frame.copy()
        for name, (dimension, columns, blank_ok) in checks.items():
            frame[name] = _in(lake, frame, dimension, columns, blank_ok=blank_ok)
        return frame

    return build


def _columns(table: str, *derived: str) -> Any:
    return gxe.ExpectTableColumnsToMatchSet(column_set=[*TABLES[table], *derived], exact_match=True)


def _not_null(*columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _between(column: str, low: float | None = None, high: float | None = None) -> Any:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)


def _true(*columns: str) -> list[Any]:
    return [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) for c in columns]


def _after(later: str, earlier: str) -> Any:
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing"
    )


Checks = dict[str, tuple[str, tuple[str, ...], bool]]  # derived column: (dimension, key columns, blank ok)
_COURSE: Checks = {"course_in_dim_courses": ("dim_courses", ("course_id",), False)}


@dataclass(frozen=True)
class _Spec:
    table: str
    ids: tuple[str, ...]
    checks: Checks
    rules: tuple[Any, ...]  # callables returning the table's own expectations


def _spec_expectations(spec: _Spec) -> Any:
    def expectations() -> list[Any]:
        unique = (
            gxe.ExpectColumnValuesToBeUnique(column=spec.ids[0])
            if len(spec.ids) == 1
            else gxe.ExpectCompoundColumnsToBeUnique(column_list=list(spec.ids))
        )
        return [_columns(spec.table, *spec.checks), *_not_null(*spec.ids), unique, *_true(*spec.checks),
                *(rule() for rule in spec.rules)]  # fmt: skip

    return expectations


def _rules(*rules: Any) -> tuple[Any, ...]:
    return rules


SPECS = (
    _Spec("dim_courses", ("course_id",), {}, _rules(lambda: _between("shard", 0), lambda: _not_null("title")[0])),
    _Spec("dim_documents", ("course_id", "document_id", "version"), _COURSE,
          _rules(lambda: _between("version", 1), lambda: _between("pages", 0), lambda: _between("chunks", 0),
                 lambda: gxe.ExpectColumnValuesToBeInSet(
                     column="status", value_set=["queued", "processing", "indexed", "failed", "superseded"]))),
    _Spec("fact_ingestion_jobs", ("job_id",),
          {"course_in_dim_courses": ("dim_courses", ("course_id",), True),
           "document_in_dim_documents": ("dim_documents", ("course_id", "document_id", "version"), True)},
          _rules(lambda: gxe.ExpectColumnValuesToBeInSet(column="outcome",
                                                         value_set=["queued", "running", "succeeded", "failed"]),
                 lambda: _not_null("queued_at")[0], lambda: _after("searchable_at", "queued_at"),
                 lambda: _after("indexed_at", "searchable_at"), lambda: _between("total_seconds", 0),
                 lambda: _between("pages", 0), lambda: _between("chunks", 0))),
    _Spec("fact_quiz_attempts", ("attempt_id", "item_id"),
          {**_COURSE, "item_in_dim_quiz_items": ("dim_quiz_items", ("item_id",), False)},
          _rules(lambda: gxe.ExpectColumnValuesToBeInSet(column="correct", value_set=[0, 1]),
                 lambda: _between("seconds", 0), lambda: _between("attempt_score", 0),
                 lambda: _after("attempt_max_score", "attempt_score"), lambda: _between("position", 0))),
    _Spec("fact_reviews", ("review_id",), _COURSE,
          _rules(lambda: _between("rating", 1, 4), lambda: _between("scheduled_days", 0),
                 lambda: _after("due_after", "reviewed_at"),
                 lambda: gxe.ExpectColumnValuesToBeInSet(
                     column="card_state", value_set=["learning", "review", "relearning", "unknown"]))),
    _Spec("fact_api_events", ("event_id",), {"course_in_dim_courses": ("dim_courses", ("course_id",), True)},
          _rules(lambda: _not_null("name", "occurred_at")[0], lambda: _between("result_count", 0),
                 lambda: _between("top_score", 0, 1), lambda: _between("latency_ms", 0))),
    _Spec("dim_quiz_items", ("item_id",), _COURSE,
          _rules(lambda: gxe.ExpectCompoundColumnsToBeUnique(column_list=["quiz_id", "position"]),
                 lambda: _between("page", 1), lambda: _between("version", 1))),
)  # fmt: skip


# ---------------------------------------------------------------------------- freshness


def _age_h(newest: Any, now: datetime) -> float | None:
    if newest is None or newest != newest:  # None or NaT
        return None
    stamp = newest.to_pydatetime() if hasattr(newest, "to_pydatetime") else newest
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
    return round((now - stamp).total_seconds() / 3600, 3)


def _freshness_rows(newest: dict[str, tuple[int, Any]], max_age_h: float, allow_empty: list[str]) -> Any:
    import pandas as pd

    now = datetime.now(UTC)
    rows = []
    for table, (count, stamp) in newest.items():
        age = _age_h(stamp, now) if count else None
        allowed = table in allow_empty and not count
        rows.append({"table": table, "rows": count, "newest": "" if age is None else str(stamp),
                     "age_h": age, "max_age_h": max_age_h, "allowed_empty": allowed,
                     "fresh": allowed or (age is not None and age <= max_age_h)})  # fmt: skip
    return pd.DataFrame(rows, columns=["table", "rows", "newest", "age_h", "max_age_h", "allowed_empty", "fresh"])


def lake_freshness(settings: Settings) -> Any:
    def build(lake: Lake) -> pd.DataFrame | None:
        uploads: dict[tuple[str, int], Any] = {}
        docs = lake.frame(SILVER_DOCUMENTS)
        if docs is not None and not docs.empty:
            uploads = {(d, int(v)): t for d, v, t in docs[["document_id", "version", "uploaded_at"]].itertuples(
                index=False, name=None)}  # fmt: skip
        newest: dict[str, tuple[int, Any]] = {}
        for table, column in LAKE_TIMES.items():
            frame = lake.frame(table)
            if frame is None:
                continue  # not created yet: the table suites report it as skipped
            if frame.empty:
                newest[table] = (0, None)
            elif column is not None:
                newest[table] = (len(frame), frame[column].max())
            else:
                times = [uploads.get((d, int(v))) for d, v in zip(frame["document_id"], frame["version"], strict=False)]
                known = [t for t in times if t is not None]
                newest[table] = (len(frame), max(known) if known else None)
        if not newest:
            return None
        return _freshness_rows(newest, settings.quality.lake_max_age_h, settings.quality.allow_empty)

    return build


def warehouse_freshness(settings: Settings) -> Any:
    def build(lake: Lake) -> pd.DataFrame | None:
        operations = _frame(lake, "warehouse_operations")
        if operations is None:
            return None
        ok = operations[operations["status"] == "ok"]
        newest = {}
        for source in LOAD_SOURCES:
            mine = ok[ok["source"] == source]
            newest[source] = (len(mine), mine["started_at"].max() if len(mine) else None)
        return _freshness_rows(newest, settings.quality.warehouse_max_age_h, settings.quality.allow_empty)

    return build


def _freshness_expectations() -> list[Any]:
    return [*_not_null("table"), *_true("fresh")]


def warehouse_suites(settings: Settings) -> dict[str, Suite]:
    """The warehouse table suites and both freshness suites (their limits from ``settings``)."""
    suites = {
        f"warehouse/{spec.table}": Suite(
            f"warehouse/{spec.table}", spec.ids, _build(spec.table, spec.checks), _spec_expectations(spec)
        )
        for spec in SPECS
    }
    suites[FRESHNESS_LAKE] = Suite(FRESHNESS_LAKE, ("table",), lake_freshness(settings),
                                   _freshness_expectations)  # fmt: skip
    suites[FRESHNESS_WAREHOUSE] = Suite(FRESHNESS_WAREHOUSE, ("table",), warehouse_freshness(settings),
                                        _freshness_expectations)  # fmt: skip
    return suites


WAREHOUSE_SUITE_NAMES = (*(f"warehouse/{spec.table}" for spec in SPECS), FRESHNESS_LAKE, FRESHNESS_WAREHOUSE)
WAREHOUSE_TABLES = (*(spec.table for spec in SPECS), "warehouse_operations")
