"""Before a dataflow starts: wait for the servers it needs, and stop with one line if one refuses us.

A server that does not answer (not started yet, restarting) is waited for, with backoff, saying once per
try what is awaited and which setting names it; SIGTERM ends the wait. A server that answers but refuses
the configured credentials, or lacks the configured database, cannot get better by waiting: that ends
the process with one line naming the settings, instead of a traceback or a panic from inside a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from marketstream import shutdown
from marketstream.settings import ConfigError, Settings

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0


class Unreachable(Exception):
    """The server did not answer; worth waiting for."""


def _kafka(settings: Settings) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    config = settings.kafka_client_config()
    config.pop("logger", None)  # while waiting, one line per try is said here; librdkafka's would repeat it
    config["log_level"] = 0
    try:
        AdminClient(config).list_topics(timeout=5)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            raise ConfigError(f"Kafka refused the credentials (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD): {error.str()}") from None
        raise Unreachable(f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): {error.str()}") from None


def _object_store(settings: Settings) -> None:
    import botocore.exceptions
    import s3fs

    fs = s3fs.S3FileSystem(**settings.s3_storage_options(), skip_instance_cache=True,
                           config_kwargs={"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 1}})
    fs.retries = 1
    try:
        fs.ls("", refresh=True)
    except PermissionError:
        raise ConfigError(f"the object store at {settings.s3_endpoint_url} refused the credentials: check "
                          "S3_ACCESS_KEY / S3_SECRET_KEY") from None
    except (OSError, botocore.exceptions.BotoCoreError) as exc:
        raise Unreachable(f"the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL): "
                          f"{type(exc).__name__}: {exc}") from None


def _postgres(settings: Settings) -> None:
    import psycopg

    arguments = {**settings.postgres_connect_kwargs(), "connect_timeout": 5}
    try:
        psycopg.connect(**arguments).close()
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "password authentication failed" in text or "no password supplied" in text:
            raise ConfigError(f"PostgreSQL refused user {settings.postgres_user!r}: check POSTGRES_USER / "
                              "POSTGRES_PASSWORD") from None
        if "does not exist" in text:
            raise ConfigError(f"PostgreSQL: {text} (POSTGRES_DB / POSTGRES_USER)") from None
        raise Unreachable(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} "
                          f"(POSTGRES_HOST / POSTGRES_PORT): {text}") from None


def lake_format_of(bucket: str) -> Callable[[Settings], None]:
    """A check that `bucket` holds the lake format the settings ask for, or nothing yet: a bucket of plain
    Parquet files is never silently mixed with a Delta table, nor the other way round."""

    def check(settings: Settings) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(**settings.s3_storage_options(), skip_instance_cache=True)
        try:
            if not fs.exists(bucket):
                return
            is_table = fs.exists(f"{bucket}/_delta_log")
            has_files = any(key.endswith(".parquet") for key in fs.find(bucket, maxdepth=3)[:10_000])
        except PermissionError:
            raise ConfigError(f"the object store refused to list bucket {bucket}: check S3_ACCESS_KEY / S3_SECRET_KEY") from None
        except OSError as exc:
            raise Unreachable(f"the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL): {exc}") from None
        if settings.lake_format == "delta" and has_files and not is_table:
            raise ConfigError(f"bucket {bucket} holds plain Parquet files and no Delta table (LAKE_FORMAT=delta): "
                              "move them aside or set LAKE_FORMAT=parquet (README, 'Plain Parquet')")
        if settings.lake_format == "parquet" and is_table:
            raise ConfigError(f"bucket {bucket} holds a Delta table (LAKE_FORMAT=parquet): set LAKE_FORMAT=delta")

    check.__name__ = f"the lake format of bucket {bucket}"
    return check


CHECKS: dict[str, Callable[[Settings], None]] = {"kafka": _kafka, "s3": _object_store, "postgres": _postgres}


def wait_for(settings: Settings, needs: tuple, *, sleep: Callable[[float], bool] = shutdown.wait) -> None:
    """Return once every server in `needs` ("kafka", "s3", "postgres", or a check of its own such as
    `lake_format_of(bucket)`) answers and accepts us.

    ConfigError for refused credentials or a missing setting; SystemExit if a shutdown is requested while
    waiting. `sleep(seconds)` returns True if the wait was cut short by a shutdown."""
    for need in needs:
        check = CHECKS[need] if isinstance(need, str) else need
        need = need if isinstance(need, str) else check.__name__
        delay, tries = 1.0, 0
        while True:
            try:
                check(settings)
                if tries:
                    log.info("%s is up", need)
                break
            except Unreachable as exc:
                tries += 1
                log.warning("waiting for %s; next try in %.0f s", exc, delay)
                if sleep(delay):
                    raise SystemExit(f"marketstream: stopped while waiting for {need}") from None
                delay = min(delay * 2, MAX_WAIT_SECONDS)
