"""A small client of Airflow 3's REST API (v2): DAGs, runs, task instances, import errors, asset events.

The caller builds it at its entry point with the base URL and a login (for the local Airflow:
``deploy.airflow.LocalAirflow(settings).login()``); nothing is created at import. A JWT is
obtained from ``POST /auth/token`` (SimpleAuthManager) on first use and again once after a 401.
Triggering is idempotent on the caller's run id: a run id that exists already (found first, or
refused with 409 by a race) returns that run, marked ``created=False``, instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowUnavailable(RuntimeError):
    """Airflow could not be reached (connection refused, timeout) or answered 502/503/504."""


class AirflowError(RuntimeError):
    """Airflow answered a request with an error status; ``status`` and ``body`` say which."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Dag:
    dag_id: str
    is_paused: bool
    is_stale: bool
    fileloc: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class DagRun:
    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any]
    run_type: str
    start_date: datetime | None
    end_date: datetime | None
    created: bool = True  # False: the run id existed, this is that run

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_RUN_STATES


@dataclass(frozen=True)
class TaskInstance:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None


@dataclass(frozen=True)
class DagImportError:
    filename: str
    bundle_name: str | None
    stack_trace: str


@dataclass(frozen=True)
class AssetEvent:
    id: int
    asset_id: int
    uri: str | None
    timestamp: datetime
    extra: dict[str, Any] = field(default_factory=dict)


