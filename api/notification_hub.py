"""One Redis pub/sub connection per API instance, fanned out in-process to the local WebSockets.

Each notification WebSocket used to hold its own Redis connection (20k students on an
instance: 20k Redis clients, over Redis's default ``maxclients``). Here the instance holds one
subscriber connection: the first local socket of a user subscribes ``notifications:{user}`` on
it, the last one to leave unsubscribes, and one reader task hands every message to the user's
local listeners. A listener is a bounded queue (``QUEUE_SIZE`` events; when a slow client lets
it fill, the oldest event is dropped: events carry a job's full state, so the newest one is
what matters).

``subscribe`` returns once Redis has confirmed the subscription, so the WebSocket's snapshot,
read afterwards, cannot miss an event published in between. If the connection breaks (Redis
restarted, the client killed), the reader reconnects with a back-off, subscribes every local
channel again and delivery resumes; events published while it was away are not replayed (a
reconnecting browser gets a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterable
from typing import Any

from core.keys import notifications_channel
from core.settings import RedisSettings

log = logging.getLogger("api.notifications")
QUEUE_SIZE = 16
CONFIRM_TIMEOUT_S = 5.0
RECONNECT_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)
SUBSCRIBE_BATCH = 1000


class HubUnavailable(RuntimeError):
    """Redis pub/sub cannot be reached: the WebSocket is closed with 1011."""


class Listener:
    """One WebSocket's inbox: a bounded queue of JSON texts."""

    __slots__ = ("channel", "dropped", "queue")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, text: str) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(text)


class NotificationHub:
    """The instance's one subscriber connection and its local fan-out."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.client_name = f"lakehouse-api-hub-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.reconnects = 0
        self._local: dict[str, set[Listener]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._client: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def listeners(self) -> int:
        return sum(len(group) for group in self._local.values())

    def _connect(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A plain connection even in cluster mode: PUBLISH reaches subscribers on every node.
        # No read timeout (a subscriber waits); a health check every 30 s notices a dead peer;
        # no retries inside redis-py: the reader's back-off below is the policy.
        self._client = aioredis.Redis.from_url(
            self.settings.dsn,
            decode_responses=True,
            socket_timeout=None,
            socket_connect_timeout=2,
            client_name=self.client_name,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub = self._client.pubsub()
        return self._pubsub

    async def subscribe(self, user_id: str) -> Listener:
        """A listener for ``user_id``'s events, once Redis has confirmed the subscription."""
        from redis.exceptions import RedisError

        if self._lock is None:
            self._lock = asyncio.Lock()
        channel = notifications_channel(user_id)
        listener = Listener(channel)
        async with self._lock:
            group = self._local.setdefault(channel, set())
            group.add(listener)
            confirmed = self._confirmed.get(channel)
            if len(group) == 1:
                confirmed = self._confirmed[channel] = asyncio.Event()
                try:
                    if self._pubsub is None:  # first use, or the last reconnect failed: all channels
                        await self._subscribe_all(self._connect())
                    else:
                        await self._pubsub.subscribe(channel)
                except (RedisError, OSError) as exc:
                    self._pubsub = None  # the next subscribe (or the reader) connects afresh
                    self._forget(listener)
                    raise HubUnavailable(str(exc)) from exc
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(), name="notification-hub")
        if confirmed is not None:
            try:
                await asyncio.wait_for(confirmed.wait(), CONFIRM_TIMEOUT_S)
            except TimeoutError as exc:
                await self.unsubscribe(listener)
                raise HubUnavailable("Redis did not confirm the subscription") from exc
        return listener

    def _forget(self, listener: Listener) -> bool:
        """Drops a listener; True when it was its channel's last one."""
        group = self._local.get(listener.channel)
        if group is None:
            return False
        group.discard(listener)
        if group:
            return False
        del self._local[listener.channel]
        self._confirmed.pop(listener.channel, None)
        return True

    async def unsubscribe(self, listener: Listener) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._forget(listener) and self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(listener.channel)

    async def _read(self) -> None:
        """Hands every message to the local listeners of its channel; reconnects on failure."""
        failures = 0
        while self._local:
            try:
                if self._pubsub is None:
                    raise ConnectionError("not connected")
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any break of the connection: reconnect
                failures += 1
                self.reconnects += 1
                log.warning("notification hub lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S)) - 1])
                await self._reconnect()
                continue
            if message is None:
                continue
            kind, channel = message.get("type"), message.get("channel")
            if kind == "message":
                for listener in tuple(self._local.get(channel, ())):
                    listener.offer(message["data"])
            elif kind == "subscribe":
                confirmed = self._confirmed.get(channel)
                if confirmed is not None:
                    confirmed.set()

    async def _reconnect(self) -> None:
        """A new connection subscribed to every channel with local listeners; on failure the
        hub is left disconnected and the reader backs off and tries again."""
        assert self._lock is not None
        async with self._lock:
            old, old_client, self._pubsub = self._pubsub, self._client, None
            for closable in (old, old_client):
                if closable is not None:
                    with contextlib.suppress(Exception):
                        await closable.aclose()
            try:
                await self._subscribe_all(self._connect())
            except Exception as exc:  # noqa: BLE001 - retried by the reader
                log.warning("notification hub could not subscribe again (%s)", exc)
                self._pubsub = None

    async def _subscribe_all(self, pubsub: Any) -> None:
        for batch in _batches(list(self._local), SUBSCRIBE_BATCH):
            await pubsub.subscribe(*batch)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        self._local.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
