"""A MinIO of a test module's own holding the lake's buckets, and `pipelines.cli.main` pointed at it.

`main` reads the settings of the environment (cached by `get_settings`), as a user's command does; these
helpers set that environment for one test and forget the cached settings before and after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from marketstream.lake import lake_filesystem
from marketstream.settings import Settings, get_settings
from tests.conftest import make_settings
from tests.integration.private_servers import PrivateMinio


def started_minio(data: Path, buckets: Iterable[str]) -> tuple[PrivateMinio, Settings]:
    """A private MinIO, started, with `buckets` made, and settings for it."""
    minio = PrivateMinio(data)
    minio.start()
    settings = make_settings(**minio.settings)
    for bucket in buckets:
        lake_filesystem(settings).mkdir(bucket)
    return minio, settings


@contextlib.contextmanager
def commands_on(minio: PrivateMinio, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """While the block runs, `main` reads `minio`'s address and credentials from the environment."""
    for name, value in minio.settings.items():
        monkeypatch.setenv(name.upper(), value)
    get_settings.cache_clear()
    try:
        yield make_settings(**minio.settings)
    finally:
        get_settings.cache_clear()
