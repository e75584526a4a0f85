"""Any number of independent deployments of a consumer writing one table — a second one started by
mistake, old and new overlapping in a rolling restart — store every message exactly once, on the real
stack: each commit is fenced by the transaction versions the table holds, whoever committed them."""

from __future__ import annotations

import signal
import sys
import threading
import time

import orjson
import pyarrow.compute as pc
import pytest

from marketstream.lake import read_delta
from tests.integration.kafka_helpers import produce
from tests.integration.processes import logged
from tests.integration.test_fault_tolerance import REPO, consumer, log_of, trade

pytestmark = pytest.mark.integration

# each deployment cuts its batches and files elsewhere, so their commits overlap in every possible way
DEPLOYMENTS = [
    {"batch_max_age_seconds": 1, "batch_max_buffered_rows": 1_000, "kafka_poll_max_messages": 300},
    {"batch_max_age_seconds": 2, "batch_max_buffered_rows": 4_000},
    {"batch_max_age_seconds": 1, "batch_max_rows": 700, "kafka_poll_max_messages": 1_000},
]


def _produce_steadily(settings, topic: str, messages: list, per_second: int) -> threading.Thread:
    def run() -> None:
        step = per_second // 10
        for start in range(0, len(messages), step):
            began = time.monotonic()
            produce(settings, topic, messages[start:start + step])
            time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_rows(settings, bucket: str, total: int, processes: list, timeout: float) -> None:
    """Until the table holds `total` rows and stays so for a few seconds (duplicates would push it past)."""
    deadline, steady_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, log_of(process)[-3000:]
        try:
            rows = read_delta(settings, bucket).num_rows
        except Exception:  # noqa: BLE001 - no table yet
            rows = 0
        if rows >= total:
            steady_since = steady_since or time.monotonic()
            if time.monotonic() - steady_since > 6:
                return
        time.sleep(1)
    pytest.fail(f"the table never settled at {total} rows")


def _stop(processes: list) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(60) == 0, log_of(process)[-3000:]


@pytest.mark.parametrize("deployments", [2, 3])
def test_independent_deployments_started_apart_store_every_trade_once(lake, deployments):
    settings, topic, bucket = lake
    total = 12_000 * deployments
    producer = _produce_steadily(settings, topic, [trade(i) for i in range(total)], per_second=1_000)
    processes = []
    for setting in DEPLOYMENTS[:deployments]:
        processes.append(consumer(topic, bucket, kafka_stop_at_end=False, **setting))
        time.sleep(3)
    if deployments == 3:  # one of them killed mid-run and started again, without recovery
        time.sleep(4)
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(10)
        processes[0] = consumer(topic, bucket, kafka_stop_at_end=False, **DEPLOYMENTS[0])
    producer.join()
    _wait_for_rows(settings, bucket, total, processes, timeout=180)
    _stop(processes)

    ids = read_delta(settings, bucket).column("trade_id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total
    logs = [log_of(process) for process in processes]
    assert any("another writer committed" in log for log in logs), "no deployment noticed the others"


def _article(i: int) -> tuple[bytes, bytes]:
    ticker = f"N{i % 7}"
    return ticker.encode(), orjson.dumps({
        "id": 1_000_000 + i, "ticker": ticker, "datetime": f"2026-11-24T14:{i % 60:02d}:00.000000Z",
        "headline": f"headline {i}", "summary": "s", "source": "Yahoo", "url": f"https://example.com/{i}",
        "image": "", "category": "company", "related": ticker})


def test_independent_news_deployments_store_every_article_once(lake):
    settings, topic, bucket = lake
    total = 8_000
    producer = _produce_steadily(settings, topic, [_article(i) for i in range(total)], per_second=800)
    processes = []
    for setting in DEPLOYMENTS[:2]:
        command = [sys.executable, "-m", "bytewax.run", "tests.integration.flows:consume("
                   + ", ".join([repr("news"), repr(topic), repr(bucket), "kafka_stop_at_end=False",
                                *(f"{name}={value!r}" for name, value in setting.items())]) + ")"]
        processes.append(logged(command, cwd=REPO))
        time.sleep(3)
    producer.join()
    _wait_for_rows(settings, bucket, total, processes, timeout=120)
    _stop(processes)
    ids = read_delta(settings, bucket).column("id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total
