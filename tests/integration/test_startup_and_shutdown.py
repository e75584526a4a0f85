"""Servers down at start and mid-run, refused credentials, and a stop while the object store is down:
the dataflows wait, say why in few lines, and stop within their bound, losing and duplicating nothing."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest

from marketstream.lake import lake_filesystem
from tests.conftest import STACK_ENV, make_settings
from tests.integration.kafka_helpers import produce
from tests.integration.private_servers import PrivateKafka, PrivateMinio
from tests.integration.test_fault_tolerance import consumer, init_recovery, log_of, stored, trade

pytestmark = pytest.mark.integration


def stored_count(settings, bucket: str) -> int:
    fs = lake_filesystem(settings)
    return len(stored(settings, bucket)) if fs.exists(bucket) and fs.find(bucket) else 0


def wait_until(condition, seconds: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log_of(process)[-3000:]
        assert process.poll() is None, log_of(process)[-3000:]
        time.sleep(0.3)


def test_kafka_down_at_start_and_mid_run_is_waited_for_in_few_lines(stack, unique, tmp_path):
    kafka = PrivateKafka(tmp_path / "kafka")
    topic, bucket = f"it_start_{unique}", f"it-start-{unique}"
    settings = make_settings(kafka_bootstrap_servers=kafka.bootstrap)
    process = consumer(topic, bucket, kafka_bootstrap_servers=kafka.bootstrap, kafka_stop_at_end=False,
                       batch_max_age_seconds=1)
    try:
        time.sleep(15)  # each try waits 5 s for an answer, then 1, 2, 4 s before the next
        assert process.poll() is None, log_of(process)
        waiting = log_of(process).splitlines()
        assert 2 <= len(waiting) <= 4, waiting  # one line per try
        assert f"waiting for Kafka at {kafka.bootstrap} (KAFKA_BOOTSTRAP_SERVERS)" in waiting[-1]

        kafka.start()
        produce(settings, topic, [trade(i) for i in range(100)])
        wait_until(lambda: stored_count(settings, bucket) == 100, 90, process)

        lines_before = len(log_of(process).splitlines())
        kafka.stop()
        time.sleep(15)
        outage_lines = log_of(process).splitlines()[lines_before:]
        assert len(outage_lines) <= 20, "\n".join(outage_lines)  # librdkafka says ~20 lines a second unfiltered
        kafka.start()
        produce(settings, topic, [trade(i) for i in range(100, 200)])
        wait_until(lambda: stored_count(settings, bucket) == 200, 90, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_of(process)[-3000:]
        assert "Traceback" not in log_of(process)
        ids = stored(settings, bucket)
        assert pc.count_distinct(ids).as_py() == 200
    finally:
        if process.poll() is None:
            process.kill()
        kafka.stop()
        fs = lake_filesystem(make_settings())
        if fs.exists(bucket):
            fs.rm(bucket, recursive=True)


def one_line_exit(command: list[str], env: dict, cwd) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 3, done.stderr
    return lines[-1]


def test_a_wrong_s3_key_ends_with_one_line_naming_it(stack, tmp_path):
    env = {**os.environ, **STACK_ENV, "S3_SECRET_KEY": "not-the-secret-42"}
    last = one_line_exit([sys.executable, "-m", "bytewax.run", "dataflows.stock_consume"], env, tmp_path)
    assert last.startswith("marketstream: configuration error:") and "S3_SECRET_KEY" in last


def test_a_wrong_postgres_password_ends_with_one_line_naming_it(stack, tmp_path):
    env = {**os.environ, **STACK_ENV, "POSTGRES_PASSWORD": "not-the-password-42", "FINNHUB_API_KEY": "x"}
    last = one_line_exit([sys.executable, "-m", "bytewax.run", "dataflows.news_produce"], env, tmp_path)
    assert last.startswith("marketstream: configuration error:") and "POSTGRES_PASSWORD" in last


def test_a_stop_while_the_object_store_is_down_is_bounded_and_advances_nothing(stack, unique, tmp_path):
    minio = PrivateMinio(tmp_path / "minio")
    minio.start()
    topic, bucket = f"it_stop_{unique}", "bounded"
    settings = make_settings(**minio.settings)
    recovery = init_recovery(tmp_path / "recovery")
    try:
        produce(settings, topic, [trade(i) for i in range(5_000)])
        process = consumer(topic, bucket, recovery, kafka_stop_at_end=False, batch_max_age_seconds=1,
                           s3_retry_max_seconds=1, shutdown_timeout_seconds=5, **minio.settings)
        wait_until(lambda: stored_count(settings, bucket) == 5_000, 90, process)
        minio.stop()
        produce(settings, topic, [trade(i) for i in range(5_000, 8_000)])
        time.sleep(4)  # read, and being retried
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 3, log_of(process)[-3000:]
        assert time.monotonic() - stopping < 15
        assert "SHUTDOWN_TIMEOUT_SECONDS" in log_of(process)

        minio.start()
        restarted = consumer(topic, bucket, recovery, **minio.settings)
        assert restarted.wait(120) == 0, log_of(restarted)[-3000:]
        ids = stored(settings, bucket)
        assert len(ids) == 8_000 and pc.count_distinct(ids).as_py() == 8_000
    finally:
        minio.stop()
