import pytest
from pydantic import ValidationError

from core.settings import PROJECT_ROOT, Settings


def test_defaults_are_local_and_under_the_checkout():
    settings = Settings()
    assert settings.object_store.mode == "local"
    assert settings.stack.state_dir == PROJECT_ROOT / ".lakehouse"
    assert settings.warehouse.dsn.startswith("chdb:///")
    assert settings.postgres.shard_names() == ["lakehouse_shard_0", "lakehouse_shard_1"]


def test_nested_environment_variables_override_defaults(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_POSTGRES__SHARDS", "4")
    monkeypatch.setenv("LAKEHOUSE_KAFKA__PORT", "19092")
    monkeypatch.setenv("LAKEHOUSE_OBJECT_STORE__MODE", "s3")
    settings = Settings()
    assert settings.postgres.shards == 4
    assert settings.kafka.servers == "127.0.0.1:19092"
    assert settings.object_store.mode == "s3"


def test_invalid_value_names_the_field(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_REDIS__PORT", "not-a-port")
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert "redis.port" in str(excinfo.value).replace("\n", ".").replace(" ", "") or "port" in str(excinfo.value)


def test_unknown_nested_field_is_refused(monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_KAFKA__PROT", "1")
    with pytest.raises(ValidationError, match="prot"):
        Settings()


def test_production_refuses_default_secrets():
    with pytest.raises(ValidationError, match=r"api\.jwt_secret"):
        Settings(environment="production")


def test_production_accepts_real_secrets():
    settings = Settings(
        environment="production",
        api={"jwt_secret": "x" * 40},
        postgres={"password": "p" * 20},
        object_store={"secret_key": "s" * 20},
    )
    assert settings.environment == "production"


def test_pool_bounds_are_checked():
    with pytest.raises(ValidationError, match="pool_min_size"):
        Settings(postgres={"pool_min_size": 10, "pool_max_size": 2})
