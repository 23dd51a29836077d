from pathlib import Path

from deploy.installers import connector_jars


def test_connector_jars_drop_what_spark_already_ships():
    resolved = [
        Path(p)
        for p in (
            "/m2/io/delta/delta-spark_4.2_2.13-4.4.0.jar",
            "/m2/com/fasterxml/jackson-databind-2.13.5.jar",
            "/m2/org/apache/hadoop/hadoop-aws-3.5.0.jar",
            "/m2/org/scala-lang/scala-library-2.13.17.jar",
        )
    ]
    shipped = [Path("/spark/jars/jackson-databind-2.18.2.jar"), Path("/spark/jars/scala-library-2.13.18.jar")]
    kept = [p.name for p in connector_jars(resolved, shipped)]
    assert kept == ["delta-spark_4.2_2.13-4.4.0.jar", "hadoop-aws-3.5.0.jar"]
