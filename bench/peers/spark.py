"""Launching Spark (the peers' environment, `.venv-peers/spark`) against the project's Kafka and MinIO.

`spark_submit(settings, script, *args)` is the command and environment that run a PySpark `script` with
the Kafka source, Delta Lake and S3A on the classpath. The Java packages come from Maven Central through
Spark's own resolver (`--packages`) into `$MARKETSTREAM_CACHE/spark-ivy` once, and must match the pins of
bench/peers/requirements-spark.txt: Scala 2.12 and Spark 3.5.3 (`spark-sql-kafka`), Hadoop 3.3.4 (the
hadoop-client pyspark 3.5.3 bundles; `hadoop-aws` brings its `aws-java-sdk-bundle`), Delta 3.2.1.

The store's keys reach S3A through the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, read
by its default credential chain), never the command line. Spark's session time zone is UTC, so timestamps
keep the lake's meaning.
"""

from __future__ import annotations

import os
from pathlib import Path

from marketstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SPARK_VENV = REPO / ".venv-peers" / "spark"
SPARK_PACKAGES = ("io.delta:delta-spark_2.12:3.2.1", "org.apache.spark:spark-sql-kafka-0-10_2.12:3.5.3",
                  "org.apache.hadoop:hadoop-aws:3.3.4")
IVY_CACHE = Path(os.environ.get("MARKETSTREAM_CACHE", Path.home() / ".cache" / "marketstream")) / "spark-ivy"


def spark_home() -> Path:
    """The Spark distribution inside the pyspark wheel of the peers' environment."""
    found = sorted(SPARK_VENV.glob("lib/python3*/site-packages/pyspark"))
    if not found:
        raise SystemExit(f"no pyspark in {SPARK_VENV}: run `make {SPARK_VENV.relative_to(REPO)}/.installed`")
    return found[0]


def spark_submit(settings: Settings, script: Path, *args: str, driver_memory: str = "1g") -> tuple[list[str], dict]:
    """The `spark-submit` command running `script` in local mode on every core, and what it adds to the
    environment."""
    settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
    assert settings.s3_access_key and settings.s3_secret_key and settings.s3_endpoint_url
    home = spark_home()
    s3a = {
        "fs.s3a.endpoint": settings.s3_endpoint_url,
        "fs.s3a.endpoint.region": settings.s3_region,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": str(settings.s3_endpoint_url.startswith("https://")).lower(),
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    conf = {
        "spark.jars.ivy": str(IVY_CACHE),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        **{f"spark.hadoop.{name}": value for name, value in s3a.items()},
    }
    command = [str(home / "bin" / "spark-submit"), "--master", "local[*]", "--driver-memory", driver_memory,
               "--packages", ",".join(SPARK_PACKAGES), *(f"--conf={name}={value}" for name, value in conf.items()),
               str(script), *args]
    python = str(SPARK_VENV / "bin" / "python")
    environment = {
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "PATH": f"{SPARK_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_ACCESS_KEY_ID": settings.s3_access_key.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return command, environment


def s3a_uri(uri: str) -> str:
    """A lake URI (`s3://bucket/path`) as S3A names it."""
    return "s3a://" + uri.removeprefix("s3://")
