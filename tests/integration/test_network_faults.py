"""Network faults between stock_consume and its servers, made by a real fault proxy (Toxiproxy, built by
`stack/toxiproxy.sh`), overlapping while trades stream: latency with a bandwidth limit, then connection
resets, then a link that swallows every byte for longer than a commit attempt waits, then nothing. Between
the consumer and the object store: every trade is stored once, the consumer says once per outage that the
store is failing and once that it answers again, and it recovers by itself, without a restart. Between
every Kafka client (the consumer, its dead-letter producer, the test's producer) and a broker of the test's
own: every trade is stored once, without a restart."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import pyarrow.compute as pc
import pytest
from confluent_kafka import Producer

from marketstream.lake import lake_filesystem, read_delta
from tests.conftest import STACK, make_settings
from tests.integration.test_fault_tolerance import consumer, log_of, trade
from tests.integration.private_servers import PrivateKafka, free_port
from tests.integration.test_independent_writers import _produce_steadily
from tests.integration.toxiproxy import Proxy, Toxiproxy

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def stored_count(settings, bucket: str) -> int:
    try:
        return read_delta(settings, bucket).num_rows
    except Exception:  # noqa: BLE001 - no table yet
        return 0


def overlapping_faults(toxiproxy: Toxiproxy, proxy: Proxy, process, stored: Callable[[], int],
                       heavy: str) -> list[tuple[str, str, int]]:
    """On `proxy`, while `process` runs: 200 ms latency each way with jitter and 256 KB/s on the `heavy`
    stream for 10 s; on that slow, thin link every connection reset as soon as it carries data, for 8 s;
    then every byte from the client swallowed without closing, for 40 s (requests wait for their timeouts,
    longer than a commit attempt waits: delta-rs, 30 s a request); then nothing. Returns when each began
    (UTC) with the rows `stored` then."""
    timeline = []

    def fault(seconds: float, label: str) -> None:
        timeline.append((label, f"{datetime.now(timezone.utc):%H:%M:%S}", stored()))
        time.sleep(seconds)
        assert process.poll() is None, f"the consumer exited during {label}:\n" + log_of(process)[-3000:]

    proxy.add("slow", "latency", latency=200, jitter=100)
    proxy.add("slow-up", "latency", stream="upstream", latency=200, jitter=100)
    proxy.add("thin", "bandwidth", stream=heavy, rate=256)
    fault(10, "latency + bandwidth")
    proxy.add("reset", "reset_peer", stream="upstream", timeout=0)
    fault(8, "latency + bandwidth + reset_peer")
    proxy.remove("reset")
    proxy.add("hole", "timeout", stream="upstream", timeout=0)
    fault(40, "latency + bandwidth + timeout")
    toxiproxy.reset()
    timeline.append(("no fault", f"{datetime.now(timezone.utc):%H:%M:%S}", stored()))
    return timeline


def test_the_consumer_rides_out_overlapping_faults_between_it_and_the_object_store_and_stores_every_trade_once(
        stack, unique):
    settings = make_settings(kafka_topic_partitions=6)
    topic, bucket, total, per_second = f"it_toxic_{unique}", f"it-toxic-{unique}", 60_000, 1_000
    settings.kafka_cluster().ensure_topics([topic])
    with Toxiproxy() as toxiproxy:
        store = toxiproxy.proxy("minio", upstream=STACK["s3_endpoint_url"].split("//", 1)[1])
        producer = _produce_steadily(settings, topic, [trade(i) for i in range(total)], per_second)
        process = consumer(topic, bucket, kafka_stop_at_end=False, batch_max_age_seconds=1, s3_retry_max_seconds=2,
                           s3_endpoint_url=f"http://{store.address}")
        deadline = time.monotonic() + 60
        while stored_count(settings, bucket) == 0:
            assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-3000:]
            time.sleep(0.5)
        began = time.monotonic()
        # uploads are the heavy direction: the bandwidth limit is on them
        timeline = overlapping_faults(toxiproxy, store, process, lambda: stored_count(settings, bucket), "upstream")

        producer.join(120)
        deadline = time.monotonic() + 180
        while stored_count(settings, bucket) < total:
            assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-3000:]
            time.sleep(1)
        recovered_after = round(time.monotonic() - began, 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_of(process)[-3000:]

    log = log_of(process)
    print("timeline (fault from, UTC, rows stored then):", timeline, "; all stored", recovered_after,
          "s after the first fault")
    print("\n".join(line for line in log.splitlines() if " WARNING " in line or " ERROR " in line)[-6000:])
    ids = read_delta(settings, bucket).column("trade_id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total
    assert "Traceback" not in log, log[-3000:]
    outages = re.findall(r"object store .*(?:unreachable|failing)", log)
    answers = re.findall(r"answers again", log)
    assert 1 <= len(outages) <= 3 and len(answers) == len(outages), log[-4000:]
    lake_filesystem(settings).rm(bucket, recursive=True)


def _produce_through_faults(settings, topic: str, messages: list, per_second: int) -> threading.Thread:
    """`messages` produced at `per_second` by one idempotent producer that waits out faults (librdkafka
    retries for up to 5 minutes; idempotence keeps a retried batch from landing twice)."""
    def run() -> None:
        producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all",
                             "message.timeout.ms": 300_000})
        step = per_second // 10
        for start in range(0, len(messages), step):
            began = time.monotonic()
            for key, value in messages[start:start + step]:
                while True:
                    try:
                        producer.produce(topic, key=key, value=value)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))
        assert producer.flush(300) == 0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_consumer_rides_out_overlapping_faults_between_it_and_kafka_and_stores_every_trade_once(stack, unique,
                                                                                                   tmp_path):
    """The same faults between every Kafka client and a broker of this test's own, whose advertised
    listener is the proxy's port; trades are produced through the same faults meanwhile."""
    topic, bucket, total = f"it_toxic_kafka_{unique}", f"it-toxic-kafka-{unique}", 40_000
    with Toxiproxy() as toxiproxy:
        proxy_port = free_port()
        kafka = PrivateKafka(tmp_path / "kafka", advertised_port=proxy_port)
        broker = toxiproxy.proxy("kafka", upstream=f"127.0.0.1:{kafka.port}", port=proxy_port)
        with kafka:
            settings = make_settings(kafka_bootstrap_servers=broker.address, kafka_topic_partitions=6)
            settings.kafka_cluster().ensure_topics([topic])
            producer = _produce_through_faults(settings, topic, [trade(i) for i in range(total)], 1_000)
            process = consumer(topic, bucket, kafka_stop_at_end=False, batch_max_age_seconds=1,
                               kafka_bootstrap_servers=broker.address)
            lake = make_settings()
            deadline = time.monotonic() + 90
            while stored_count(lake, bucket) == 0:
                assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-3000:]
                time.sleep(0.5)
            # fetches are the heavy direction: the bandwidth limit is on them
            timeline = overlapping_faults(toxiproxy, broker, process, lambda: stored_count(lake, bucket), "downstream")
            producer.join(300)
            assert not producer.is_alive(), "the producer never got its trades acknowledged"
            deadline = time.monotonic() + 180
            while stored_count(lake, bucket) < total:
                assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-3000:]
                time.sleep(1)
            finished = f"{datetime.now(timezone.utc):%H:%M:%S}"
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, log_of(process)[-3000:]

    log = log_of(process)
    print("timeline (fault from, UTC, rows stored then):", timeline, "; all stored at", finished)
    print("\n".join(line for line in log.splitlines() if " WARNING " in line or " ERROR " in line)[-6000:])
    ids = read_delta(make_settings(), bucket).column("trade_id")
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total
    assert "Traceback" not in log, log[-3000:]
    lake_filesystem(make_settings()).rm(bucket, recursive=True)
