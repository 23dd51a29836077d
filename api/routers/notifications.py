"""WS /v1/notifications: job progress and completion events of the caller, live.

Authenticate with ``?access_token=<token>`` (browsers cannot set headers on a WebSocket) or
an ``Authorization: Bearer`` header. The server subscribes to ``notifications:{user_id}``
first and only then sends a ``snapshot`` of the caller's open jobs, so an event published
while the snapshot is read is not lost (at worst it arrives twice; events carry full state).
Messages: ``{"type": "snapshot", "jobs": [JobState...]}`` then ``{"type": "job", "job": JobState}``.
A bad token closes with code 4401; Redis unavailable closes with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from api.cache import RedisDown
from api.deps import WebSocketServicesDep
from api.errors import Unauthorized
from core.keys import notifications_channel
from core.redis import async_subscriber

router = APIRouter(tags=["notifications"])
log = logging.getLogger("api.notifications")


def _token(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("access_token")
    if token:
        return token
    auth = websocket.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


@router.websocket("/v1/notifications")
async def notifications(websocket: WebSocket, services: WebSocketServicesDep) -> None:
    if services is None:
        await websocket.close(code=1013, reason="starting up")
        return
    try:
        principal = services.tokens.principal(_token(websocket) or "")
        await run_in_threadpool(services.tokens.require_live_session, principal)
    except Unauthorized as exc:
        await websocket.accept()
        await websocket.send_json({"type": "error", "status": 401, "detail": exc.detail})
        await websocket.close(code=4401, reason="unauthorized")
        return
    await websocket.accept()
    user_id = str(principal.user_id)
    import redis.asyncio as aioredis

    subscriber = async_subscriber(services.settings.redis)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    services.metrics.ws_connections.inc()
    try:
        try:
            await pubsub.subscribe(notifications_channel(user_id))
            jobs = await run_in_threadpool(services.jobs.open_jobs, user_id)
        except (RedisDown, OSError, aioredis.RedisError) as exc:
            log.warning("notifications unavailable for %s: %s", user_id, exc)
            await websocket.close(code=1011, reason="notifications unavailable")
            return
        await websocket.send_json({"type": "snapshot", "jobs": [job.model_dump() for job in jobs]})

        async def relay() -> None:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await websocket.send_text(message["data"])

        async def until_client_leaves() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "ping":
                    await websocket.send_text(json.dumps({"type": "pong"}))

        tasks = [asyncio.create_task(relay()), asyncio.create_task(until_client_leaves())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None and not isinstance(task.exception(), asyncio.CancelledError):
                log.warning("notification stream for %s ended: %s", user_id, task.exception())
        with contextlib.suppress(Exception):
            await websocket.close()
    finally:
        services.metrics.ws_connections.dec()
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        with contextlib.suppress(Exception):
            await subscriber.aclose()
