"""A small OpenAI-compatible chat-completions server on loopback (FastAPI + uvicorn in a thread):
the real ``ChatOpenAI`` client talks HTTP to it. Each request is recorded; a responder function
turns the request body into the assistant's answer text."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# At module level: FastAPI resolves the endpoint's annotations (``Request``) from these globals.
from fastapi import FastAPI, Request

USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
Responder = Callable[[dict[str, Any]], str]


class StubServer:
    """Serves POST /v1/chat/completions with ``responder(body)`` as the answer."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(body)
            return {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.responder(body)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }

        return app


@contextmanager
def serve(responder: Responder) -> Iterator[StubServer]:
    """Runs a StubServer on a free loopback port for the duration of the block."""
    import uvicorn

    stub = StubServer(responder)
    server = uvicorn.Server(uvicorn.Config(stub.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stub OpenAI server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    stub.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield stub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
