"""Token buckets in Redis: 429 with Retry-After once a bucket is empty."""

import pytest

from core.redis import redis_client
from tests.integration.api.api_testkit import LiveServer, derive, sign_up

pytestmark = pytest.mark.integration


def test_429_after_the_user_bucket_empties(make_client, api_settings):
    client = make_client(derive(api_settings, api={"rate_limit_per_minute": 5, "rate_limit_ip_per_minute": 1000}))
    account = sign_up(client)  # anonymous requests: the IP bucket only
    statuses = [client.get("/v1/users/me", headers=account.headers).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429, 429]
    refused = client.get("/v1/users/me", headers=account.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    retry_after = int(refused.headers["retry-after"])
    assert 10 <= retry_after <= 12  # one token refills in 60 s / 5 = 12 s, less the seconds already gone
    assert "per user" in refused.json()["detail"]
    assert refused.headers["x-request-id"]

    redis = redis_client(api_settings.redis)
    try:
        bucket = redis.hgetall(f"{api_settings.redis.key_prefix}ratelimit:user:{account.user_id}")
    finally:
        redis.close()
    assert float(bucket["tokens"]) < 1
    other = sign_up(client)  # another user still has a full bucket
    assert client.get("/v1/users/me", headers=other.headers).status_code == 200
    assert client.get("/healthz").status_code == 200  # health is never limited
    metrics = client.get("/metrics").text
    assert 'lakehouse_rate_limit_rejections_total{scope="user"} 3.0' in metrics


def test_429_per_ip_for_anonymous_callers(make_client, api_settings):
    client = make_client(
        derive(
            api_settings,
            api={"rate_limit_ip_per_minute": 3},
            redis={"key_prefix": api_settings.redis.key_prefix + "ip:"},
        )
    )
    statuses = [
        client.post("/v1/auth/login", json={"email": "a@example.com", "password": "x"}).status_code for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.parametrize("trusted, expected", [((), [401, 401, 401, 429, 429]), (("127.0.0.1",), [401] * 5)])
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(api_settings, trusted, expected):
    import httpx

    settings = derive(
        api_settings,
        api={"rate_limit_ip_per_minute": 3, "trusted_proxies": trusted},
        redis={"key_prefix": api_settings.redis.key_prefix + f"xff{len(trusted)}:"},
    )
    with LiveServer(settings) as server:
        statuses = [
            httpx.post(
                f"{server.url}/v1/auth/login",
                json={"email": "a@example.com", "password": "x"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},  # a new "client" each time
            ).status_code
            for i in range(5)
        ]
    assert statuses == expected
