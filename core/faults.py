"""Test-only crash points (``tests/reliability/``): a process SIGKILLs itself at a named point.

``LAKEHOUSE_TEST_KILL_AT=<point>@<key>`` makes the process that reaches ``crash_point(point, key)``
kill itself there, so a test can crash a job at an exact place and check that the restarted or
retried job loses and doubles nothing. The variable is never set outside those tests:
``crash_point`` is then one environment lookup.

Points: the ingestion stream's (key: the micro-batch id), in the order a batch reaches them —
``after_bronze`` (the raw Kafka rows are in bronze), ``after_silver`` (silver pages and chunks of
a commit unit written), ``after_lancedb`` (its LanceDB rows too, ``silver/documents`` not yet),
``before_commit`` (all written and reported; the checkpoint has not recorded the batch) — and
``after_gold_write`` (key: the gold table just replaced, e.g. ``gold/quizzes``).
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "LAKEHOUSE_TEST_KILL_AT"
STREAM_CRASH_POINTS = ("after_bronze", "after_silver", "after_lancedb", "before_commit")


def crash_point(point: str, key: object) -> None:
    """SIGKILLs this process (its whole group when it leads one, so a Spark JVM dies with it) if
    ``LAKEHOUSE_TEST_KILL_AT`` is ``<point>@<key>``; otherwise does nothing."""
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted or wanted != f"{point}@{key}":
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
