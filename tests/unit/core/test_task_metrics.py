import multiprocessing

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.task_metrics import metrics_path, record, task_metrics


def _samples(state_dir):
    text = metrics_path(state_dir).read_text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_runs_fold_into_one_file_by_outcome(tmp_path):
    with task_metrics(tmp_path, dag="summarise_documents", task="summarise") as run:
        run.rows = 12
    with pytest.raises(RuntimeError), task_metrics(tmp_path, dag="summarise_documents", task="summarise"):
        raise RuntimeError("generator down")
    with task_metrics(tmp_path, dag="generate_quizzes", task="generate") as run:
        run.rows = 10
    samples = _samples(tmp_path)
    base = (("dag", "summarise_documents"), ("task", "summarise"))
    assert samples[("lakehouse_dag_task_runs_total", tuple(sorted((*base, ("outcome", "success")))))] == 1
    assert samples[("lakehouse_dag_task_runs_total", tuple(sorted((*base, ("outcome", "failed")))))] == 1
    assert samples[("lakehouse_dag_task_rows_total", base)] == 12
    assert samples[("lakehouse_dag_task_seconds_total", base)] >= 0
    assert ("lakehouse_dag_task_last_success_timestamp_seconds", base) in samples
    quiz = (("dag", "generate_quizzes"), ("task", "generate"))
    assert samples[("lakehouse_dag_task_rows_total", quiz)] == 10


def _record_many(state_dir, n):
    for _ in range(n):
        record(state_dir, dag="d", task="t", outcome="success", seconds=0.5, rows=2)


def test_parallel_task_processes_lose_no_run(tmp_path):
    processes = [multiprocessing.Process(target=_record_many, args=(tmp_path, 25)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    samples = _samples(tmp_path)
    labels = (("dag", "d"), ("outcome", "success"), ("task", "t"))
    assert samples[("lakehouse_dag_task_runs_total", labels)] == 100
    assert samples[("lakehouse_dag_task_rows_total", (("dag", "d"), ("task", "t")))] == 200
