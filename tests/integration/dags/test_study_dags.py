"""``dag.test()`` of the study DAGs against real lake tables from a document the stream ingested:
notes with page citations whose pages hold the cited text, a quiz whose keys are in their
source chunks, flashcards; and a rerun changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import pytest

from core.settings import PROJECT_ROOT
from processing import samples
from tests.integration.dags.dag_test_runner import airflow_env
from tests.integration.spark_jobs.ingest_testkit import isolated_env, isolated_settings, upload

_WORD = re.compile(r"[a-z0-9]+")


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A course with one 40-page book, ingested by the stream; the DAG tasks' Settings point at it."""
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    run_id = uuid.uuid4().hex[:10]
    settings = isolated_settings(tmp_path_factory.mktemp("study"), run_id)
    producer = json_producer(settings.kafka)
    course_id = str(uuid.uuid4())
    event = upload(settings, producer, samples.course_book(40).pdf, course_id=course_id, filename="book.pdf")
    producer.close()
    run_available_now(settings, spark=spark)

    env = airflow_env(tmp_path_factory.mktemp("airflow_home"), isolated_env(settings))
    yield {"settings": settings, "event": event, "course_id": course_id, "env": env}


def _run(lake, dag_id: str, **conf) -> None:
    """One ``dag.test()`` in its own process, configured only by the environment given."""
    conf = {"course_id": lake["course_id"], **conf}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.dags.dag_test_runner", dag_id, json.dumps(conf)],
        env=lake["env"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, f"{dag_id} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert f"DAG_TEST_STATE {dag_id} success" in done.stdout


def _gold(lake, name: str) -> list[dict]:
    from lake import gold

    event = lake["event"]
    return gold.read_rows(lake["settings"], name, document_id=event.document_id, version=event.version)


def _pages(lake) -> dict[int, set[str]]:
    from lake.gold import read_document_text

    event = lake["event"]
    text = read_document_text(lake["settings"], document_id=event.document_id, version=event.version)
    return {p["page_number"]: set(_WORD.findall((p["text"] or "").lower())) for p in text["pages"]}


def test_summarise_documents_writes_notes_whose_citations_hold(lake):
    from lake import gold
    from study.models import Notes

    _run(lake, "summarise_documents")
    [row] = _gold(lake, gold.GOLD_NOTES)
    notes = Notes.model_validate_json(row["payload"])
    pages = _pages(lake)
    sentences = [s for section in notes.sections for s in section.sentences] + list(notes.overview)
    sentences += [term.definition for term in notes.key_terms]
    assert sentences and notes.key_terms
    # Checked here from silver's page text, independently of the generator's own score.
    for sentence in sentences:
        words = _WORD.findall(sentence.text.lower())
        cited = set().union(*(pages[p] for p in sentence.pages))
        found = sum(word in cited for word in words) / len(words)
        assert found >= 0.9, f"{sentence.text!r} is not on pages {sentence.pages}"
    covered = {section.section.section_id for section in notes.sections if section.sentences}
    assert len(covered) == len(notes.sections) == notes.quality.sections  # 40 pages, every section
    assert row["citation_precision"] == notes.quality.citation_precision >= 0.9


def _task_rows(dag_id: str) -> float:
    """Rows the DAG's tasks reported to the Prometheus metrics file (tasks use the default state dir)."""
    from prometheus_client.parser import text_string_to_metric_families

    from core.settings import Settings
    from core.task_metrics import metrics_path

    path = metrics_path(Settings().stack.state_dir)
    if not path.exists():
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
        if sample.name == "lakehouse_dag_task_rows_total" and sample.labels.get("dag") == dag_id
    )


def test_generate_quizzes_writes_items_whose_keys_are_in_their_source_chunks(lake):
    from lake import gold
    from lake.gold import read_document_text

    reported_before = _task_rows("generate_quizzes")
    _run(lake, "generate_quizzes")
    [quiz] = _gold(lake, gold.GOLD_QUIZZES)
    items = _gold(lake, gold.GOLD_QUIZ_ITEMS)
    assert quiz["items"] == len(items) == 10
    # The mapped task's Prometheus metrics counted the rows it wrote.
    assert _task_rows("generate_quizzes") - reported_before == len(items)
    event = lake["event"]
    chunks = {
        c["chunk_id"]: c["text"].lower()
        for c in read_document_text(lake["settings"], document_id=event.document_id, version=event.version)["chunks"]
    }
    for item in items:
        options = {o["option_id"]: o["text"] for o in json.loads(item["options"])}
        assert len(options) == 4 and item["correct_option_id"] in options
        key = options[item["correct_option_id"]].lower()
        assert key in chunks[item["source_chunk_id"]], f"{key!r} is not in its source chunk"
        assert sum(text.lower() == key for text in options.values()) == 1  # no distractor equals the key
    assert len({item["fact"] for item in items}) == len(items)  # no fact tested twice
    assert _gold(lake, gold.GOLD_FLASHCARDS)


def test_running_again_changes_nothing(lake):
    from lake import gold

    tables = (gold.GOLD_NOTES, gold.GOLD_QUIZZES, gold.GOLD_QUIZ_ITEMS, gold.GOLD_FLASHCARDS)
    before = {name: _gold(lake, name) for name in tables}
    _run(lake, "summarise_documents")  # nothing pending: nothing written
    _run(lake, "generate_quizzes")
    assert {name: _gold(lake, name) for name in tables} == before
    _run(lake, "summarise_documents", force=True)  # regenerated: the same ids and the same content
    _run(lake, "generate_quizzes", force=True)
    after = {name: _gold(lake, name) for name in tables}
    for name in tables:
        strip = [{k: v for k, v in row.items() if k != "run_at"} for row in after[name]]
        assert sorted(strip, key=json.dumps) == sorted(
            [{k: v for k, v in row.items() if k != "run_at"} for row in before[name]], key=json.dumps
        ), name
