"""Exactly-once storage under hard kills, graceful stops and hostile input, on the real stack."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from marketstream import schemas
from marketstream.lake import lake_filesystem, read_table
from sinks.layout import parse_batch_object_name
from tests.conftest import STACK_ENV, make_settings
from tests.integration.kafka_helpers import produce, read_topic
from tests.integration.processes import logged
from tests.integration.private_servers import PrivateKafka, PrivateMinio, free_port
from tests.integration.scraping import scrape_if_serving, total

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TICKERS = [f"T{i:02d}" for i in range(20)]
ENV_FOR_STACK = {name: value for name, value in STACK_ENV.items() if name != "KAFKA_BOOTSTRAP_SERVERS"}


def trade(i: int) -> tuple[bytes, bytes]:
    symbol = TICKERS[i % len(TICKERS)]
    return symbol.encode(), orjson.dumps({
        "symbol": symbol, "price": 100.0 + i % 97, "size": 1 + i % 300, "exchange": "V", "conditions": ["@"],
        "timestamp": f"2026-11-{23 + i % 3}T15:{i % 60:02d}:00.{i % 1_000_000:06d}Z", "trade_id": f"t{i}",
        "source": "alpaca"})


def consumer(topic: str, bucket: str, recovery: Path | None = None, factory: str = "stock_consume", *,
             workers: int = 1, process_id: int | None = None, addresses: list[str] | None = None,
             **settings) -> subprocess.Popen:
    """`python -m bytewax.run` on the stock consumer for `topic` -> `bucket` (literal keyword arguments only:
    bytewax.run parses the factory call with ast.literal_eval); with `process_id` and `addresses`, process
    `process_id` of the Bytewax cluster whose processes listen at `addresses` (`-i`/`-a`)."""
    arguments = ", ".join([repr(topic), repr(bucket), *(f"{name}={value!r}" for name, value in settings.items())])
    command = [sys.executable, "-m", "bytewax.run", f"tests.integration.flows:{factory}({arguments})", "-w", str(workers)]
    if process_id is not None:
        command += ["-i", str(process_id), "-a", ";".join(addresses or [])]
    if recovery is not None:
        command += ["-r", str(recovery), "-s", "1", "-b", "0"]
    return logged(command, cwd=REPO)


def log_of(process: subprocess.Popen) -> str:
    process.log.seek(0)
    return process.log.read().decode(errors="replace")


def init_recovery(path: Path) -> Path:
    path.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(path), "1"], check=True)
    return path


def stored(settings, bucket):
    return read_table(settings, bucket, schemas.STOCK_TRADES_PARTITIONING).column("trade_id")


def test_kill_9_at_three_points_then_restart_stores_each_trade_exactly_once(lake, tmp_path):
    settings, topic, bucket = lake
    total = 200_000
    produce(settings, topic, [trade(i) for i in range(total)])
    recovery = init_recovery(tmp_path / "recovery")
    fs = lake_filesystem(settings)
    progress = []
    for files_before_kill in (20, 80, 140):  # three points of the drain, measured in objects written
        # the writes in flight when a kill lands can carry the count past the next point: each process
        # is killed only once it has written 20 objects of its own at least
        wanted = max(files_before_kill, (progress[-1] if progress else 0) + 20)
        process = consumer(topic, bucket, recovery, batch_max_buffered_rows=1000)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if fs.exists(bucket) and len(fs.find(bucket)) >= wanted:
                break
            assert process.poll() is None, "the consumer finished before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        progress.append(len(fs.find(bucket)))
    final = consumer(topic, bucket, recovery, batch_max_buffered_rows=1000)
    assert final.wait(180) == 0, log_of(final)[-2000:]

    assert progress[0] < progress[1] < progress[2]  # the kills landed at three points of the drain
    ids = stored(settings, bucket)
    assert len(ids) == total
    assert pc.count_distinct(ids).as_py() == total


def stored_ranges(fs, bucket: str, topic: str) -> list[tuple[int, int]]:
    names = [parse_batch_object_name(key, topic) for key in fs.find(bucket)]
    return sorted((name.first_offset, name.last_offset) for name in names if name)


@pytest.mark.parametrize("recovery_on", [False, True], ids=["without-recovery", "with-recovery"])
def test_uploads_completing_out_of_order_then_kill_9_lose_nothing(lake, tmp_path, recovery_on):
    settings, topic, bucket = lake
    total = 20_000  # one ticker, one day: every object lands under one prefix, from one Kafka partition
    one_day = [orjson.loads(trade(i * len(TICKERS))[1]) | {"timestamp": "2026-11-24T15:00:00Z"} for i in range(total)]
    produce(settings, topic, [(b"T00", orjson.dumps(message)) for message in one_day])
    recovery = init_recovery(tmp_path / "recovery") if recovery_on else None
    fs = lake_filesystem(settings)
    process = consumer(topic, bucket, recovery, factory="stock_consume_stalling_upload", stalled_upload=3,
                       lake_format="parquet", batch_max_rows=500, batch_max_buffered_rows=500,
                       kafka_poll_max_messages=250)
    deadline = time.monotonic() + 120
    while not (fs.exists(bucket) and len(fs.find(bucket)) >= 12):  # uploads after the stalled one completed
        assert time.monotonic() < deadline and process.poll() is None, log_of(process)[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    before = stored_ranges(fs, bucket, topic)
    assert before[0][0] == 0 and any(nxt[0] != prev[1] + 1 for prev, nxt in zip(before, before[1:])), \
        f"no gap left behind a later object: {before}"

    assert consumer(topic, bucket, recovery, lake_format="parquet").wait(120) == 0
    ids = stored(settings, bucket)
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total


def recreate_topic(settings, topic: str) -> None:
    admin = AdminClient(settings.kafka_client_config())
    admin.delete_topics([topic])[topic].result()
    deadline = time.monotonic() + 30
    while True:  # the broker finishes a deletion in the background
        try:
            settings.kafka_cluster().ensure_topics([topic])
            return
        except KafkaException:
            assert time.monotonic() < deadline, "the topic could not be created again"
            time.sleep(0.5)


@pytest.mark.parametrize("recovery_on", [False, True], ids=["without-recovery", "with-recovery"])
def test_a_recreated_topic_is_a_new_incarnation_whose_rows_are_stored(lake, tmp_path, recovery_on):
    settings, topic, bucket = lake
    same_place = {"symbol": "T00", "timestamp": "2026-11-24T15:00:00Z"}  # one ticker and day, both times
    first = [orjson.loads(trade(i)[1]) | same_place for i in range(1000)]
    produce(settings, topic, [(b"T00", orjson.dumps(message)) for message in first])
    recovery = init_recovery(tmp_path / "recovery") if recovery_on else None
    assert consumer(topic, bucket, recovery, lake_format="parquet").wait(120) == 0
    assert len(stored(settings, bucket)) == 1000

    recreate_topic(settings, topic)
    second = [orjson.loads(trade(i)[1]) | same_place for i in range(1000, 2000)]
    produce(settings, topic, [(b"T00", orjson.dumps(message)) for message in second])
    process = consumer(topic, bucket, recovery, lake_format="parquet")
    assert process.wait(120) == 0, log_of(process)[-2000:]
    ids = stored(settings, bucket)
    assert len(ids) == 2000 and pc.count_distinct(ids).as_py() == 2000


def test_sigterm_flushes_open_batches_and_a_restart_resumes_without_duplicates(lake, tmp_path):
    settings, topic, bucket = lake
    produce(settings, topic, [trade(i) for i in range(3000)])
    recovery = init_recovery(tmp_path / "recovery")
    port = free_port()
    process = consumer(topic, bucket, recovery, kafka_stop_at_end=False, batch_max_age_seconds=3600,
                       metrics_port=port, metrics_address="127.0.0.1")
    deadline = time.monotonic() + 60
    held = 0.0
    while held < 3000 and time.monotonic() < deadline:  # until every trade waits in an open batch
        time.sleep(0.5)
        if process.poll() is not None:
            pytest.fail(log_of(process)[-2000:])
        held = total(scrape_if_serving(port), "marketstream_buffered_rows", dataset="stock")
    assert held == 3000, held
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert len(stored(settings, bucket)) == 3000  # flushed although no batch was an hour old

    produce(settings, topic, [trade(i) for i in range(3000, 3500)])
    assert consumer(topic, bucket, recovery).wait(120) == 0
    ids = stored(settings, bucket)
    assert len(ids) == 3500 and pc.count_distinct(ids).as_py() == 3500


def hostile_messages(rng: random.Random, count: int) -> list[tuple[bytes | None, bytes | None]]:
    good = orjson.loads(trade(1)[1])
    mutations = [
        lambda: rng.randbytes(rng.randint(0, 200)),
        lambda: trade(rng.randint(0, 10**6))[1][: rng.randint(1, 60)],
        lambda: orjson.dumps({**good, "price": rng.choice(["12", None, [], {}, True])}),
        lambda: orjson.dumps({**good, "size": -rng.randint(1, 10**6)}),
        lambda: orjson.dumps({**good, "exchange": "X" * rng.randint(17, 100_000)}),
        lambda: orjson.dumps({**good, "trade_id": "id" * 40_000}),
        lambda: orjson.dumps(good).replace(b'"price":', b'"price":NaN,"x":'),
        lambda: orjson.dumps(good).replace(b'"size":', b'"size":Infinity,"y":'),
        lambda: orjson.dumps({**good, "timestamp": rng.choice(["1899-01-01T00:00:00Z", "2999-01-01T00:00:00Z",
                                                                "0001-01-01T00:00:00Z", "2026-13-45T99:00:00Z"])}),
        lambda: orjson.dumps({**good, "symbol": rng.choice(["../x", "A/B", "AAPL\x00", "AA\nPL", "", "..", "a" * 500])}),
        lambda: orjson.dumps({**good, "symbol": "\u202eAAPL"}),
        lambda: b"\xff\xfe" + orjson.dumps(good),
        lambda: orjson.dumps(good).replace(b"AAPL", b"AA\xc3PL") if b"AAPL" in orjson.dumps(good) else b"\xc3\x28",
        lambda: None,
        lambda: orjson.dumps([good]),
        lambda: b"[" * 10_000,
    ]
    return [(rng.choice([b"k", None, rng.randbytes(8)]), rng.choice(mutations)()) for _ in range(count)]


def test_fuzz_every_good_trade_is_stored_and_every_bad_one_dead_lettered_with_a_reason(lake):
    settings, topic, bucket = lake
    rng = random.Random(20261125)
    bad = hostile_messages(rng, 10_000)
    good = [trade(i) for i in range(5_000)]
    mixed = bad + good
    rng.shuffle(mixed)
    produce(settings, topic, mixed)
    process = subprocess.run([sys.executable, "-m", "bytewax.run",
                              f"tests.integration.flows:stock_consume({topic!r}, {bucket!r})"],
                             cwd=REPO, capture_output=True, timeout=300)
    assert process.returncode == 0, process.stderr.decode()[-2000:]

    ids = stored(settings, bucket)
    assert sorted(ids.to_pylist()) == sorted(f"t{i}" for i in range(5_000))
    dead = read_topic(settings, f"{topic}.dlq")
    assert len(dead) == len(bad)
    assert sorted(m.value() or b"" for m in dead) == sorted(v or b"" for _, v in bad)
    assert all(dict(m.headers())["dlq.reason"] for m in dead)


def test_minio_down_for_thirty_seconds_mid_run_loses_and_duplicates_nothing(stack, unique, tmp_path):
    minio = PrivateMinio(tmp_path / "minio")
    minio.start()
    try:
        settings = make_settings(**minio.settings)
        topic, bucket, total = f"it_minio_{unique}", "outage", 150_000
        produce(settings, topic, [trade(i) for i in range(50_000)])
        process = consumer(topic, bucket, kafka_stop_at_end=False, batch_max_buffered_rows=2000, batch_max_age_seconds=1,
                           s3_retry_max_seconds=2, **minio.settings)
        fs = lake_filesystem(settings)
        deadline = time.monotonic() + 60
        while not (fs.exists(bucket) and fs.find(bucket)) and time.monotonic() < deadline:
            time.sleep(0.2)
        minio.stop()
        produce(settings, topic, [trade(i) for i in range(50_000, total)])  # trades keep coming meanwhile
        time.sleep(30)
        assert process.poll() is None, "the consumer gave up while MinIO was down:\n" + log_of(process)[-3000:]
        minio.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (fs.exists(bucket) and len(stored(settings, bucket)) >= total):
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_of(process)[-2000:]
        ids = stored(settings, bucket)
        assert len(ids) == total and pc.count_distinct(ids).as_py() == total
        assert "retrying" in log_of(process)
        assert "Traceback" not in log_of(process), log_of(process)[-3000:]
    finally:
        minio.stop()


def test_kafka_restart_while_the_synthetic_producer_runs_loses_no_trade(stack, unique, tmp_path):
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        settings = make_settings(kafka_bootstrap_servers=kafka.bootstrap)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "STOCK_SOURCE": "synthetic",
               "SYNTHETIC_TRADES_PER_SECOND": "20", **ENV_FOR_STACK}
        producer = logged([sys.executable, "-m", "bytewax.run", "dataflows.stock_produce"], cwd=tmp_path, env=env)

        def published_since(moment_ms: float) -> bool:
            try:
                return any(m.timestamp()[1] >= moment_ms for m in read_topic(settings, "stock_trades", timeout=5))
            except KafkaException:  # the restarted broker is not the partition's leader again yet
                return False

        # paced by what Kafka holds, not by the clock: a loaded machine starts everything slower
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not published_since(0):
            time.sleep(0.5)
        kafka.stop()
        time.sleep(4)
        kafka.start()
        back = time.time() * 1000
        while time.monotonic() < deadline + 120 and not published_since(back):
            time.sleep(0.5)
        assert published_since(back), "the producer published nothing once Kafka was back"
        producer.send_signal(signal.SIGTERM)
        assert producer.wait(120) == 0, log_of(producer)[-2000:]

        produced = [orjson.loads(m.value())["trade_id"] for m in read_topic(settings, "stock_trades")]
        run_id = {trade_id.rsplit("-", 1)[0] for trade_id in produced}
        assert len(run_id) == 1  # one producer run: its ids are numbered 1..N without gaps
        assert sorted(int(t.rsplit("-", 1)[1]) for t in produced) == list(range(1, len(produced) + 1))

        bucket = f"it-kafka-{unique}"
        assert consumer("stock_trades", bucket, kafka_bootstrap_servers=kafka.bootstrap).wait(120) == 0
        synthetic = read_table(make_settings(), bucket, schemas.STOCK_TRADES_PARTITIONING, prefix="_synthetic")
        assert sorted(synthetic.column("trade_id").to_pylist()) == sorted(produced)
        lake_filesystem(make_settings()).rm(bucket, recursive=True)
    finally:
        kafka.stop()
