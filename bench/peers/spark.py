"""Launching Spark (the peers' environment, `.venv-peers/spark`) against the project's Kafka and MinIO.

`spark_submit(settings, script, *args)` (the JVM the parent) and `pyspark_driver(...)` (the script the
parent) are the command and environment that run a PySpark `script` with the Kafka source, Delta Lake and
S3A on the classpath, the driver listening on loopback only. The Java packages come from Maven Central through
Spark's own resolver (`--packages`) into `$MARKETSTREAM_CACHE/spark-ivy` once, and must match the pins of
bench/peers/requirements-spark.txt: Scala 2.12 and Spark 3.5.3 (`spark-sql-kafka`), Hadoop 3.3.4 (the
hadoop-client pyspark 3.5.3 bundles; `hadoop-aws` brings its `aws-java-sdk-bundle`), Delta 3.2.1.

The store's keys reach S3A through the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, read
by its default credential chain), never the command line. Spark's session time zone is UTC, so timestamps
keep the lake's meaning.
"""

from __future__ import annotations

import os
import shlex
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


def submit_options(settings: Settings, driver_memory: str = "1g") -> list[str]:
    """`spark-submit`'s options: local mode on every core, the Java packages, S3A pointed at the store."""
    settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
    assert settings.s3_endpoint_url
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
        # the driver listens on loopback, on ports of its own rather than any the system picks (others' stacks)
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.port": os.environ.get("SPARK_DRIVER_PORT", "39400"),
        "spark.blockManager.port": os.environ.get("SPARK_BLOCK_MANAGER_PORT", "39420"),
        "spark.port.maxRetries": "16",
        **{f"spark.hadoop.{name}": value for name, value in s3a.items()},
    }
    return ["--master", "local[*]", "--driver-memory", driver_memory, "--packages", ",".join(SPARK_PACKAGES),
            *(f"--conf={name}={value}" for name, value in conf.items())]


def spark_environment(settings: Settings) -> dict[str, str]:
    """What Spark's processes need in their environment beside the caller's: the peers' Python and Spark,
    the store's keys."""
    assert settings.s3_access_key and settings.s3_secret_key
    python = str(SPARK_VENV / "bin" / "python")
    return {
        "SPARK_HOME": str(spark_home()),
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "PATH": f"{SPARK_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_ACCESS_KEY_ID": settings.s3_access_key.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def spark_submit(settings: Settings, script: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """`spark-submit` running the PySpark `script` (the JVM is the parent: its rusage holds the Python
    driver's), and what it adds to the environment. The driver's standard input is not the caller's."""
    command = [str(spark_home() / "bin" / "spark-submit"), *submit_options(settings), str(script), *args]
    return command, spark_environment(settings)


def pyspark_driver(settings: Settings, script: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The peers' Python running the PySpark `script`, which starts the JVM itself (the caller keeps the
    script's standard input and output), and what it adds to the environment."""
    environment = {**spark_environment(settings),
                   "PYSPARK_SUBMIT_ARGS": shlex.join([*submit_options(settings), "pyspark-shell"])}
    return [str(SPARK_VENV / "bin" / "python"), str(script), *args], environment


def s3a_uri(uri: str) -> str:
    """A lake URI (`s3://bucket/path`) as S3A names it."""
    return "s3a://" + uri.removeprefix("s3://")
