"""The one place a SparkSession is built: connector jars, Delta, S3A and resources from Settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkSetupError(RuntimeError):
    """Spark cannot start as configured (e.g. the connector jars were never resolved)."""


def connector_jars_file(settings: Settings) -> Path:
    return settings.spark.jars_classpath_file or settings.stack.cache_dir / "maven" / "spark-connectors.list"


def connector_jars(settings: Settings) -> list[str]:
    """Delta, Kafka and S3A jars resolved by `lakehouse stack up` from deploy/maven/spark/pom.xml."""
    listing = connector_jars_file(settings)
    if not listing.exists():
        raise SparkSetupError(
            f"Spark connector jars are not resolved ({listing} is missing): run `make stack-up` "
            "(or `lakehouse stack up`) once to fetch them from Maven Central"
        )
    jars = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    missing = [jar for jar in jars if not Path(jar).exists()]
    if missing:
        raise SparkSetupError(
            f"{len(missing)} connector jars listed in {listing} are gone, e.g. {missing[0]}; run `lakehouse stack up`"
        )
    return jars


def spark_conf(settings: Settings, app_name: str) -> dict[str, str]:
    """Every Spark setting the platform relies on, as plain strings (testable without a JVM)."""
    store = settings.object_store
    jars = connector_jars(settings)
    conf = {
        "spark.app.name": app_name,
        "spark.master": settings.spark.master,
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        # On the class path, not in spark.jars: spark.jars copies every listed jar (the AWS SDK
        # bundle alone is 686 MB) into a per-application temp folder at each start, which a
        # killed driver never deletes (a full disk after a few dozen crash tests) and which costs
        # each start seconds. The image and the local stack have the jars at the same paths on
        # every node, so the driver and the executors load them in place.
        "spark.driver.extraClassPath": os.pathsep.join(jars),
        "spark.executor.extraClassPath": os.pathsep.join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        # Delta replays its log with this many tasks (default 50): far too many for 2 cores.
        "spark.databricks.delta.snapshotPartitions": str(settings.spark.shuffle_partitions),
        # VACUUM lists the table's folders with this many tasks (default 10000): 66 s for an empty
        # table on 2 cores, 6 s with 4 tasks.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark.shuffle_partitions),
        # S3A: path-style requests against MinIO or any S3 endpoint from Settings.
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": store.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": store.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(store.endpoint.startswith("https")).lower(),
        "spark.hadoop.fs.s3a.access.key": store.access_key,
        "spark.hadoop.fs.s3a.secret.key": store.secret_key.get_secret_value(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.committer.magic.enabled": "false",
    }
    return conf


def build_spark_session(settings: Settings, app_name: str) -> SparkSession:
    """A SparkSession with Delta and the Kafka / S3A connectors, configured from Settings."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(settings, app_name).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
