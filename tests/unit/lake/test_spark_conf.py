import pytest

from core.settings import Settings
from lake.spark import SparkSetupError, spark_conf


def test_spark_conf_wires_delta_s3_and_jars(tmp_path):
    jar = tmp_path / "delta-spark.jar"
    jar.write_bytes(b"")
    listing = tmp_path / "jars.list"
    listing.write_text(f"{jar}\n")
    settings = Settings(spark={"jars_classpath_file": listing}, object_store={"port": 9999})
    conf = spark_conf(settings, "t")
    # Loaded in place from the class path: nothing copied into a per-application folder.
    assert conf["spark.driver.extraClassPath"] == conf["spark.executor.extraClassPath"] == str(jar)
    assert "spark.jars" not in conf
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9999"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"


def test_missing_jar_listing_says_what_to_run(tmp_path):
    settings = Settings(spark={"jars_classpath_file": tmp_path / "absent.list"})
    with pytest.raises(SparkSetupError, match="stack up"):
        spark_conf(settings, "t")
