"""An Airflow task killed mid-write, then retried: each gold row once.

The quiz task of ``generate_quizzes`` writes three gold tables in turn (quiz items, flashcards,
then the quiz header that marks the quiz done). Its process (a ``dag.test()`` run, the task
running in it as in a worker) is SIGKILLed right after the items are written (mid-write), then —
on the retry — right after the header; the next try completes. Ids come from the content, so a
doubled row or a table left unwritten fails; so does writing the header before the flashcards
(as the task did: a kill between the two left the quiz without flashcards for good, the retry
saw a finished quiz).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter

from core.faults import KILL_AT_ENV
from core.settings import PROJECT_ROOT
from processing import samples
from tests.integration.dags.dag_test_runner import airflow_env
from tests.integration.spark_jobs.ingest_testkit import isolated_env, isolated_settings, upload


def _dag_test(env: dict[str, str], dag_id: str, conf: dict, *, kill_at: str | None, log_path) -> int:
    with log_path.open("w") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.dags.dag_test_runner", dag_id, json.dumps(conf)],
            env={**env, **({KILL_AT_ENV: kill_at} if kill_at else {})},
            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            return run.wait(timeout=300)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, 9)
                run.wait()


def test_a_quiz_task_killed_mid_write_then_retried_leaves_each_gold_row_once(
    spark, stack, tmp_path, run_id, report_counts
):
    from lake import gold
    from spark_jobs.ingest_documents import run_available_now
    from streaming.kafka import json_producer

    settings = isolated_settings(tmp_path, run_id, embedding={"placement": "driver"})
    producer = json_producer(settings.kafka)
    course_id = str(uuid.uuid4())
    event = upload(settings, producer, samples.course_book(8).pdf, course_id=course_id, filename="book.pdf")
    producer.close()
    run_available_now(settings, spark=spark)

    env = airflow_env(tmp_path / "airflow_home", isolated_env(settings))
    conf = {"course_id": course_id}
    tries = []
    for kill_at in (f"after_gold_write@{gold.GOLD_QUIZ_ITEMS}", f"after_gold_write@{gold.GOLD_QUIZZES}", None):
        log_path = tmp_path / f"try{len(tries) + 1}.log"
        code = _dag_test(env, "generate_quizzes", conf, kill_at=kill_at, log_path=log_path)
        tries.append(code)
        expected_code = -9 if kill_at else 0
        assert code == expected_code, f"try {len(tries)} ({kill_at}): exit {code}\n{log_path.read_text()[-4000:]}"

    def rows(name: str) -> list[dict]:
        return gold.read_rows(settings, name, document_id=event.document_id, version=event.version)

    quizzes, items, cards = rows(gold.GOLD_QUIZZES), rows(gold.GOLD_QUIZ_ITEMS), rows(gold.GOLD_FLASHCARDS)
    doubled_items = [i for i, n in Counter(r["item_id"] for r in items).items() if n > 1]
    doubled_cards = [i for i, n in Counter(r["card_id"] for r in cards).items() if n > 1]
    report_counts(
        "Airflow quiz task killed after its items, then after its header, then retried",
        [
            ("task tries (exit codes)", "-9,-9,0", ",".join(map(str, tries))),
            ("gold/quizzes rows", 1, len(quizzes)),
            ("gold/quiz_items rows", quizzes[0]["items"] if quizzes else "?", len(items)),
            ("  item ids doubled", 0, len(doubled_items)),
            ("gold/flashcards rows", ">0", len(cards)),
            ("  card ids doubled", 0, len(doubled_cards)),
        ],
    )
    assert len(quizzes) == 1
    assert len(items) == quizzes[0]["items"] and not doubled_items
    assert {r["quiz_id"] for r in items} == {quizzes[0]["quiz_id"]}
    assert cards, "the flashcards were lost: the quiz header was written before them"
    assert not doubled_cards
