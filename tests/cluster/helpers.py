"""Running dataflows against the cluster profile and streaming trades into it at a steady pace, counting
what the brokers acknowledged."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pyarrow.compute as pc
from confluent_kafka import Producer

from marketstream import schemas
from marketstream.lake import read_table
from marketstream.settings import Settings
from tests.cluster.conftest import REPO, cluster_process_env, cluster_settings
from tests.integration.processes import logged
from tests.integration.test_fault_tolerance import log_of, trade

__all__ = ["SteadyProducer", "consumer", "drained_exactly_once", "log_of", "stored_ids", "streaming", "wait_for_rows"]


def consumer(topic: str, bucket: str, cwd: Path, **changes: str) -> subprocess.Popen:
    """The stock consumer on `topic` -> `bucket`, streaming (not stopping at the end of the topic), its
    settings from the cluster profile's environment plus `changes`."""
    env = cluster_process_env(PYTHONPATH=str(REPO), KAFKA_STOP_AT_END="false", BATCH_MAX_AGE_SECONDS="1", **changes)
    return logged([sys.executable, "-m", "bytewax.run", f"tests.cluster.flows:stock_consume({topic!r}, {bucket!r})"],
                  cwd=cwd, env=env)


def stored_ids(settings: Settings, bucket: str):
    return read_table(settings, bucket, schemas.STOCK_TRADES_PARTITIONING).column("trade_id")


def wait_for_rows(settings: Settings, bucket: str, count: int, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the consumer stopped:\n" + log_of(process)[-3000:]
        try:
            if len(stored_ids(settings, bucket)) >= count:
                return
        except Exception:  # noqa: BLE001 - the table may not exist yet
            pass
        time.sleep(1)
    raise AssertionError(f"fewer than {count} rows stored after {seconds:.0f} s:\n" + log_of(process)[-3000:])


class SteadyProducer:
    """Trades `trade(0)`, `trade(1)`, … published to `topic` at `rate` a second from a thread of its own, with
    the project's producer settings (acks=all, idempotence); `acked` holds the trade ids the brokers
    acknowledged, with the monotonic time of each acknowledgement."""

    def __init__(self, settings: Settings, topic: str, rate: int):
        self._producer = Producer({**settings.kafka_cluster().producer_config(), "linger.ms": 5})
        self._topic, self._rate = topic, rate
        self.acked: dict[str, float] = {}
        self.failed: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error, message) -> None:
        if error is None:
            self.acked[orjson.loads(message.value())["trade_id"]] = time.monotonic()
        else:
            self.failed.append(f"{error}")

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self._rate)
            while self.sent < due:
                key, value = trade(self.sent)
                try:
                    self._producer.produce(self._topic, key=key, value=value, on_delivery=self._delivered)
                    self.sent += 1
                except BufferError:
                    break
            self._producer.poll(0.01)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def stop(self, flush_seconds: float = 120) -> None:
        self._stop.set()
        self._thread.join(30)
        assert self._producer.flush(flush_seconds) == 0, "messages neither acknowledged nor failed"

    def acknowledged_after(self, after: float) -> list[float]:
        """When each trade acknowledged after `after` (a monotonic time) was acknowledged."""
        return [t for t in self.acked.copy().values() if t > after]  # a copy: the delivery callback adds to it

    def largest_gap(self, after: float) -> float:
        """The longest time without an acknowledgement from `after` (a monotonic time) on."""
        times = sorted(self.acknowledged_after(after))
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def streaming(name: str, cwd: Path, rate: int) -> tuple[Settings, str, subprocess.Popen, SteadyProducer]:
    """A topic and bucket called `name`, the stock consumer streaming from one to the other, and trades
    published at `rate` a second: (settings, bucket, consumer process, producer)."""
    settings = cluster_settings()
    topic, bucket = name.replace("-", "_"), name
    settings.kafka_cluster().ensure_topics([topic])
    process = consumer(topic, bucket, cwd)
    return settings, bucket, process, SteadyProducer(settings, topic, rate).start()


def drained_exactly_once(settings: Settings, bucket: str, producer: SteadyProducer, process: subprocess.Popen) -> int:
    """Stop `producer`, let the consumer `process` store what the brokers acknowledged, stop it with SIGTERM,
    and check each acknowledged trade is stored once; the number of them."""
    producer.stop()
    assert producer.failed == []
    acknowledged = set(producer.acked)
    wait_for_rows(settings, bucket, len(acknowledged), process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_of(process)[-3000:]
    ids = stored_ids(settings, bucket)
    missing = acknowledged - set(ids.to_pylist())
    assert (len(ids), pc.count_distinct(ids).as_py(), len(missing)) == (len(acknowledged), len(acknowledged), 0)
    return len(acknowledged)
