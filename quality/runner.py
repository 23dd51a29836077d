"""Runs the suites of ``quality.suites`` with Great Expectations 1.x and reports the failing rows.

One ephemeral GX context per check: a pandas data source with one dataframe asset per suite,
the suite, a ``ValidationDefinition`` and a ``Checkpoint`` whose ``UpdateDataDocsAction`` renders
GX Data Docs (HTML) into ``<state_dir>/quality/data_docs/`` (``index.html``). Results ask for
``COMPLETE`` output with the suite's id columns as ``unexpected_index_column_names``, so a
failed expectation lists the ids of the rows that broke it.

``require_passing`` is what a DAG task calls after its gold writes: it raises
``QualityCheckFailed`` (failing the task and the run) when any expectation fails.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings
from lake.gold import GOLD_SCHEMAS
from lake.tables import SILVER_CHUNKS, TABLE_SCHEMAS
from quality import sources
from quality.suites import CONSISTENCY, SUITES, Suite
from quality.warehouse_suites import (
    FRESHNESS_LAKE,
    FRESHNESS_WAREHOUSE,
    WAREHOUSE_SUITE_NAMES,
    WAREHOUSE_TABLES,
    warehouse_suites,
)

log = logging.getLogger(__name__)
WAREHOUSE_UNREADABLE = "warehouse"  # key of ``Lake.errors`` when the warehouse could not be read
MAX_IDS = 20  # failing row ids kept per expectation in the report (the Data Docs keep them all)


class QualityCheckFailed(RuntimeError):
    """At least one expectation failed; the message names the suites, expectations and rows."""


@dataclass
class Failure:
    expectation: str
    column: str
    unexpected: int
    ids: list[str]

    def describe(self) -> str:
        shown = ", ".join(self.ids) if self.ids else "-"
        return f"{self.expectation}({self.column}): {self.unexpected} unexpected; rows: {shown}"


@dataclass
class SuiteResult:
    suite: str
    status: str  # passed | failed | skipped
    rows: int = 0
    expectations: int = 0
    failures: list[Failure] = field(default_factory=list)
    note: str = ""


@dataclass
class Report:
    results: list[SuiteResult]
    data_docs: Path | None

    @property
    def success(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    def failures(self) -> list[str]:
        return [f"{r.suite}: {f.describe()}" for r in self.results for f in r.failures]


def data_docs_dir(settings: Settings) -> Path:
    return Path(settings.stack.state_dir) / "quality" / "data_docs"


def all_suites(settings: Settings) -> dict[str, Suite]:
    """Every suite: the lake's, the cross-store one, the warehouse's and the freshness ones."""
    return {**SUITES, **warehouse_suites(settings)}


def _on_warehouse(name: str) -> bool:
    return name.startswith("warehouse/") or name == FRESHNESS_WAREHOUSE


def load(
    settings: Settings, *, postgres: bool = True, lake_tables: bool = True, warehouse: bool = False
) -> sources.Lake:
    """Reads every Delta table (wide columns reduced), LanceDB counts and PostgreSQL's indexed rows,
    and with ``warehouse`` the warehouse's tables."""
    lake = sources.Lake()
    if warehouse:
        from warehouse.client import WarehouseError

        try:
            lake.warehouse = sources.read_warehouse(settings, WAREHOUSE_TABLES)
        except WarehouseError as exc:  # busy or unreachable: its suites fail with the reason
            lake.errors[WAREHOUSE_UNREADABLE] = str(exc)
    if not lake_tables:
        return lake
    for name in [*TABLE_SCHEMAS, *GOLD_SCHEMAS]:
        table = sources.read_delta(settings, name)
        if table is not None:
            table = sources.text_as_length(table)
            if name == SILVER_CHUNKS:
                table = sources.list_as_length(table, "embedding")
        lake.tables[name] = None if table is None else table.to_pandas()
    lake.lancedb_counts = sources.read_lancedb_counts(settings)
    if postgres:
        try:
            lake.postgres_indexed = sources.read_indexed_postgres(settings)
        except Exception as exc:  # noqa: BLE001 - reported as the suite's note, the check goes on
            lake.errors[CONSISTENCY] = f"PostgreSQL unreachable: {exc}"
    return lake


