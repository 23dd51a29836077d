"""The same Redis code paths against a 3-node Redis Cluster (the stack's optional service)."""

import json

import pytest

from core.redis import redis_client
from core.sharding import shard_for
from deploy.stack import Stack
from tests.integration.api.api_testkit import create_course, derive, shard_conn, sign_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster_settings(api_settings, tmp_path_factory):
    settings = derive(
        api_settings,
        stack={
            "state_dir": tmp_path_factory.mktemp("cluster") / "state",
            "services": ("redis-cluster",),
            "install_missing": False,
        },
        redis={"cluster": True, "port": api_settings.redis.cluster_ports[0]},
    )
    cluster = Stack(settings)
    cluster.up()
    yield settings
    cluster.down()


def test_cache_sessions_and_rate_limits_work_on_redis_cluster(cluster_settings, make_client):
    redis = redis_client(cluster_settings.redis)
    try:
        assert redis.cluster_info()["cluster_state"] == "ok"
        assert len(redis.get_primaries()) == 3
        client = make_client(cluster_settings)
        teacher = sign_up(client, role="instructor")
        course = create_course(client, teacher, title="Clustered")
        key = f"{cluster_settings.redis.key_prefix}course:{course['id']}"
        assert client.get(f"/v1/courses/{course['id']}", headers=teacher.headers).status_code == 200
        assert json.loads(redis.get(key))["title"] == "Clustered"
        with shard_conn(cluster_settings, shard_for(course["id"], cluster_settings.postgres.shards)) as conn:
            conn.execute("UPDATE courses SET title = 'behind' WHERE id = %s", (course["id"],))
        assert client.get(f"/v1/courses/{course['id']}", headers=teacher.headers).json()["title"] == "Clustered"
        client.patch(f"/v1/courses/{course['id']}", json={"title": "Re-clustered"}, headers=teacher.headers)
        assert redis.get(key) is None

        # sessions and revocation
        refreshed = client.post("/v1/auth/refresh", json={"refresh_token": teacher.refresh_token})
        assert refreshed.status_code == 200
        client.post("/v1/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]})
        refused = client.post("/v1/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})
        assert refused.status_code == 401

        # keys spread over the nodes: the app only ever touches one key per command
        nodes_with_keys = sum(1 for node in redis.get_primaries() if redis.dbsize(target_nodes=node) > 0)
        assert nodes_with_keys >= 2
    finally:
        redis.close()


def test_rate_limit_on_redis_cluster(cluster_settings, make_client):
    client = make_client(derive(cluster_settings, api={"rate_limit_per_minute": 3}))
    account = sign_up(client)
    statuses = [client.get("/v1/users/me", headers=account.headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
