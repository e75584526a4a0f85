"""Before a dataflow starts: wait for the servers it needs, and stop with one line if one refuses us.

A server that does not answer (not started yet, restarting) is waited for, with backoff, saying once per
try what is awaited and which setting names it; SIGTERM ends the wait. A server that answers but refuses
the configured credentials, lacks the configured database, speaks TLS to a client configured for plaintext
(or the other way round), presents a certificate the configured CA did not sign, or accepts only TLS
connections, cannot get better by waiting: that ends the process with one line naming the settings,
instead of a traceback or a panic from inside a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from marketstream import shutdown
from marketstream.settings import ConfigError, Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from obstore.store import S3Store

T = TypeVar("T")

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
    reported: list[KafkaError] = []  # librdkafka says why a connection failed only to the error callback
    config["error_cb"] = reported.append
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=5)
    except KafkaException as exc:
        admin.poll(0)
        error = exc.args[0]
        for cause in [error, *reported]:
            refusal = _kafka_refusal(settings, cause)
            if refusal:
                raise ConfigError(refusal) from None
        if not settings.kafka_security_protocol.endswith("SSL") and _speaks_tls(settings.kafka_bootstrap_servers):
            # librdkafka only sees the broker hang up on its first request, as a broker going down would
            raise ConfigError(f"Kafka at {settings.kafka_bootstrap_servers} answers with TLS, which "
                              f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} does not speak: set SSL "
                              "or SASL_SSL") from None
        raise Unreachable(f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): {error.str()}") from None


def _kafka_refusal(settings: Settings, error) -> str | None:
    """What a refused connection to Kafka says about the settings, or None if it is worth waiting for."""
    from confluent_kafka import KafkaError

    text, servers = error.str(), settings.kafka_bootstrap_servers
    if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return f"Kafka refused the credentials (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD): {text}"
    if "SSL handshake failed" in text and "wrong version number" in text:
        return (f"Kafka at {servers} answers in plaintext, which KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka_security_protocol} does not speak: set PLAINTEXT or SASL_PLAINTEXT")
    if error.code() == KafkaError._SSL or "certificate verify failed" in text:
        return f"Kafka at {servers}: TLS refused, check KAFKA_SSL_CA_LOCATION ({settings.kafka_ssl_ca_location}): {text}"
    return None


def _speaks_tls(servers: str) -> bool:
    """Whether the first of the bootstrap `servers` that accepts a connection completes a TLS handshake
    (its certificate unchecked: this only asks which protocol it speaks)."""
    import socket
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=3) as raw:
                raw.settimeout(3)
                try:
                    with context.wrap_socket(raw, server_hostname=host.strip("[]")):
                        return True
                except (ssl.SSLError, OSError):
                    return False
        except (OSError, ValueError):
            continue
    return False


def _object_store(settings: Settings) -> None:
    """The store answers a listing of its buckets (s3fs: for the commands that read the lake with it)."""
    import botocore.exceptions
    import s3fs

    fs = s3fs.S3FileSystem(**settings.s3_storage_options(), skip_instance_cache=True,
                           config_kwargs={"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 1}})
    fs.retries = 1

    def listed() -> None:
        try:
            fs.ls("", refresh=True)
        except botocore.exceptions.BotoCoreError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    _answered(settings, listed)


def object_store_refusal(settings: Settings, exc: BaseException) -> str | None:
    """What a failed request to the object store says about the settings (TLS), or None if it is worth
    waiting for."""
    causes, cause = [], exc
    while cause is not None and len(causes) < 10:
        causes.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    text = " / ".join(causes)
    if any(sign in text for sign in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "InvalidCertificate")):
        return (f"the object store at {settings.s3_endpoint_url} presented a certificate that S3_CA_BUNDLE "
                f"({settings.s3_ca_bundle or 'unset: the system CAs'}) does not trust")
    if any(sign in text for sign in ("WRONG_VERSION_NUMBER", "wrong version number", "InvalidContentType")):
        return (f"the object store at {settings.s3_endpoint_url} answers in plain HTTP: check the scheme of "
                "S3_ENDPOINT_URL (http://)")
    scheme, _, address = (settings.s3_endpoint_url or "").partition("://")
    if scheme == "http" and _speaks_tls(address.split("/")[0]):
        # MinIO answers a plain request on its TLS port with 400 Bad Request, which says nothing of why
        return (f"the object store at {settings.s3_endpoint_url} answers with TLS: check the scheme of "
                "S3_ENDPOINT_URL (https://) and set S3_CA_BUNDLE")
    return None


def _postgres(settings: Settings) -> None:
    import psycopg

    arguments = {**settings.postgres_connect_kwargs(), "connect_timeout": 5}
    try:
        psycopg.connect(**arguments).close()
    except psycopg.OperationalError as exc:
        full = str(exc).strip()
        text = full.splitlines()[-1] if full else type(exc).__name__
        if "password authentication failed" in full or "no password supplied" in full:
            raise ConfigError(f"PostgreSQL refused user {settings.postgres_user!r}: check POSTGRES_USER / "
                              "POSTGRES_PASSWORD") from None
        if "no encryption" in full and "pg_hba.conf" in full:
            raise ConfigError(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} accepts only TLS "
                              f"connections (POSTGRES_SSLMODE={settings.postgres_sslmode or 'unset'}): set "
                              "POSTGRES_SSLMODE=verify-full and POSTGRES_SSLROOTCERT") from None
        if "root certificate file" in full or "certificate verify failed" in full:
            raise ConfigError(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port}: TLS refused, check "
                              f"POSTGRES_SSLROOTCERT ({settings.postgres_sslrootcert or 'unset'}): {text}") from None
        if "server does not support SSL" in full:
            raise ConfigError(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} does not offer TLS "
                              f"(POSTGRES_SSLMODE={settings.postgres_sslmode})") from None
        if "does not exist" in text:
            raise ConfigError(f"PostgreSQL: {text} (POSTGRES_DB / POSTGRES_USER)") from None
        raise Unreachable(f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} "
                          f"(POSTGRES_HOST / POSTGRES_PORT): {text}") from None


def _bucket_answers(settings: Settings, location: str) -> tuple[S3Store, str] | None:
    """A client of the bucket of `location` (`bucket` or `bucket/folder…`) and the folder, once the store
    answered and accepted the credentials; None when it has no such bucket yet (obstore: one LIST request,
    no s3fs or botocore loaded)."""
    from marketstream.buckets import bucket_exists, s3_store, split_location

    bucket, folder = split_location(location)
    store = s3_store(bucket, settings.s3_storage_options())
    return (store, folder) if _answered(settings, lambda: bucket_exists(store)) else None


def _answered(settings: Settings, call: Callable[[], T]) -> T:
    """`call()`, its refusals said as `ConfigError` and an unreachable store as `Unreachable`."""
    try:
        return call()
    except PermissionError:
        raise ConfigError(f"the object store at {settings.s3_endpoint_url} refused the credentials: check "
                          "S3_ACCESS_KEY / S3_SECRET_KEY") from None
    except OSError as exc:
        refusal = object_store_refusal(settings, exc)
        if refusal:
            raise ConfigError(refusal) from None
        raise Unreachable(f"the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL): {exc}") from None


def object_store_for(bucket: str | Callable[[Settings], str]) -> Callable[[Settings], None]:
    """A check that the object store answers a request for `bucket` (a name or `bucket/folder…`, or where
    the settings give it) and accepts the credentials; the bucket need not exist yet."""

    def check(settings: Settings) -> None:
        _bucket_answers(settings, bucket if isinstance(bucket, str) else bucket(settings))

    check.__name__ = f"the object store ({bucket if isinstance(bucket, str) else 'its bucket'})"
    return check


def lake_format_of(bucket: str) -> Callable[[Settings], None]:
    """A check that the object store answers and accepts us (as `object_store_for`), and that `bucket` (or
    `bucket/folder…`) holds the lake format the settings ask for, or nothing yet: a bucket of plain Parquet files is never
    silently mixed with a Delta table, nor the other way round."""

    def check(settings: Settings) -> None:
        from marketstream.buckets import first_keys, top_level_prefixes

        found = _bucket_answers(settings, bucket)
        if found is None:
            return
        store, folder = found
        is_table = _answered(settings, lambda: "_delta_log" in top_level_prefixes(store, folder))
        if settings.lake_format == "delta" and not is_table and _answered(settings, lambda: any(
                key.endswith(".parquet") and key.count("/") < 3 for key in first_keys(store, 10_000, folder))):
            raise ConfigError(f"bucket {bucket} holds plain Parquet files and no Delta table (LAKE_FORMAT=delta): "
                              "move them aside or set LAKE_FORMAT=parquet (README, 'Plain Parquet')")
        if settings.lake_format == "parquet" and is_table:
            raise ConfigError(f"bucket {bucket} holds a Delta table (LAKE_FORMAT=parquet): set LAKE_FORMAT=delta")

    check.__name__ = f"the lake format of bucket {bucket}"
    return check


def delta_tables_of(tables: Callable[[Settings], list[str]], schema: pa.Schema, partition_by: list[str], what: str,
                    setting: str) -> Callable[[Settings], None]:
    """A check that every Delta table found at the URIs `tables` gives for the settings (`s3://bucket` or
    `s3://bucket/folder`) is one of `what`: partitioned by `partition_by` and holding the columns of `schema`
    that are not nullable (those its writer cannot add). A table of other data there would otherwise be
    retried against forever, or given columns that are not its own; the error names `setting`."""
    required = [field.name for field in schema if not field.nullable]

    def check(settings: Settings) -> None:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from marketstream.buckets import top_level_prefixes

        for uri in tables(settings):
            location = uri.removeprefix("s3://")
            found = _bucket_answers(settings, location)
            if found is None:
                return  # no bucket yet, so no table
            store, folder = found
            if "_delta_log" not in _answered(settings, lambda: top_level_prefixes(store, folder)):
                continue
            try:
                table = _answered(settings, lambda: DeltaTable(uri, storage_options=settings.delta_storage_options()))
            except TableNotFoundError:
                continue  # a `_delta_log/` without a commit yet: a table being created
            partitioned_by = table.metadata().partition_columns
            names = set(table.schema().to_arrow().names)
            missing = [column for column in required if column not in names]
            if partitioned_by != partition_by or missing:
                raise ConfigError(
                    f"{location} holds a Delta table of other data (partitioned by {', '.join(partitioned_by) or 'nothing'}"
                    + (f"; without {', '.join(missing[:4])}" if missing else "")
                    + f"), not {what}: set {setting} to a bucket of its own")

    check.__name__ = f"the tables of {what}"
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
