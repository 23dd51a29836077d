"""WS /v1/notifications: job progress and completion events of the caller, live.

Authenticate with ``?access_token=<token>`` (browsers cannot set headers on a WebSocket) or
an ``Authorization: Bearer`` header. The server subscribes to ``notifications:{user_id}``
first (on the instance's one shared Redis subscriber, ``api.notification_hub``) and only then
sends a ``snapshot`` of the caller's open jobs, so an event published while the snapshot is
read is not lost (at worst it arrives twice; events carry full state).
Messages: ``{"type": "snapshot", "jobs": [JobState...]}`` then ``{"type": "job", "job": JobState}``;
a text ``ping`` is answered with ``{"type": "pong"}``.
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
from api.notification_hub import HubUnavailable, Listener

router = APIRouter(tags=["notifications"])
log = logging.getLogger("api.notifications")
PONG = json.dumps({"type": "pong"})


def _token(websocket: WebSocket) -> str | None:
    token = websocket.query_params.get("access_token")
    if token:
        return token
    auth = websocket.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


async def _pump(listener: Listener, websocket: WebSocket) -> None:
    """The socket's only sender after the snapshot: its events, in order."""
    while True:
        await websocket.send_text(await listener.queue.get())


@router.websocket("/v1/notifications")
async def notifications(websocket: WebSocket, services: WebSocketServicesDep) -> None:
    if services is None:
        await websocket.close(code=1013, reason="starting up")
        return
    try:
        principal = services.tokens.principal(_token(websocket) or "")
        await services.tokens.arequire_live_session(principal)
    except Unauthorized as exc:
        await websocket.accept()
        await websocket.send_json({"type": "error", "status": 401, "detail": exc.detail})
        await websocket.close(code=4401, reason="unauthorized")
        return
    await websocket.accept()
    user_id = str(principal.user_id)
    listener: Listener | None = None
    sender: asyncio.Task | None = None
    services.metrics.ws_connections.inc()
    try:
        try:
            listener = await services.hub.subscribe(user_id)
            jobs = await run_in_threadpool(services.jobs.open_jobs, user_id)
        except (HubUnavailable, RedisDown) as exc:
            log.warning("notifications unavailable for %s: %s", user_id, exc)
            await websocket.close(code=1011, reason="notifications unavailable")
            return
        await websocket.send_json({"type": "snapshot", "jobs": [job.model_dump() for job in jobs]})
        sender = asyncio.create_task(_pump(listener, websocket))
        # A send to a closed socket ends the pump; its error is expected, not worth a warning.
        sender.add_done_callback(lambda task: task.cancelled() or task.exception())
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") == "ping":
                listener.offer(PONG)
        with contextlib.suppress(Exception):
            await websocket.close()
    finally:
        services.metrics.ws_connections.dec()
        if sender is not None:
            sender.cancel()
        if listener is not None:
            await services.hub.unsubscribe(listener)
