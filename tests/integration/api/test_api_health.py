"""Health, readiness, metrics and request ids."""

import logging

import psycopg
import pytest
from psycopg import sql

from tests.integration.api.api_testkit import derive, sign_up, wait_ready
from tests.integration.shard_testkit import migrated_shards

pytestmark = pytest.mark.integration


def test_healthz_and_readyz_report_each_dependency_with_latency(client, api_settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    wait_ready(client)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    names = [d["name"] for d in body["dependencies"]]
    assert names == [f"postgres:{n}" for n in api_settings.postgres.shard_names()] + ["redis", "search"]
    assert all(d["ok"] and d["latency_ms"] >= 0 for d in body["dependencies"])


def test_metrics_expose_latency_histogram_and_pool_usage(client):
    client.get("/healthz")
    text = client.get("/metrics").text
    assert (
        'lakehouse_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz",status="200"}' in text
    )
    for shard in range(3):
        assert f'lakehouse_db_pool_connections{{shard="{shard}",state="max"}}' in text


def test_request_id_is_echoed_or_made_and_appears_in_log_lines(client, caplog):
    with caplog.at_level(logging.INFO, logger="api.access"):
        given = client.get("/healthz", headers={"X-Request-ID": "req-1234567890"})
        made = client.get("/v1/courses/not-a-uuid")
    assert given.headers["x-request-id"] == "req-1234567890"
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]
    ids = {getattr(r, "request_id", None) for r in caplog.records}
    assert {"req-1234567890", made.headers["x-request-id"]} <= ids
    evil = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert evil.headers["x-request-id"] != "bad id\nwith newline"


def test_cors_preflight_follows_settings(make_client, api_settings):
    from tests.integration.api.api_testkit import derive

    cors = make_client(derive(api_settings, api={"cors_origins": ("https://app.example",)}))
    allowed = cors.options(
        "/v1/courses", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    denied = cors.options(
        "/v1/courses", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in denied.headers
    sign_up(cors)


def test_readyz_is_503_and_names_the_shard_when_one_is_down(make_client, api_settings, run_id):
    # A recorded map of 3 shards whose last database is gone, as if that server were down (a
    # configured shard count other than the recorded one is refused at start-up instead).
    settings = derive(api_settings, postgres={"shards": 3, "shard_db_prefix": f"lakehouse_down_{run_id}_"})
    with migrated_shards(settings):
        missing = settings.postgres.shard_names()[-1]
        with psycopg.connect(settings.postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(missing)))
        client = make_client(derive(settings, postgres={"connect_timeout_s": 2}))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        down = [d for d in body["dependencies"] if not d["ok"]]
        assert [d["name"] for d in down] == [f"postgres:{missing}"] and down[0]["detail"]
