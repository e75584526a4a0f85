"""Shared fixtures. Integration tests use the real local stack (`make stack`): Kafka, MinIO, PostgreSQL."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import datetime, timedelta

from pathlib import Path

import pytest
from dotenv import dotenv_values

from marketstream.settings import Settings, load_settings

def pytest_configure(config) -> None:
    # before any consumer flow built in the test process tells pyarrow pandas is absent, so that pyarrow reads
    # pandas objects the same in every test whichever ran first (scripts importing this module are spared)
    import pandas  # noqa: F401


_ENV_FILE = dotenv_values(Path(__file__).resolve().parents[1] / ".env")


def _stack_setting(name: str, default: str) -> str:
    """What `stack/stack.sh` gave the local stack: the environment's value, else .env's, else its default."""
    return os.environ.get(name) or _ENV_FILE.get(name) or default


# The local stack's addresses and credentials, as stack/stack.sh resolves them.
STACK = {
    "s3_endpoint_url": os.environ.get("TEST_S3_ENDPOINT_URL", f"http://127.0.0.1:{_stack_setting('MINIO_PORT', '9000')}"),
    "s3_access_key": _stack_setting("S3_ACCESS_KEY", "local-s3-admin-2f9c"),
    "s3_secret_key": _stack_setting("S3_SECRET_KEY", "local-s3-secret-71d4c0b9e2"),
    "kafka_bootstrap_servers": os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    "postgres_host": "127.0.0.1",
    "postgres_port": int(_stack_setting("POSTGRES_PORT", "5432")),
    "postgres_db": _stack_setting("POSTGRES_DB", "marketstream"),
    "postgres_user": _stack_setting("POSTGRES_USER", "marketstream"),
    "postgres_password": _stack_setting("POSTGRES_PASSWORD", "local-pg-5e81a3f07c"),
}


STACK_ENV = {name.upper(): str(value) for name, value in STACK.items()}
"""The stack's settings as environment variables, for the dataflows tests start as processes."""


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """tests/cluster/ needs the cluster profile of the stack (`make test-cluster`): it is collected only when
    the marker expression names `cluster`, so `make test` and `make test-unit` run what they always ran."""
    if collection_path == Path(__file__).resolve().parent / "cluster" and "cluster" not in (config.getoption("markexpr") or ""):
        return True
    return None


def make_settings(**overrides) -> Settings:
    """Settings for the local stack, ignoring any developer `.env` and environment."""
    return load_settings(_env_file=None, **{**STACK, **overrides})


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack() -> dict:
    """Fails (not skips) when the stack is down: integration tests are part of the suite."""
    targets = {
        "kafka": STACK["kafka_bootstrap_servers"].split(",")[0],
        "minio": STACK["s3_endpoint_url"].split("//", 1)[1],
        "postgres": f"127.0.0.1:{STACK['postgres_port']}",
    }
    down = []
    for name, address in targets.items():
        host, port = address.rsplit(":", 1)
        if not _reachable(host, int(port)):
            down.append(name)
    if down:
        pytest.fail(f"local stack not reachable ({', '.join(down)}): run `make stack` first")
    return STACK


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics and buckets, so tests never share data."""
    return uuid.uuid4().hex[:10]


def clock_from(start: datetime):
    """A clock that reads `start` now and runs on at the real pace: for sources whose requests depend on
    the date, so a test means the same on whatever day it runs."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def lake_files(items: list) -> list:
    """The `FileRows` (one per file) a consumer flow handed its lake sink: as they are for plain Parquet,
    each `Flush` (one per flush of a Kafka partition) cut as the Delta sink cuts it."""
    from sinks.delta import Flush

    return [file for _, item in items for file in (item.files() if isinstance(item, Flush) else [item])]