class AirflowClient:
    """Airflow's REST API v2 with a login; close it (or use it as a context manager) when done."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: str,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport -----------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise AirflowUnavailable(f"{method} {self._http.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in {502, 503, 504}:
            raise AirflowUnavailable(f"{method} {path} -> {response.status_code}: {response.text[:200]}")
        return response

    def token(self) -> str:
        """A JWT for the configured user (``POST /auth/token``), cached until a 401."""
        if self._token is None:
            response = self._send("POST", "/auth/token", json=self._credentials)
            if response.status_code not in {200, 201}:
                raise AirflowError("POST", "/auth/token", response.status_code, response.text)
            self._token = str(response.json()["access_token"])
        return self._token

    def _request(self, method: str, path: str, *, ok: frozenset[int] = frozenset({200}), **kwargs: Any) -> Any:
        response = self._authorized(method, path, **kwargs)
        if response.status_code not in ok:
            raise AirflowError(method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def _authorized(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (1, 2):
            response = self._send(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
            if response.status_code == 401 and attempt == 1:
                self._token = None  # expired or signed by a previous installation key: log in again
                continue
            return response
        raise AssertionError("unreachable")

    def _pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        offset, limit = 0, 100
        while True:
            page = self._request("GET", path, params={**(params or {}), "limit": limit, "offset": offset})
            items = page[key]
            yield from items
            offset += len(items)
            if not items or offset >= page["total_entries"]:
                return

    # ---- API -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (no login): metadatabase, scheduler, dag_processor, triggerer."""
        response = self._send("GET", "/api/v2/monitor/health")
        if response.status_code != 200:
            raise AirflowError("GET", "/api/v2/monitor/health", response.status_code, response.text)
        return dict(response.json())

    def list_dags(self) -> list[Dag]:
        """Every DAG Airflow knows (stale ones included, flagged)."""
        return [
            Dag(
                dag_id=d["dag_id"],
                is_paused=bool(d["is_paused"]),
                is_stale=bool(d.get("is_stale", False)),
                fileloc=d.get("fileloc", ""),
                tags=tuple(t["name"] for t in d.get("tags") or ()),
            )
            for d in self._pages("/api/v2/dags", "dags")
        ]

    def import_errors(self) -> list[DagImportError]:
        """DAG files that failed to import (``GET /api/v2/importErrors``)."""
        return [
            DagImportError(e["filename"], e.get("bundle_name"), e.get("stack_trace", ""))
            for e in self._pages("/api/v2/importErrors", "import_errors")
        ]

    def set_paused(self, dag_id: str, *, paused: bool) -> None:
        """Pauses or unpauses a DAG (new DAGs start paused)."""
        self._request(
            "PATCH", f"/api/v2/dags/{_q(dag_id)}", params={"update_mask": "is_paused"}, json={"is_paused": paused}
        )

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, paused=False)

    def ensure_pool(self, name: str, *, slots: int, description: str) -> bool:
        """Creates pool ``name`` or sets its slots (idempotent); True when something changed."""
        path = f"/api/v2/pools/{_q(name)}"
        current = self._authorized("GET", path)
        if current.status_code == 404:
            body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
            self._request("POST", "/api/v2/pools", ok=frozenset({200, 201}), json=body)
            return True
        if current.status_code != 200:
            raise AirflowError("GET", path, current.status_code, current.text)
        if current.json().get("slots") == slots:
            return False
        self._request("PATCH", path, params={"update_mask": "slots"}, json={"name": name, "slots": slots})
        return True

    def trigger(self, dag_id: str, *, run_id: str, conf: dict[str, Any] | None = None) -> DagRun:
        """Creates run ``run_id`` of ``dag_id``; if that run id exists, returns it (``created=False``)."""
        # Looked up first: a repeat is the common case and would make the server log an IntegrityError;
        # the 409 still covers two callers racing on one run id.
        existing = self._authorized("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")
        if existing.status_code == 200:
            return replace(_dag_run(existing.json()), created=False)
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        response = self._authorized("POST", path, json=body)
        if response.status_code == 409:
            return replace(self.dag_run(dag_id, run_id), created=False)
        if response.status_code != 200:
            raise AirflowError("POST", path, response.status_code, response.text)
        return _dag_run(response.json())

    def dag_run(self, dag_id: str, run_id: str) -> DagRun:
        """One run and its state (queued, running, success, failed)."""
        return _dag_run(self._request("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"))

    def list_dag_runs(self, dag_id: str) -> list[DagRun]:
        """Every run of one DAG."""
        return [_dag_run(d) for d in self._pages(f"/api/v2/dags/{_q(dag_id)}/dagRuns", "dag_runs")]

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout_s: float = 300.0, poll_s: float = 2.0) -> DagRun:
        """Polls a run until it succeeds or fails; TimeoutError names its last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.dag_run(dag_id, run_id)
            if run.finished:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {dag_id}/{run_id} still {run.state} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """The task instances of one run."""
        return [
            TaskInstance(
                task_id=t["task_id"],
                map_index=int(t["map_index"]),
                state=t.get("state"),
                try_number=int(t["try_number"]),
                start_date=_when(t.get("start_date")),
                end_date=_when(t.get("end_date")),
            )
            for t in self._pages(f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", "task_instances")
        ]

    def asset_id(self, uri: str) -> int:
        """The id of the asset with exactly this URI (assets exist once a parsed DAG declares them)."""
        for asset in self._pages("/api/v2/assets", "assets", {"uri_pattern": uri}):
            if asset["uri"] == uri:
                return int(asset["id"])
        raise AirflowError("GET", f"/api/v2/assets?uri_pattern={uri}", 404, f"no asset with uri {uri!r}")

    def create_asset_event(
        self, *, asset_id: int | None = None, uri: str | None = None, extra: dict[str, Any] | None = None
    ) -> AssetEvent:
        """Records that an asset was updated (``POST /api/v2/assets/events``), by id or URI."""
        if (asset_id is None) == (uri is None):
            raise ValueError("give exactly one of asset_id and uri")
        resolved = asset_id if asset_id is not None else self.asset_id(str(uri))
        event = self._request("POST", "/api/v2/assets/events", json={"asset_id": resolved, "extra": extra or {}})
        return AssetEvent(
            id=int(event["id"]),
            asset_id=int(event["asset_id"]),
            uri=event.get("uri"),
            timestamp=datetime.fromisoformat(event["timestamp"]),
            extra=dict(event.get("extra") or {}),
        )


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _dag_run(d: dict[str, Any]) -> DagRun:
    return DagRun(
        dag_id=d["dag_id"],
        run_id=d["dag_run_id"],
        state=d["state"],
        conf=dict(d.get("conf") or {}),
        run_type=d.get("run_type", ""),
        start_date=_when(d.get("start_date")),
        end_date=_when(d.get("end_date")),
    )
