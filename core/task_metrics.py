"""Prometheus metrics of batch tasks (the DAGs' mapped tasks), as a textfile-collector file.

A DAG task is a short-lived process: nothing stays up to be scraped. Prometheus's convention
for batch jobs is a ``*.prom`` file that node_exporter's textfile collector (or any file-serving
scrape target) exposes; each task run folds its figures into ``<state_dir>/metrics/
dag_tasks.prom`` under a file lock (mapped tasks run in parallel processes) and replaces the file
atomically, so a scrape never sees half of it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

METRICS_FILE = "dag_tasks.prom"
RUNS = "lakehouse_dag_task_runs_total"
SECONDS = "lakehouse_dag_task_seconds_total"
ROWS = "lakehouse_dag_task_rows_total"
LAST_SUCCESS = "lakehouse_dag_task_last_success_timestamp_seconds"
HELP = {
    RUNS: ("counter", "Task runs by outcome"),
    SECONDS: ("counter", "Seconds spent in task runs"),
    ROWS: ("counter", "Rows the task runs wrote"),
    LAST_SUCCESS: ("gauge", "Unix time of the last successful run"),
}


@dataclass
class TaskRun:
    """What the task reports while it runs: the rows it wrote."""

    rows: int = 0
    labels: dict[str, str] = field(default_factory=dict)


def metrics_path(state_dir: Path) -> Path:
    return Path(state_dir) / "metrics" / METRICS_FILE


@contextmanager
def task_metrics(state_dir: Path, *, dag: str, task: str) -> Iterator[TaskRun]:
    """Times the block and records its outcome (``success`` or ``failed``, re-raising) and rows."""
    run = TaskRun()
    started = time.monotonic()
    outcome = "failed"
    try:
        yield run
        outcome = "success"
    finally:
        record(state_dir, dag=dag, task=task, outcome=outcome, seconds=time.monotonic() - started, rows=run.rows)


def record(state_dir: Path, *, dag: str, task: str, outcome: str, seconds: float, rows: int) -> None:
    """Adds one run to the metrics file."""
    from prometheus_client.parser import text_string_to_metric_families

    path = metrics_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        if path.exists():
            for family in text_string_to_metric_families(path.read_text()):
                for sample in family.samples:
                    samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        base = (("dag", dag), ("task", task))

        def add(name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
            key = (name, tuple(sorted(labels)))
            samples[key] = samples.get(key, 0.0) + value

        add(RUNS, (*base, ("outcome", outcome)), 1)
        add(SECONDS, base, seconds)
        add(ROWS, base, rows)
        if outcome == "success":
            samples[(LAST_SUCCESS, tuple(sorted(base)))] = time.time()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(render(samples))
        tmp.replace(path)


def render(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    lines = []
    for name, (kind, text) in HELP.items():
        rows = sorted((labels, value) for (sample, labels), value in samples.items() if sample == name)
        if not rows:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            rendered = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {value!r}")
    return "\n".join(lines) + "\n"
