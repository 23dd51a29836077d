"""The stream's readiness signal: a Redis heartbeat, not a log line.

While the query runs, a ``StreamingQueryListener`` sets ``<redis.key_prefix>stream:<job>:heartbeat``
to the current epoch seconds when the query starts and after every trigger (progress and idle
events), with a TTL of ``ingest.heartbeat_ttl_s``; it deletes the key when the query stops.
``stream_is_ready`` is the reader: a fresh heartbeat means the stream is consuming.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from core.keys import stream_heartbeat_key

if TYPE_CHECKING:
    from pyspark.sql.streaming.listener import StreamingQueryListener

    from core.settings import Settings

log = logging.getLogger(__name__)


def heartbeat_key(settings: Settings, job_name: str) -> str:
    return settings.redis.key_prefix + stream_heartbeat_key(job_name)


def stream_is_ready(
    settings: Settings, *, job_name: str = "ingest_documents", redis: Any = None, since: float | None = None
) -> bool:
    """True when the stream ``job_name`` has beaten within ``ingest.heartbeat_ttl_s`` seconds
    (and, with ``since``, not before that epoch time: a beat of an earlier run does not count)."""
    from core.redis import redis_client

    client = redis if redis is not None else redis_client(settings.redis)
    try:
        value = client.get(heartbeat_key(settings, job_name))
    except Exception:
        log.debug("heartbeat read failed", exc_info=True)
        return False
    if value is None:
        return False
    try:
        beat = float(value)
    except ValueError:
        return False
    if since is not None and beat < since:
        return False
    return time.time() - beat < settings.ingest.heartbeat_ttl_s


def heartbeat_listener(settings: Settings, *, query_name: str, redis: Any = None) -> StreamingQueryListener:
    """A listener that keeps the heartbeat of the query named ``query_name`` fresh."""
    from pyspark.sql.streaming import StreamingQueryListener

    from core.redis import redis_client

    key = heartbeat_key(settings, query_name)
    ttl_ms = int(settings.ingest.heartbeat_ttl_s * 1000)

    class HeartbeatListener(StreamingQueryListener):
        def __init__(self) -> None:
            self.client = redis
            self.query_id: str | None = None

        def _redis(self) -> Any:
            if self.client is None:
                self.client = redis_client(settings.redis)
            return self.client

        def _beat(self) -> None:
            try:
                self._redis().set(key, f"{time.time():.3f}", px=ttl_ms)
            except Exception:
                log.warning("stream heartbeat not written", exc_info=True)

        def onQueryStarted(self, event: Any) -> None:
            if event.name == query_name:
                self.query_id = str(event.id)
                self._beat()

        def onQueryProgress(self, event: Any) -> None:
            if str(event.progress.id) == self.query_id:
                self._beat()

        def onQueryIdle(self, event: Any) -> None:
            if str(event.id) == self.query_id:
                self._beat()

        def onQueryTerminated(self, event: Any) -> None:
            if str(event.id) == self.query_id:
                self.clear()

        def clear(self) -> None:
            """Removes the heartbeat (also called after the listener is detached: listener events
            arrive asynchronously, so the termination event may come after the removal or never)."""
            try:
                self._redis().delete(key)
            except Exception:
                log.warning("stream heartbeat not removed", exc_info=True)

    return HeartbeatListener()
