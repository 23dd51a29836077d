"""Test-only crash points of the ingestion stream (``tests/reliability/``).

``LAKEHOUSE_TEST_KILL_AT=<point>@<batch_id>`` makes the job SIGKILL itself when a micro-batch
with that id reaches the named point, so a test can crash it at an exact place of a batch and
check that the restarted stream loses and doubles nothing. The variable is never set outside
those tests: ``crash_point`` is then one environment lookup, a few times per micro-batch.

Points, in the order a batch reaches them: ``after_bronze`` (the raw Kafka rows are in bronze),
``after_silver`` (silver pages and chunks of a commit unit written), ``after_lancedb`` (its
LanceDB rows written too, ``silver/documents`` not yet), ``before_commit`` (everything written
and reported; Spark has not recorded the batch in its checkpoint).
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "LAKEHOUSE_TEST_KILL_AT"
CRASH_POINTS = ("after_bronze", "after_silver", "after_lancedb", "before_commit")


def crash_point(point: str, batch_id: int) -> None:
    """SIGKILLs this process (its whole group when it leads one: the Spark JVM dies with it) if
    ``LAKEHOUSE_TEST_KILL_AT`` names ``point`` and ``batch_id``; otherwise does nothing."""
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted or wanted != f"{point}@{batch_id}":
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
