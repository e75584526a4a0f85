"""The object store sink waits out an unreachable MinIO and then writes; nothing is lost."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sinks.object_store import ObjectStore
from tests.conftest import make_settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_minio(port: int, data: Path) -> subprocess.Popen:
    binary = subprocess.run([REPO / "stack" / "stack.sh", "minio-path"], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "MINIO_ROOT_USER": "outage", "MINIO_ROOT_PASSWORD": "outage-secret", "MINIO_BROWSER": "off"}
    return subprocess.Popen([binary, "server", str(data), "--address", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_put_retries_while_the_store_is_down_then_succeeds(stack, tmp_path):
    port = free_port()
    settings = make_settings(s3_endpoint_url=f"http://127.0.0.1:{port}", s3_access_key="outage",
                             s3_secret_key="outage-secret", s3_retry_max_seconds=1)
    pauses = []
    store = ObjectStore(settings, sleep=lambda s: (pauses.append(s), time.sleep(s)))
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
    server = start_minio(port, tmp_path / "data")
    try:
        assert done.wait(60), "write did not complete after MinIO came up"
        assert store.filesystem.cat_file("outage/ticker=A/date=2026-11-24/f.parquet") == b"payload"
    finally:
        server.terminate()
        server.wait(10)


def test_rejected_credentials_raise_at_once(stack):
    settings = make_settings(s3_secret_key="not-the-secret")
    store = ObjectStore(settings, sleep=lambda s: pytest.fail("must not retry a refused credential"))
    with pytest.raises(PermissionError, match="S3_ACCESS_KEY / S3_SECRET_KEY") as error:
        store.ensure_bucket("never-created")
    assert "not-the-secret" not in str(error.value)
