"""Liveness, readiness (each dependency with its latency) and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.container import Services
from api.deps import ServicesDep
from api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict:
    """The process is up (no dependency is touched)."""
    return {"status": "ok"}


def _check_dependencies(services: Services) -> list[dict]:
    results = []
    for usage, pool in zip(services.db.usage(), services.db.pools, strict=True):
        started = time.perf_counter()
        try:
            with pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            results.append(
                {
                    "name": f"postgres:{usage.database}",
                    "ok": True,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    "detail": "ok",
                }
            )
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results.append(
                {
                    "name": f"postgres:{usage.database}",
                    "ok": False,
                    "latency_ms": None,
                    "detail": f"{type(exc).__name__}: {exc}"[:200],
                }
            )
    try:
        latency = services.redis.ping_latency_ms()
        results.append({"name": "redis", "ok": True, "latency_ms": round(latency, 2), "detail": "ok"})
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        results.append(
            {"name": "redis", "ok": False, "latency_ms": None, "detail": f"{type(exc).__name__}: {exc}"[:200]}
        )
    return results


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Each dependency with its latency. Redis down is `degraded` (200: reads still work from
    PostgreSQL); a shard down is `unavailable` (503); `starting` (503) until search has loaded
    its query model (a failed load is `degraded`: everything but search works)."""
    deps = [*await run_in_threadpool(_check_dependencies, services), services.search.status()]
    postgres_ok = all(d["ok"] for d in deps if d["name"].startswith("postgres:"))
    redis_ok = all(d["ok"] for d in deps if d["name"] == "redis")
    search_ok = services.search.ready
    if not postgres_ok:
        state = "unavailable"
    elif services.search.loading:
        state = "starting"  # the query model is loading: do not send searches here yet
    else:
        state = "ready" if redis_ok and search_ok else "degraded"
    ok = state in ("ready", "degraded")
    return JSONResponse({"status": state, "dependencies": deps}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: request latency histogram, cache hit ratio, rate-limit rejections,
    per-shard pool usage, Redis degradation."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
