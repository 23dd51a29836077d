"""The quality suites on a small test lake: all pass, then each deliberately corrupted row makes
its expectation fail with that row named."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.settings import Settings
from lake import gold, tables
from quality import runner
from quality.suites import CONSISTENCY, SUITES
from tests.integration.quality import quality_testkit as kit
from tests.integration.shard_testkit import migrated_shards


@pytest.fixture(scope="module")
def quality_settings(settings: Settings, stack, tmp_path_factory) -> Iterator[Settings]:
    """A private lake, LanceDB, state dir and one private shard database (nothing else writes there)."""
    root = tmp_path_factory.mktemp("quality")
    data = settings.model_dump()
    data["lake"].update(root=str(root / "lake"))
    data["lancedb"].update(uri=str(root / "lancedb"))
    data["stack"].update(state_dir=root / "state")
    data["warehouse"].update(dsn=f"chdb://{root / 'warehouse'}")  # none: the warehouse suites are skipped
    data["postgres"].update(shards=1, shard_db_prefix=f"lakehouse_quality_{uuid.uuid4().hex[:8]}_", pool_max_size=2)
    with migrated_shards(Settings(**data)) as private:
        yield private


@pytest.fixture(scope="module")
def test_lake(quality_settings: Settings) -> kit.TestLake:
    return kit.build(quality_settings)


def _failures(report: runner.Report, suite: str) -> list[runner.Failure]:
    return next(r for r in report.results if r.suite == suite).failures


def test_every_suite_passes_on_a_consistent_lake(test_lake: kit.TestLake) -> None:
    started = time.monotonic()
    report = runner.check(test_lake.settings)
    for result in report.results:
        print(f"{result.suite}: {result.status}, {result.rows} rows, {result.expectations} expectations")
    print(f"{len(report.results)} suites, {sum(r.expectations for r in report.results)} expectations "
          f"in {time.monotonic() - started:.1f} s")  # fmt: skip
    assert report.success, report.failures()
    assert {r.suite for r in report.results} == set(runner.all_suites(test_lake.settings))
    statuses = {r.suite: r.status for r in report.results}
    assert {statuses[s] for s in [*SUITES, "freshness/lake"]} == {"passed"}
    assert {s for s, status in statuses.items() if status == "skipped"} == set(runner.WAREHOUSE_DAG_SUITES)
    assert next(r for r in report.results if r.suite == CONSISTENCY).rows == 2
    assert report.data_docs is not None and report.data_docs.exists()
    assert "chunks" in report.data_docs.read_text()
    # What the study DAGs' quality task runs after their gold writes.
    assert runner.check_study_outputs(test_lake.settings, "quiz")["gold/quiz_items"]["status"] == "passed"


def test_corrupted_rows_fail_their_expectations_by_id(test_lake: kit.TestLake) -> None:
    settings, course, (first, second) = test_lake.settings, test_lake.course_id, test_lake.documents
    duplicated = test_lake.chunk_ids[first][0]
    orphan_document = str(uuid.uuid4())
    kit.write_delta(settings, tables.SILVER_CHUNKS, [
        kit.chunk(first, course, 0, chunk_key=duplicated),  # a second row with an existing chunk id
        kit.chunk(orphan_document, course, 0),  # a chunk whose document does not exist
    ])  # fmt: skip
    quiz = gold.read_where(settings, gold.GOLD_QUIZZES, document_id=first)[0]
    broken_quiz = {**quiz, "answerability": 1.5}  # a score outside 0..1
    gold.replace_rows(settings, gold.GOLD_QUIZZES, [broken_quiz], document_id=first, version=1,
                      generator_version=kit.GENERATOR)  # fmt: skip
    try:
        report = runner.check(settings, [tables.SILVER_CHUNKS, gold.GOLD_QUIZZES, CONSISTENCY])
    finally:  # the lake back as it was for any later test
        kit.write_delta(settings, tables.SILVER_CHUNKS, [], overwrite=True)
        kit.write_delta(settings, tables.SILVER_CHUNKS, [
            kit.chunk(d, course, i, page=1 + i % kit.PAGES) for n, d in enumerate(test_lake.documents)
            for i in range(kit.CHUNKS[n])
        ])  # fmt: skip
        gold.replace_rows(settings, gold.GOLD_QUIZZES, [quiz], document_id=first, version=1,
                          generator_version=kit.GENERATOR)  # fmt: skip
    print("\n".join(report.failures()))
    assert not report.success
    chunks = {(f.expectation, f.column): f for f in _failures(report, tables.SILVER_CHUNKS)}
    unique = chunks[("expect_column_values_to_be_unique", "chunk_id")]
    assert unique.ids == [duplicated, duplicated] and unique.unexpected == 2
    orphan = chunks[("expect_column_values_to_be_in_set", "document_in_silver")]
    assert orphan.ids == [tables_chunk_id(orphan_document)]
    assert ("expect_compound_columns_to_be_unique", "['document_id', 'version', 'chunk_index']") in chunks
    score = {(f.expectation, f.column): f for f in _failures(report, gold.GOLD_QUIZZES)}
    assert score[("expect_column_values_to_be_between", "answerability")].ids == [quiz["quiz_id"]]
    # The extra chunk of the first document breaks the per-document counts across stores.
    consistency = {(f.expectation, f.column): f for f in _failures(report, CONSISTENCY)}
    assert consistency[("expect_column_pair_values_to_be_equal", "silver_chunks,postgres_chunks")].ids == [f"{first}/1"]
    assert second not in " ".join(report.failures())


def tables_chunk_id(document_id: str) -> str:
    from core.ids import chunk_id

    return chunk_id(document_id, 1, 0)


def test_a_quiz_item_citing_a_missing_chunk_and_a_note_citing_a_missing_page_fail(test_lake: kit.TestLake) -> None:
    settings, first = test_lake.settings, test_lake.documents[0]
    items = gold.read_where(settings, gold.GOLD_QUIZ_ITEMS, document_id=first)
    notes = gold.read_where(settings, gold.GOLD_NOTES, document_id=first)
    broken_items = [{**items[0], "source_chunk_id": "no-such-chunk"}, items[1]]
    broken_notes = [{**notes[0], "payload": notes[0]["payload"].replace(f"1, {kit.PAGES}]", f"1, {kit.PAGES + 5}]")}]
    assert broken_notes[0]["payload"] != notes[0]["payload"]
    where: dict[str, Any] = {"document_id": first, "version": 1, "generator_version": kit.GENERATOR}
    gold.replace_rows(settings, gold.GOLD_QUIZ_ITEMS, broken_items, **where)
    gold.replace_rows(settings, gold.GOLD_NOTES, broken_notes, **where)
    try:
        with pytest.raises(runner.QualityCheckFailed) as failed:
            runner.require_passing(settings, [gold.GOLD_QUIZ_ITEMS, gold.GOLD_NOTES])
    finally:
        gold.replace_rows(settings, gold.GOLD_QUIZ_ITEMS, items, **where)
        gold.replace_rows(settings, gold.GOLD_NOTES, notes, **where)
    message = str(failed.value)
    print(message)
    assert f"source_chunk_in_silver): 1 unexpected; rows: {items[0]['item_id']}" in message
    assert f"cited_pages_out_of_range): 1 unexpected; rows: {notes[0]['notes_id']}" in message


def test_the_command_prints_the_table_and_exits_1_on_a_failed_expectation(test_lake: kit.TestLake) -> None:
    import os
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT
    from deploy.edge import settings_environment

    settings, first = test_lake.settings, test_lake.documents[0]
    env = {**os.environ, **settings_environment(settings), "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "cli.main", "quality", "check", "--table", gold.GOLD_FLASHCARDS]
    good = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "gold/flashcards" in good.stdout and "passed" in good.stdout
    cards = gold.read_where(settings, gold.GOLD_FLASHCARDS, document_id=first)
    where: dict[str, Any] = {"document_id": first, "version": 1, "generator_version": kit.GENERATOR}
    gold.replace_rows(settings, gold.GOLD_FLASHCARDS, [{**cards[0], "page": kit.PAGES + 1}], **where)
    try:
        bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    finally:
        gold.replace_rows(settings, gold.GOLD_FLASHCARDS, cards, **where)
    print(bad.stdout)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"page_within_document): 1 unexpected; rows: {cards[0]['card_id']}" in bad.stdout
    unknown = subprocess.run([*command[:-1], "gold/nothing"], env=env, capture_output=True, text=True, timeout=120,
                             cwd=PROJECT_ROOT)  # fmt: skip
    assert unknown.returncode == 2
