"""The stack's process management against real processes: ports, crashes, stop by PID."""

import socket
from pathlib import Path

import pytest

from core.settings import Settings
from deploy.stack import ServiceStartError, Stack, port_in_use

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_redis_settings(tmp_path: Path, port: int, **stack) -> Settings:
    return Settings(
        environment="test",
        stack={"state_dir": tmp_path / "state", "services": ("redis",), "install_missing": False, **stack},
        redis={"port": port},
    )


def test_port_taken_fails_fast_with_the_service_named(tmp_path, stack):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        private = Stack(_private_redis_settings(tmp_path, port))
        with pytest.raises(ServiceStartError) as excinfo:
            private.up()
    message = str(excinfo.value)
    assert message.startswith("redis: port")
    assert str(port) in message and "already in use" in message
    # refused before anything was spawned (so no wait for a health probe's timeout either)
    assert private.running_pid("redis") is None
    assert not private.log_file("redis").exists()


def test_service_that_crashes_reports_its_log_tail(tmp_path, stack):
    port = _free_port()
    private = Stack(_private_redis_settings(tmp_path, port))
    tools_redis = private.services(None)[0]
    tools_redis.argv.append("--no-such-option")
    with pytest.raises(ServiceStartError) as excinfo:
        private._start(tools_redis)
    message = str(excinfo.value)
    assert "redis exited with code" in message
    assert "no-such-option" in message  # redis-server's own complaint, from the log tail


def test_up_then_down_stops_exactly_the_started_process(tmp_path, stack):
    port = _free_port()
    private = Stack(_private_redis_settings(tmp_path, port))
    private.up()
    pid = private.running_pid("redis")
    assert pid is not None and port_in_use(port)
    assert private.up()[0].pid == pid  # idempotent: the running one is kept
    assert private.down() == ["redis"]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not port_in_use(port)
    assert stack.running_pid("redis") is not None  # the shared stack was not touched


def test_stack_up_leaves_every_shard_at_the_latest_schema(settings, stack):
    import psycopg

    from deploy.migrate import migration_files

    expected = {path.name for path in migration_files()}
    for name in settings.postgres.shard_names():
        with psycopg.connect(settings.postgres.dsn(name)) as conn:
            applied = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        assert expected <= applied, name
