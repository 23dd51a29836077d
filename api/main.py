"""The course service: ``create_app(settings)`` builds the FastAPI app; nothing connects at import.

Clients (one PostgreSQL pool per shard, Redis) are created in the app's lifespan and closed
with it. Serve it with ``lakehouse api`` (or ``uvicorn api.main:app_from_env --factory`` with
``--no-proxy-headers`` unless a load balancer is in front: see ``uvicorn_proxy_options``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from api.container import Services
from api.context import configure_logging, install_log_record_factory
from api.errors import PROBLEM_MEDIA_TYPE, install_error_handlers, problem_responses
from api.metrics import Metrics
from api.middleware import BodyLimitMiddleware, RateLimitMiddleware, RequestContextMiddleware
from api.routers import auth, courses, documents, health, jobs, notifications, study, users
from api.web_assets import router as web_router
from core.settings import APISettings, Settings

DESCRIPTION = """\
Courses, membership, document metadata and job status of Lakehouse for Learning.

* **Auth**: `POST /v1/auth/login` returns a short-lived JWT access token (send it as
  `Authorization: Bearer <token>`) and a refresh token (rotated by `POST /v1/auth/refresh`,
  revoked by `POST /v1/auth/logout`).
* **Visibility**: a course you are not a member of is `404`, as if it did not exist.
* **Errors**: every 4xx/5xx is `application/problem+json` (`type`, `title`, `status`, `detail`,
  `request_id`); every response carries `X-Request-ID`.
* **Rate limits**: token buckets per user and per IP; `429` with `Retry-After`.
* **Live progress**: `WS /v1/notifications?access_token=<token>` sends a `snapshot` of your open
  jobs, then a `job` event for every progress or completion report.
"""


def _load_search(services: Services) -> None:
    """Loads the query model and LanceDB, then freezes what they allocated as well: loaded after
    the lifespan's ``gc.freeze()``, hundreds of thousands of long-lived objects would otherwise
    be walked by every full collection (measured: 67-200 ms pauses, several a second under load,
    the cached read's whole p99 tail)."""
    services.search.load()
    gc.collect()
    gc.freeze()


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; its clients are built on startup and closed on shutdown."""
    install_log_record_factory()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(Services.build, settings, metrics)
        app.state.services = services
        # The query model and LanceDB load in the background: /healthz answers at once, /readyz
        # says `starting` until search is ready.
        threading.Thread(target=_load_search, args=(services,), name="search-load", daemon=True).start()
        # Everything loaded so far lives as long as the process: out of the cyclic GC's sight,
        # so a full collection does not walk it (they cost ~100 ms pauses in the tail latency).
        gc.freeze()
        try:
            yield
        finally:
            app.state.services = None
            await services.aclose()
            await run_in_threadpool(services.close)

    app = FastAPI(
        title="Lakehouse for Learning — course service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.api.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api.docs_enabled else None,
        responses=problem_responses(500),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    install_error_handlers(app)
    for router in (auth.router, users.router, courses.router, documents.router, jobs.router, study.router):
        app.include_router(router)
    app.include_router(documents.search_router)
    app.include_router(notifications.router)
    app.include_router(health.router)
    app.include_router(web_router)  # the student page (built by deploy/web_build.py)

    # Added inner to outer: the request context wraps everything, so even a 413/429 has an id.
    app.add_middleware(BodyLimitMiddleware, settings=settings.api)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.api.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        allow_credentials=False,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, sample_rate=settings.api.request_sample_rate)
    _problem_only_openapi(app)
    return app


def _problem_only_openapi(app: FastAPI) -> None:
    """Error responses are documented as ``application/problem+json`` only (FastAPI adds a
    plain ``application/json`` twin for every response model; ours never sends that)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = generate()
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and PROBLEM_MEDIA_TYPE in content:
                            content.pop("application/json", None)
            app.openapi_schema = spec
        return app.openapi_schema

    # Replacing app.openapi is FastAPI's documented way to customise the schema; its types declare a method.
    app.openapi = openapi  # type: ignore[method-assign]


def uvicorn_proxy_options(settings: APISettings) -> dict[str, Any]:
    """uvicorn's forwarded-header handling for ``settings``: off unless proxies are configured
    (uvicorn's own default believes any header sent from 127.0.0.1)."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(settings.trusted_proxies)}


def app_from_env() -> FastAPI:
    """uvicorn factory: Settings from the environment (``LAKEHOUSE_...``)."""
    settings = Settings()
    configure_logging(settings.api.log_level)
    return create_app(settings)
