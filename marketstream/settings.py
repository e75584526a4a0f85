"""Typed settings, read once from the environment and `.env`.

Every variable has a field here; `.env.example` documents them all. Secrets are `SecretStr`, so they are
masked in reprs, logs and validation errors. A dataflow calls `Settings.require(...)` for what it needs
before it opens any connection, so a missing value stops it with one message naming the variable.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import ssl
import tempfile
from datetime import date
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from marketstream.kafka_cluster import KafkaCluster


MEMORY_SIZE = r"(?i)^\s*\d+(\.\d+)?\s*([KMGT]i?B|B|%)\s*$"
"""A memory size as DuckDB reads one: 1GB (1000^3 bytes), 512MiB (1024^2), 50% (of the RAM)."""


class ConfigError(Exception):
    """A setting a dataflow needs is missing or malformed. The message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    # --- object store (MinIO / S3)
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://127.0.0.1:9000")
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_ca_bundle: str | None = Field(
        None, description="PEM file of the CA(s) that sign the store's certificate (https); unset: the system's CAs")

    # --- Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(6, ge=1, le=10_000)
    kafka_replication_factor: int = Field(1, ge=1, le=32)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    kafka_stop_at_end: bool = False
    kafka_starting_offset: Literal["earliest", "latest"] = "earliest"
    kafka_poll_max_messages: int = Field(
        5_000, ge=1, description="messages one poll returns at most",
        # KAFKA_CONSUME_BATCH_SIZE: its name before 2026-11 (it is no window batch), still read
        validation_alias=AliasChoices("kafka_poll_max_messages", "kafka_consume_batch_size"))
    kafka_max_in_flight_messages: int = Field(20_000, ge=1, description="read but not yet decoded, per process")

    # --- consumers: batching and Parquet
    batch_max_rows: int = Field(50_000, ge=1, description="the most rows in one Parquet file")
    batch_max_age_seconds: float = Field(10.0, gt=0)
    batch_max_buffered_rows: int = Field(500_000, ge=1, description="rows held by all open batches of a process")
    parquet_compression: Literal["zstd", "snappy"] = "zstd"
    bars_bucket: str = Field("bars-data", description="bucket of the one-minute bars tables")
    bars_allowed_lateness_seconds: float = Field(
        30.0, ge=0, description="a minute's bar is emitted once a trade this much newer has been seen")
    bars_batch_max_parts: int = Field(
        200_000, ge=1, description="bar parts written to the bars tables at once (else every BATCH_MAX_AGE_SECONDS)")
    signals_bucket: str = Field("signals-data", description="bucket of the per-minute signals tables")
    signals_interval_seconds: float = Field(
        10.0, gt=0, description="dataflows.signals_consume looks for changed source tables this often")
    lake_format: Literal["delta", "parquet"] = Field(
        "delta", description="delta: a Delta Lake table per dataset; parquet: plain hive-partitioned files")
    lake_compact_closed_after_days: int = Field(1, ge=1, description="a date partition this old is closed: compacted")
    lake_target_file_mb: int = Field(128, ge=1, le=4096)
    lake_vacuum_retention_hours: float = Field(
        6.0, ge=1, description="replaced files and their tombstones are kept this long (delta.deletedFileRetentionDuration)")
    lake_maintenance_interval_seconds: float = Field(3600.0, gt=0, description="dataflows.lake_maintenance")
    s3_retry_max_seconds: float = Field(30.0, gt=0)
    stock_synthetic_prefix: str = Field("_synthetic", pattern=r"^(_[A-Za-z0-9_\-]*)?$")

    # --- stock producer
    stock_source: Literal["auto", "alpaca", "synthetic"] = "auto"
    synthetic_trades_per_second: float = Field(1.0, gt=0, description="per ticker")
    tickers_refresh_seconds: float = Field(300.0, gt=0)
    api_key_alpaca: SecretStr | None = None
    api_secret_alpaca: SecretStr | None = None
    alpaca_feed: Literal["iex", "sip", "delayed_sip", "otc"] = "iex"
    alpaca_stream_url: str | None = None
    alpaca_data_url: str | None = Field(None, description="Alpaca's market-data REST API (backfill); None: Alpaca's own")
    alpaca_requests_per_minute: float = Field(180.0, gt=0, description="backfill pace (Alpaca's free plan: 200)")
    backfill_retry_max_seconds: float = Field(
        300.0, gt=0, description="backfill: how long one API request may keep failing before the run stops")
    produce_for_seconds: float | None = Field(None, gt=0, description="stop producers after this long (demo, tests)")

    # --- macro producer (FRED)
    api_key_fred: SecretStr | None = None
    fred_series: str = Field(
        "gdp:GDP,cpi:CPIAUCSL,fed_funds_rate:DFF,treasury_10y:DGS10,unemployment_rate:UNRATE",
        pattern=r"^\s*[a-z][a-z0-9_]*:[A-Z0-9_]+\s*(,\s*[a-z][a-z0-9_]*:[A-Z0-9_]+\s*)*$",
        description="comma-separated alias:SERIES_ID pairs",
    )
    fred_observation_start: date = date(2000, 1, 1)
    macro_poll_seconds: float = Field(3600.0, gt=0)
    fred_api_url: str | None = None

    # --- news producer (Finnhub)
    finnhub_api_key: SecretStr | None = None
    news_poll_seconds: float = Field(60.0, gt=0)
    finnhub_calls_per_minute: float = Field(55.0, gt=0, le=60)
    finnhub_api_url: str | None = None

    # --- social producer (Bluesky)
    bluesky_identifier: str | None = None
    bluesky_password: SecretStr | None = None
    bluesky_api_url: str = "https://bsky.social"
    bluesky_keywords: str = (
        "stock market,stocks,earnings,inflation,federal reserve,interest rates,recession,nasdaq,s&p 500,dow jones"
    )
    bluesky_cycle_seconds: float = Field(30.0, gt=0)
    bluesky_keyword_delay_seconds: float = Field(2.0, ge=0)
    bluesky_posts_per_search: int = Field(25, ge=1, le=100)
    bluesky_max_pages: int = Field(3, ge=1, le=50)

    # --- producers: dedup memory kept in Bytewax state
    dedup_memory_per_key: int = Field(5_000, ge=10)

    # --- PostgreSQL (companies_info)
    postgres_host: str | None = None
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_db: str | None = None
    postgres_user: str | None = None
    postgres_password: SecretStr | None = None
    postgres_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        None, description="libpq sslmode; unset: libpq's default (prefer)")
    postgres_sslrootcert: str | None = Field(None, description="PEM file of the CA that signs the server's certificate")

    # --- `marketstream sql`
    sql_memory_limit: str = Field("1GB", pattern=MEMORY_SIZE, description="DuckDB's memory limit (--memory-limit)")

    # --- `marketstream serve`: the web console
    console_token: SecretStr | None = Field(
        None, description="a secret every request to the console must carry; needed to serve off loopback")

    # --- Bytewax recovery, used by `marketstream run`
    metrics_port: int | None = Field(None, ge=1, le=65_535,
                                     description="serve Prometheus metrics from this port (the next free one per process)")
    metrics_address: str = Field(
        "127.0.0.1", description="where the metrics listen: loopback, as every server of the stack; 0.0.0.0 exposes them")
    recovery_directory: str | None = None
    snapshot_interval_seconds: float = Field(10.0, gt=0)

    shutdown_timeout_seconds: float = Field(60.0, gt=0, le=3600, description="SIGTERM to exit, at most")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def require(self, *fields: str) -> None:
        """Raise ConfigError naming every listed setting that is unset or empty."""
        missing = []
        for name in fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None or value == "":
                missing.append(name.upper())
        if missing:
            raise ConfigError(
                f"missing required setting{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
                "set it in the environment or in .env (see .env.example)"
            )

    def secret_values(self) -> list[str]:
        """The values of every secret setting that is set, for redaction."""
        return [value.get_secret_value() for value in self.__dict__.values()
                if isinstance(value, SecretStr) and value.get_secret_value()]

    @property
    def fred_series_aliases(self) -> dict[str, str]:
        """`FRED_SERIES` as {alias: series id}, in the order given."""
        pairs = (item.strip().split(":") for item in self.fred_series.split(",") if item.strip())
        return {alias.strip(): series.strip() for alias, series in pairs}

    @property
    def bluesky_static_keywords(self) -> list[str]:
        return [word.strip() for word in self.bluesky_keywords.split(",") if word.strip()]

    @property
    def alpaca_keys_set(self) -> bool:
        return bool(self.api_key_alpaca and self.api_key_alpaca.get_secret_value()) and bool(
            self.api_secret_alpaca and self.api_secret_alpaca.get_secret_value()
        )

    def kafka_client_config(self) -> dict[str, object]:
        """librdkafka properties shared by every producer, consumer and admin client."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
            # librdkafka's own log lines go through Python logging (repeats rate-limited), not raw stderr
            "logger": logging.getLogger("librdkafka"),
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        return config

    def kafka_cluster(self) -> KafkaCluster:
        return KafkaCluster(self.kafka_client_config(), self.kafka_topic_partitions, self.kafka_replication_factor)

    def s3_storage_options(self) -> dict:
        """Keyword arguments for `s3fs.S3FileSystem`."""
        self.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        assert self.s3_access_key and self.s3_secret_key
        client = {"region_name": self.s3_region}
        if self.s3_ca_bundle:
            client["verify"] = self.s3_ca_bundle  # botocore: the CA bundle to verify the endpoint with
        return {
            "key": self.s3_access_key.get_secret_value(),
            "secret": self.s3_secret_key.get_secret_value(),
            "endpoint_url": self.s3_endpoint_url,
            "client_kwargs": client,
        }

    def delta_storage_options(self) -> dict[str, str]:
        """`storage_options` for deltalake (delta-rs). Commits are made safe between concurrent writers by
        S3 conditional writes (`If-None-Match`), which MinIO and AWS S3 honour: no lock service."""
        self.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        assert self.s3_access_key and self.s3_secret_key and self.s3_endpoint_url
        return {
            "AWS_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ACCESS_KEY_ID": self.s3_access_key.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key.get_secret_value(),
            "AWS_REGION": self.s3_region,
            "AWS_ALLOW_HTTP": "true" if self.s3_endpoint_url.startswith("http://") else "false",
            **self._object_store_ca(),
        }

    def _object_store_ca(self) -> dict[str, str]:
        """delta-rs (object_store over rustls) has no storage option for a CA of one's own: its
        `proxy_ca_certificate` is trusted only through a proxy (tried: UnknownIssuer without one). It trusts
        what rustls-native-certs loads, the file SSL_CERT_FILE names when set, read whenever a client is
        built. So with S3_CA_BUNDLE, this process's SSL_CERT_FILE becomes a bundle of what it trusted before
        (the file SSL_CERT_FILE named, else the system's CAs) and S3_CA_BUNDLE's CAs: every other TLS client
        of the process trusts what it did, plus the store's CA."""
        if self.s3_ca_bundle:
            os.environ["SSL_CERT_FILE"] = _bundle_with(self.s3_ca_bundle)
        return {}

    def arrow_s3_options(self) -> dict:
        """Keyword arguments for `pyarrow.fs.S3FileSystem`."""
        self.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
        assert self.s3_access_key and self.s3_secret_key and self.s3_endpoint_url
        scheme, _, address = self.s3_endpoint_url.partition("://")
        options = {"access_key": self.s3_access_key.get_secret_value(),
                   "secret_key": self.s3_secret_key.get_secret_value(),
                   "region": self.s3_region, "endpoint_override": address.rstrip("/"), "scheme": scheme}
        if self.s3_ca_bundle:
            options["tls_ca_file_path"] = self.s3_ca_bundle
        return options

    def postgres_connect_kwargs(self) -> dict:
        """Keyword arguments for `psycopg.connect`; the password never goes into a DSN string."""
        self.require("postgres_host", "postgres_db", "postgres_user", "postgres_password")
        assert self.postgres_password
        return {
            "host": self.postgres_host,
            "port": self.postgres_port,
            "dbname": self.postgres_db,
            "user": self.postgres_user,
            "password": self.postgres_password.get_secret_value(),
            "connect_timeout": 10,
            **({"sslmode": self.postgres_sslmode} if self.postgres_sslmode else {}),
            **({"sslrootcert": self.postgres_sslrootcert} if self.postgres_sslrootcert else {}),
        }


def _bundle_with(extra: str) -> str:
    """The path of a PEM file holding the CAs this process trusts by default and those in `extra`: one file
    per content (named by its hash in the temporary directory), so processes share it and none piles up."""
    base = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    if os.path.basename(base or "").startswith("marketstream-ca-"):
        return base  # made here already
    try:
        with open(extra, encoding="ascii") as own:
            added = own.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"S3_CA_BUNDLE {extra}: cannot read it ({exc})") from None
    try:
        with open(base, encoding="ascii") as default:
            trusted = default.read()
    except (OSError, TypeError, UnicodeDecodeError):
        trusted = ""
    content = f"{trusted.rstrip()}\n{added}"
    path = os.path.join(tempfile.gettempdir(),
                        f"marketstream-ca-{hashlib.sha256(content.encode()).hexdigest()[:16]}.pem")
    if not os.path.exists(path):
        handle, partial = tempfile.mkstemp(prefix=".marketstream-ca-", suffix=".pem")
        with os.fdopen(handle, "w", encoding="ascii") as bundle:
            bundle.write(content)
        os.replace(partial, path)  # whole or absent, whoever writes it at the same time
    return path


def load_settings(**overrides) -> Settings:
    """Build settings from the environment and `.env`; malformed values raise ConfigError.

    Keyword overrides (tests, tools) must name real settings: unlike stray environment variables,
    a misspelt override is a bug, not something to ignore."""
    unknown = sorted(name for name in overrides if not name.startswith("_") and name not in Settings.model_fields)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid setting {problems}") from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
