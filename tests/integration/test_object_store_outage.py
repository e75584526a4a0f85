"""The object store sink waits out an unreachable MinIO and then writes; nothing is lost."""

import threading
import time

import pytest

from sinks.object_store import ObjectStore
from tests.conftest import make_settings
from tests.integration.private_servers import PrivateMinio

pytestmark = pytest.mark.integration


def test_put_retries_while_the_store_is_down_then_succeeds(stack, tmp_path):
    minio = PrivateMinio(tmp_path / "data")  # not started yet
    settings = make_settings(**minio.settings, s3_retry_max_seconds=1)
    pauses = []
    store = ObjectStore(settings.s3_storage_options(), retry_max_seconds=1,
                        sleep=lambda s: (pauses.append(s), time.sleep(s)))
    done = threading.Event()

    def write():
        store.ensure_bucket("outage")
        store.put("outage", "ticker=A/date=2026-11-24/f.parquet", b"payload")
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    deadline = time.monotonic() + 30
    while len(pauses) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not done.is_set() and pauses[:3] == [0.5, 1.0, 1.0]  # retrying, backoff capped at 1 s
    minio.start()
    try:
        assert done.wait(60), "write did not complete after MinIO came up"
        assert store.filesystem.cat_file("outage/ticker=A/date=2026-11-24/f.parquet") == b"payload"
    finally:
        minio.stop()


def test_rejected_credentials_raise_at_once(stack):
    settings = make_settings(s3_secret_key="not-the-secret")
    store = ObjectStore(settings.s3_storage_options(), sleep=lambda s: pytest.fail("must not retry a refused credential"))
    with pytest.raises(PermissionError, match="S3_ACCESS_KEY / S3_SECRET_KEY") as error:
        store.ensure_bucket("never-created")
    assert "not-the-secret" not in str(error.value)


def test_a_write_with_rejected_credentials_raises_at_once_in_one_line(stack):
    settings = make_settings(s3_secret_key="not-the-secret")
    store = ObjectStore(settings.s3_storage_options(), sleep=lambda s: pytest.fail("must not retry a refused credential"))
    with pytest.raises(PermissionError, match="S3_ACCESS_KEY / S3_SECRET_KEY") as error:
        store.put_many("never-written", {"ticker=A/date=2026-11-24/f.parquet": b"payload", "g.parquet": b"x"})
    assert "not-the-secret" not in str(error.value) and "\n" not in str(error.value)
