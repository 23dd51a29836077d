"""A smoke of every part of the platform's stack, each check against the real service."""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from core.settings import Settings


@dataclass(frozen=True)
class SmokeResult:
    name: str
    ok: bool
    seconds: float
    detail: str


def check_postgres_shards(settings: Settings, run_id: str) -> str:
    import psycopg

    pg = settings.postgres
    for index, name in enumerate(pg.shard_names()):
        with psycopg.connect(pg.dsn(name), connect_timeout=3) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS smoke (run_id text, shard int, at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO smoke (run_id, shard) VALUES (%s, %s)", (run_id, index))
            row = conn.execute("SELECT shard FROM smoke WHERE run_id = %s", (run_id,)).fetchone()
            if row != (index,):
                raise AssertionError(f"shard {name}: read back {row}, wrote {index}")
            conn.execute("DELETE FROM smoke WHERE run_id = %s", (run_id,))
    return f"a row written and read on each of {pg.shards} shards"


def check_redis(settings: Settings, run_id: str) -> str:
    from core.redis import redis_client

    client = redis_client(settings.redis)
    key = f"smoke:{run_id}"
    client.set(key, "ok", ex=30)
    value = client.get(key)
    client.delete(key)
    if value != "ok":
        raise AssertionError(f"read back {value!r}")
    return f"SET/GET on {settings.redis.dsn}"


def check_kafka(settings: Settings, run_id: str) -> str:
    from streaming.kafka import ensure_topics, json_consumer, json_producer

    topic = settings.kafka.topic(f"smoke.{run_id}")
    ensure_topics(settings.kafka, [topic], partitions=1)
    producer = json_producer(settings.kafka)
    for i in range(10):
        producer.send(topic, key=str(i), value={"schema_version": 1, "i": i})
    producer.flush(timeout=10)
    producer.close()
    consumer = json_consumer(settings.kafka, topic, group_id=None, consumer_timeout_ms=10000)
    seen = []
    for message in consumer:
        seen.append(message.value["i"])
        if len(seen) == 10:
            break
    consumer.close()
    seen.sort()
    if seen != list(range(10)):
        raise AssertionError(f"consumed {seen}")
    return f"10 messages produced and consumed on {topic}"


def _delta_roundtrip(settings: Settings, path: str) -> int:
    from lake.spark import build_spark_session

    spark = build_spark_session(settings, "smoke")
    frame = spark.range(0, 1000).withColumnRenamed("id", "n")
    frame.write.format("delta").mode("overwrite").save(path)
    return spark.read.format("delta").load(path).count()


def check_delta_local(settings: Settings, run_id: str) -> str:
    path = str(Path(settings.lake.root).resolve() / "smoke" / run_id)
    count = _delta_roundtrip(settings, path)
    if count != 1000:
        raise AssertionError(f"read {count} rows back")
    return f"1000 rows written and read at {path}"


def check_delta_s3(settings: Settings, run_id: str) -> str:
    path = f"s3a://{settings.object_store.bucket}/smoke/{run_id}"
    count = _delta_roundtrip(settings, path)
    if count != 1000:
        raise AssertionError(f"read {count} rows back")
    return f"1000 rows written and read at {path}"


def check_streaming(settings: Settings, run_id: str) -> str:
    from lake.spark import build_spark_session
    from streaming.kafka import ensure_topics, json_producer

    topic = settings.kafka.topic(f"smoke.stream.{run_id}")
    ensure_topics(settings.kafka, [topic], partitions=2)
    producer = json_producer(settings.kafka)
    for i in range(25):
        producer.send(topic, key=str(i), value={"schema_version": 1, "i": i})
    producer.flush(timeout=10)
    producer.close()

    spark = build_spark_session(settings, "smoke")
    root = Path(settings.lake.root).resolve() / "smoke" / f"stream-{run_id}"
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "partition", "offset")
    )
    query = (
        stream.writeStream.format("delta")
        .option("checkpointLocation", str(root / "_checkpoint"))
        .trigger(availableNow=True)
        .start(str(root / "table"))
    )
    query.awaitTermination(120)
    count = spark.read.format("delta").load(str(root / "table")).count()
    if count != 25:
        raise AssertionError(f"Delta table holds {count} rows, topic has 25")
    return "Kafka topic -> Delta: 25 of 25 events landed"


def check_lancedb(settings: Settings, run_id: str) -> str:
    import numpy as np

    from lake.vectors import connect

    db = connect(settings.lancedb)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(200, 384)).astype("float32")
    rows = [{"id": f"c{i}", "vector": vectors[i]} for i in range(200)]
    table = db.create_table(f"smoke_{run_id}", data=rows, mode="overwrite")
    hits = table.search(vectors[42]).limit(3).to_list()
    db.drop_table(f"smoke_{run_id}")
    if hits[0]["id"] != "c42":
        raise AssertionError(f"nearest neighbour of c42 was {hits[0]['id']}")
    return "200 vectors written; nearest neighbour found"


def check_warehouse(settings: Settings, run_id: str) -> str:
    from warehouse.client import warehouse_client

    client = warehouse_client(settings.warehouse)
    table = f"{settings.warehouse.database}.smoke_{run_id}"
    client.command(f"CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n")
    client.insert(table, [[i] for i in range(100)], column_names=["n"])
    total = client.query(f"SELECT sum(n) FROM {table}").result_rows[0][0]
    client.command(f"DROP TABLE {table}")
    if total != sum(range(100)):
        raise AssertionError(f"sum was {total}")
    return f"clickhouse-connect on {settings.warehouse.dsn}: insert + aggregate"


CHECKS: list[tuple[str, Callable[[Settings, str], str]]] = [
    ("postgres shards", check_postgres_shards),
    ("redis", check_redis),
    ("kafka produce/consume", check_kafka),
    ("spark delta (local fs)", check_delta_local),
    ("spark delta (s3 / minio)", check_delta_s3),
    ("spark streaming kafka->delta", check_streaming),
    ("lancedb vector search", check_lancedb),
    ("clickhouse (chdb)", check_warehouse),
]


def run_smoke(settings: Settings, *, console: Console) -> list[SmokeResult]:
    run_id = uuid.uuid4().hex[:10]
    results = []
    for name, check in CHECKS:
        console.print(f"[dim]smoke: {name} ...[/dim]")
        started = time.perf_counter()
        try:
            detail, ok = check(settings, run_id), True
        except Exception as exc:  # noqa: BLE001 - every failure becomes a FAIL row
            detail, ok = f"{type(exc).__name__}: {exc}".splitlines()[0][:160], False
            console.print(traceback.format_exc(limit=3), markup=False, highlight=False)
        results.append(SmokeResult(name, ok, time.perf_counter() - started, detail))
    return results
