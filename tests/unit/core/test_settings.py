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


@pytest.mark.parametrize("environment", ["development", "production"])
def test_published_jwt_key_is_refused_outside_tests(environment):
    with pytest.raises(ValidationError, match="published key"):
        Settings(environment=environment, api={"jwt_secret": "dev-only-secret-change-me"})


def test_unset_jwt_secret_becomes_one_random_key_per_installation(tmp_path):
    from core.secrets import jwt_secret

    settings = Settings(environment="development", stack={"state_dir": tmp_path})
    first = jwt_secret(settings)
    assert len(first) >= 32 and first == jwt_secret(settings)  # made once, then read
    assert (tmp_path / "secrets" / "jwt_secret").stat().st_mode & 0o077 == 0  # owner only
    other = Settings(environment="development", stack={"state_dir": tmp_path / "other"})
    assert jwt_secret(other) != first  # another installation, another key


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