def _context(docs: Path) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.get_site_names()):
        context.delete_data_docs_site(site)
    docs.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(
        "lakehouse",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _failures(validation: Any, ids: tuple[str, ...]) -> list[Failure]:
    failures = []
    for result in validation.results:
        if result.success:
            continue
        config = result.expectation_config
        kwargs = config.kwargs
        column = kwargs.get("column") or ",".join(
            str(kwargs.get(k)) for k in ("column_A", "column_B", "column_list", "column_set") if kwargs.get(k)
        )
        outcome = result.result or {}
        rows = outcome.get("unexpected_index_list") or []
        named = []
        for row in rows:
            if isinstance(row, dict):
                named.append("/".join(str(row.get(c)) for c in ids))
        if not named and result.exception_info and result.exception_info.get("raised_exception"):
            named = [str(result.exception_info.get("exception_message"))[:200]]
        if not named and "details" in outcome:
            named = [str(outcome["details"])[:300]]
        count = outcome.get("unexpected_count")
        column = column if len(column) <= 80 else column[:77] + "..."
        failures.append(Failure(config.type, column, int(count) if count is not None else len(named), named[:MAX_IDS]))
    return failures


def _run_suite(context: Any, suite: Suite, frame: Any) -> SuiteResult:
    import great_expectations as gx

    name = suite.name.replace("/", ".")  # GX store keys may not hold "/"
    source = context.data_sources.add_pandas(f"lake.{name}")
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("current")
    gx_suite = context.suites.add(gx.ExpectationSuite(name=name))
    expectations = suite.expectations()
    for expectation in expectations:
        gx_suite.add_expectation(expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"check.{name}",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["lakehouse"])],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": list(suite.ids)},
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    failures = [f for validation in outcome.run_results.values() for f in _failures(validation, suite.ids)]
    return SuiteResult(suite.name, "passed" if outcome.success else "failed", len(frame), len(expectations), failures)


def check(settings: Settings, tables: list[str] | None = None, *, lake: sources.Lake | None = None) -> Report:
    """Runs the suites of ``tables`` (all by default) on the current lake and warehouse and renders
    Data Docs."""
    registry = all_suites(settings)
    unknown = sorted(set(tables or []) - set(registry))
    if unknown:
        raise ValueError(f"no quality suite for {', '.join(unknown)}; suites: {', '.join(registry)}")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    names = tables or list(registry)
    lake = lake or load(
        settings,
        postgres=CONSISTENCY in names,
        lake_tables=any(not _on_warehouse(n) for n in names),
        warehouse=any(_on_warehouse(n) for n in names),
    )
    docs = data_docs_dir(settings)
    context = _context(docs)
    results = []
    for name in names:
        suite = registry[name]
        frame = suite.build(lake)
        if frame is None and _on_warehouse(name) and WAREHOUSE_UNREADABLE in lake.errors:
            reason = lake.errors[WAREHOUSE_UNREADABLE]
            results.append(SuiteResult(name, "failed", failures=[Failure("read_warehouse", "", 0, [reason])]))
            continue
        if frame is None:
            note = lake.errors.get(name, "table does not exist yet")
            if _on_warehouse(name) and lake.warehouse is None:
                note = "no warehouse yet (no load has run)"
            elif name == FRESHNESS_LAKE:
                note = "no lake table exists yet"
            results.append(SuiteResult(name, "skipped", note=note))
            continue
        results.append(_run_suite(context, suite, frame))
    index = docs / "index.html"
    return Report(results, index if index.exists() else None)


def require_passing(settings: Settings, tables: list[str] | None = None) -> Report:
    """For a DAG task after its gold writes: raises ``QualityCheckFailed`` naming the failing rows."""
    report = check(settings, tables)
    for result in report.results:
        log.info("quality %s: %s (%d rows, %d expectations)", result.suite, result.status, result.rows,
                 result.expectations)  # fmt: skip
    if not report.success:
        raise QualityCheckFailed("quality check failed:\n" + "\n".join(report.failures()))
    return report


# The gold tables each study DAG writes (the suites a DAG's quality task runs after its writes).
STUDY_DAG_TABLES: dict[str, tuple[str, ...]] = {
    "notes": ("gold/notes",),
    "quiz": ("gold/quizzes", "gold/quiz_items", "gold/flashcards"),
}


def check_study_outputs(settings: Settings, kind: str) -> dict[str, Any]:
    """The quality task of a study DAG (``kind`` notes | quiz): runs the suites of the gold
    tables it wrote; raises ``QualityCheckFailed`` (failing the run) naming the failing rows."""
    report = require_passing(settings, list(STUDY_DAG_TABLES[kind]))
    return {r.suite: {"status": r.status, "rows": r.rows, "expectations": r.expectations} for r in report.results}


# What the warehouse DAG's quality task runs after its loads: every warehouse table and its loads'
# freshness (the lake's freshness is the lake's concern, not a reason to fail a load).
WAREHOUSE_DAG_SUITES = tuple(n for n in WAREHOUSE_SUITE_NAMES if _on_warehouse(n))


def check_warehouse_outputs(settings: Settings) -> dict[str, Any]:
    """The quality task of ``load_warehouse``: raises ``QualityCheckFailed`` naming the failing rows."""
    report = require_passing(settings, list(WAREHOUSE_DAG_SUITES))
    return {r.suite: {"status": r.status, "rows": r.rows, "expectations": r.expectations} for r in report.results}
