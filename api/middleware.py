"""The app edge as plain ASGI middleware: request ids and access log, body limits, rate limits."""

from __future__ import annotations

import logging
import random
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import bind_request_id, new_request_id, reset_request_id
from api.errors import PayloadTooLarge, Unauthorized, problem_response
from api.metrics import Metrics
from core.events import EVENT_REQUEST_SAMPLED
from core.settings import APISettings

access_log = logging.getLogger("api.access")
log = logging.getLogger("api.edge")

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Request-state key: (access token, revoked?) as read by the edge's Redis round trip.
SESSION_CHECK = "session_check"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Request id on every response and log line; latency histogram; last-resort 500 problem;
    a sample of request latencies (``sample_rate``) as ``request.sampled`` analytics events."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, sample_rate: float = 0.0) -> None:
        self.app = app
        self.metrics = metrics
        self.sample_rate = sample_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(_header(scope, b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = bind_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method", "WS"), scope.get("path"))
            if scope["type"] != "http" or response_started:
                raise
            response = problem_response(500, "An unexpected error occurred; quote the request id when reporting it.")
            await response(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.request_latency.labels(scope["method"], route, str(status)).observe(elapsed)
                if self.sample_rate and random.random() < self.sample_rate:  # noqa: S311 - sampling, not security
                    _emit_latency_sample(scope, route, status, elapsed)
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )
            reset_request_id(token)


def _emit_latency_sample(scope: Scope, route: str, status: int, elapsed: float) -> None:
    """One request's latency for the warehouse (``fact_api_events.latency_ms``): handed to the
    analytics publisher's buffer, which returns at once (never on the request's path to Kafka)."""
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    if services is None:  # starting or stopping: nothing to publish with
        return
    course_id = scope.get("path_params", {}).get("course_id")
    services.analytics.emit(
        EVENT_REQUEST_SAMPLED,
        user_id=None,
        course_id=str(course_id) if course_id is not None else None,
        route=route,
        method=scope["method"],
        status=status,
        latency_ms=round(elapsed * 1000, 3),
    )


class BodyLimitMiddleware:
    """413 for bodies over the limit: by Content-Length up front, and by counting streamed bytes."""

    def __init__(self, app: ASGIApp, *, settings: APISettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").lower()
        is_upload = content_type.startswith("multipart/") or content_type == "application/pdf"
        limit = self.settings.max_upload_bytes if is_upload else self.settings.max_json_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await problem_response(400, "Content-Length must be a non-negative integer.")(scope, receive, send)
                return
            if int(declared) > limit:
                await self._too_large(limit)(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read: mapped to 413 by the error handlers.
                    raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            return message

        await self.app(scope, counting_receive, send)

    @staticmethod
    def _too_large(limit: int):
        return problem_response(413, f"The request body exceeds the limit of {limit} bytes.", slug="payload-too-large")


class RateLimitMiddleware:
    """Token buckets per client IP and per authenticated user; 429 with Retry-After when empty.

    The same Redis round trip checks the session denylist of the request's access token; the
    answer rides in the request state (``SESSION_CHECK``) for ``api.deps.current_principal``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope["app"].state, "services", None) if scope["type"] == "http" else None
        if services is None or not services.settings.api.rate_limit_enabled or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        auth = _header(scope, b"authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        principal = None
        if token:
            try:
                principal = services.tokens.principal(token)
            except Unauthorized:
                principal = None
        decision, revoked = await services.limiter.acheck_edge(
            ip=ip,
            user_id=str(principal.user_id) if principal else None,
            session_id=principal.session_id if principal else None,
            path=scope["path"] if scope["method"] == "GET" else None,
        )
        if principal is not None and revoked is not None:
            scope.setdefault("state", {})[SESSION_CHECK] = (token, revoked)
        if decision is not None and not decision.allowed:
            response = problem_response(
                429,
                f"Rate limit of {decision.limit} requests per minute per {decision.scope} exceeded; "
                f"retry in {decision.retry_after_s} s.",
                slug="rate-limited",
                headers={
                    "Retry-After": str(decision.retry_after_s),
                    "X-RateLimit-Limit": str(decision.limit),
                    "X-RateLimit-Remaining": "0",
                },
            )
            await response(scope, receive, send)
            return
        if decision is None:
            await self.app(scope, receive, send)
            return
        quota = [
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        ]

        async def send_with_quota(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *quota]
            await send(message)

        await self.app(scope, receive, send_with_quota)
