"""The lake as Delta tables (`LAKE_FORMAT=delta`) on the real stack: atomic commits carrying the Kafka
offsets, exactly-once under kills, out-of-order uploads, several processes and a recreated topic."""

import signal
import subprocess
import sys
import time

import botocore.exceptions
import orjson
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from marketstream.lake import lake_filesystem, read_delta
from sinks.object_store import ObjectStore
from tests.conftest import make_settings
from tests.integration.kafka_helpers import produce
from tests.integration.test_fault_tolerance import REPO, consumer, init_recovery, log_of, recreate_topic, trade

pytestmark = pytest.mark.integration


def committed_ids(settings, bucket: str, table: str = ""):
    return read_delta(settings, bucket, table).column("trade_id")


def data_files(fs, bucket: str) -> int:
    return len([key for key in fs.find(bucket) if key.endswith(".parquet")]) if fs.exists(bucket) else 0


def test_trades_are_committed_to_a_delta_table_with_their_partitions(lake):
    settings, topic, bucket = lake
    produce(settings, topic, [trade(i) for i in range(3_000)])
    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0
    table = read_delta(settings, bucket)
    assert table.num_rows == 3_000 and pc.count_distinct(table.column("trade_id")).as_py() == 3_000
    assert {"ticker", "date", "kafka_partition", "kafka_offset"} <= set(table.column_names)
    row = table.filter(pc.equal(table.column("trade_id"), "t7")).to_pylist()[0]
    assert (row["ticker"], str(row["date"])) == ("T07", "2026-11-24")

    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0  # a restart without recovery
    assert read_delta(settings, bucket).num_rows == 3_000


def test_kill_9_at_three_points_then_restart_commits_each_trade_exactly_once(lake, tmp_path):
    settings, topic, bucket = lake
    total = 200_000
    produce(settings, topic, [trade(i) for i in range(total)])
    recovery = init_recovery(tmp_path / "recovery")
    fs = lake_filesystem(settings)
    for files_before_kill, with_recovery in ((20, True), (80, False), (140, True)):
        process = consumer(topic, bucket, recovery if with_recovery else None, lake_format="delta",
                           batch_max_buffered_rows=1000)
        deadline = time.monotonic() + 120
        while data_files(fs, bucket) < files_before_kill:
            assert time.monotonic() < deadline and process.poll() is None, log_of(process)[-2000:]
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    final = consumer(topic, bucket, recovery, lake_format="delta", batch_max_buffered_rows=1000)
    assert final.wait(240) == 0, log_of(final)[-2000:]
    ids = committed_ids(settings, bucket)
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total


@pytest.mark.parametrize("recovery_on", [False, True], ids=["without-recovery", "with-recovery"])
def test_an_upload_held_back_then_kill_9_commits_nothing_past_it_and_loses_nothing(lake, tmp_path, recovery_on):
    settings, topic, bucket = lake
    total = 20_000
    one_day = [orjson.loads(trade(i * 20)[1]) | {"timestamp": "2026-11-24T15:00:00Z"} for i in range(total)]
    produce(settings, topic, [(b"T00", orjson.dumps(message)) for message in one_day])
    recovery = init_recovery(tmp_path / "recovery") if recovery_on else None
    fs = lake_filesystem(settings)
    process = consumer(topic, bucket, recovery, factory="stock_consume_stalling_upload", stalled_upload=3,
                       lake_format="delta", batch_max_rows=500, batch_max_buffered_rows=500,
                       kafka_poll_max_messages=250)
    deadline = time.monotonic() + 120
    while len([k for k in (fs.find(bucket) if fs.exists(bucket) else []) if k.endswith(".parquet")]) < 8:
        assert time.monotonic() < deadline and process.poll() is None, log_of(process)[-2000:]
        time.sleep(0.05)
    time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    # one Kafka partition (one key): what is committed is a prefix of its offsets, none of the uploads that
    # completed after the held-back one counts
    committed = read_delta(settings, bucket)
    offsets = sorted(committed.column("kafka_offset").to_pylist())
    assert offsets == list(range(len(offsets))) and len(offsets) < total
    assert data_files(fs, bucket) > len(DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).file_uris())

    assert consumer(topic, bucket, recovery, lake_format="delta").wait(120) == 0
    ids = committed_ids(settings, bucket)
    assert len(ids) == total and pc.count_distinct(ids).as_py() == total


def test_offsets_committed_under_the_former_dataset_name_still_count(lake):
    settings, topic, bucket = lake
    produce(settings, topic, [trade(i) for i in range(1_000)])
    assert consumer(topic, bucket, factory="stock_consume_before_renaming", lake_format="delta").wait(120) == 0
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())
    incarnation = settings.kafka_cluster().topic_incarnation(topic)
    assert table.transaction_version(f"marketstream:stock_trades:{topic}:{incarnation}:0") is not None
    produce(settings, topic, [trade(i) for i in range(1_000, 1_500)])
    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0  # new name, no recovery: reads from 0
    ids = committed_ids(settings, bucket)
    assert len(ids) == 1_500 and pc.count_distinct(ids).as_py() == 1_500


def test_synthetic_trades_are_a_table_of_their_own(lake):
    settings, topic, bucket = lake
    synthetic = [(b"T01", orjson.dumps(orjson.loads(trade(i)[1]) | {"source": "synthetic", "symbol": "T01"}))
                 for i in range(100)]
    produce(settings, topic, [trade(i) for i in range(200)] + synthetic)
    assert consumer(topic, bucket, lake_format="delta").wait(120) == 0
    assert read_delta(settings, bucket).num_rows == 200
    apart = read_delta(settings, bucket, "_synthetic")
    assert apart.num_rows == 100 and set(apart.column("source").to_pylist()) == {"synthetic"}


def test_two_processes_commit_to_one_table_losing_and_doubling_nothing(lake):
    settings, topic, bucket = lake
    produce(settings, topic, [trade(i) for i in range(20_000)])
    factory = f"tests.integration.flows:stock_consume({topic!r}, {bucket!r}, lake_format='delta', batch_max_buffered_rows=500)"
    subprocess.run([sys.executable, "-m", "bytewax.testing", factory, "-p", "2"], cwd=REPO, check=True, timeout=240)
    ids = committed_ids(settings, bucket)
    assert len(ids) == 20_000 and pc.count_distinct(ids).as_py() == 20_000


@pytest.mark.parametrize("recovery_on", [False, True], ids=["without-recovery", "with-recovery"])
def test_a_recreated_topic_is_committed_as_a_new_incarnation(lake, tmp_path, recovery_on):
    settings, topic, bucket = lake
    place = {"symbol": "T00", "timestamp": "2026-11-24T15:00:00Z"}
    produce(settings, topic, [(b"T00", orjson.dumps(orjson.loads(trade(i)[1]) | place)) for i in range(1000)])
    recovery = init_recovery(tmp_path / "recovery") if recovery_on else None
    assert consumer(topic, bucket, recovery, lake_format="delta").wait(120) == 0
    recreate_topic(settings, topic)
    produce(settings, topic, [(b"T00", orjson.dumps(orjson.loads(trade(i)[1]) | place)) for i in range(1000, 2000)])
    assert consumer(topic, bucket, recovery, lake_format="delta").wait(120) == 0
    ids = committed_ids(settings, bucket)
    assert len(ids) == 2000 and pc.count_distinct(ids).as_py() == 2000


def test_the_object_store_refuses_to_overwrite_an_object_under_if_none_match(stack, unique):
    """Delta commits between concurrent writers are safe only if the store honours If-None-Match."""
    store = ObjectStore(make_settings().s3_storage_options())
    bucket = f"it-inm-{unique}"
    store.ensure_bucket(bucket)
    client = store.filesystem

    async def put_if_absent(body: bytes):
        return await client._call_s3("put_object", Bucket=bucket, Key="_delta_log/00000000000000000000.json",
                                     Body=body, IfNoneMatch="*")

    import fsspec.asyn

    fsspec.asyn.sync(client.loop, put_if_absent, b"first")
    with pytest.raises((botocore.exceptions.ClientError, OSError)) as refused:
        fsspec.asyn.sync(client.loop, put_if_absent, b"second")
    assert "pre-conditions you specified did not hold" in str(refused.value)
    assert client.cat(f"{bucket}/_delta_log/00000000000000000000.json") == b"first"
    client.rm(bucket, recursive=True)


def test_the_sink_cuts_flushes_on_its_upload_threads_and_a_replayed_flush_adds_nothing(lake, monkeypatch):
    """Flushes reach the sink whole: it cuts them into files off the worker's thread, one flush after the
    other, each right after freed memory was handed back (the cut's copy is the peak's moment), sends a
    flush's rows of each prefix to that prefix's table, and drops a replayed flush's rows."""
    import threading
    from datetime import date

    import pyarrow as pa

    import sinks.delta
    from marketstream import schemas
    from sinks.delta import DeltaLakeSink, Flush
    from sinks.files import PREFIX_COLUMN, FileLayout

    settings, topic, bucket = lake
    cut_on, cutting, most_cutting, events = [], [0], [0], []
    released = sinks.delta.release_free_memory
    monkeypatch.setattr(sinks.delta, "release_free_memory", lambda **how: events.append(
        ("released", threading.current_thread().name, how.get("before_copy", False))) or released(**how))

    class Recorded(FileLayout):
        def files(self, kafka_partition, table):
            cut_on.append(threading.current_thread().name)
            events.append(("cut", threading.current_thread().name, True))
            cutting[0] += 1
            most_cutting[0] = max(most_cutting[0], cutting[0])
            time.sleep(0.05)
            try:
                return super().files(kafka_partition, table)
            finally:
                cutting[0] -= 1

    layout = Recorded(tuple(schemas.STOCK_TRADES_PARTITIONING.names), schemas.STOCK_TRADES, 7)
    store = ObjectStore(settings.s3_storage_options())
    sink = DeltaLakeSink(bucket=bucket, topic=topic, dataset="stock", schema=schemas.STOCK_TRADES,
                         partitioning=schemas.STOCK_TRADES_PARTITIONING, topic_incarnation=lambda: "i1",
                         store=lambda: store, storage_options=settings.delta_storage_options(),
                         compression=settings.parquet_compression)
    sink.list_parts()
    part = sink.build_part("test", "0", None)

    def flush(kafka_partition: int, offsets: range) -> Flush:
        count = len(offsets)
        return Flush(kafka_partition, pa.table({
            "ticker": [f"T{offset % 3}" for offset in offsets], "date": [date(2026, 11, 24)] * count,
            "trade_id": [f"p{kafka_partition}-{offset}" for offset in offsets],
            "timestamp": pa.array([1_795_966_200_000_000 + offset for offset in offsets], schemas.TIMESTAMP),
            "price": [1.0] * count, "size": [1.0] * count, "exchange": [None] * count,
            "conditions": pa.array([None] * count, pa.list_(pa.string())), "tape": [None] * count,
            "source": ["alpaca" if offset % 5 else "synthetic" for offset in offsets],
            "kafka_partition": pa.array([kafka_partition] * count, pa.int32()), "kafka_offset": list(offsets),
            PREFIX_COLUMN: ["" if offset % 5 else "_synthetic" for offset in offsets]}), layout)

    part.write_batch([flush(0, range(0, 40)), flush(1, range(0, 30))])
    part.write_batch([flush(0, range(20, 60))])  # rows 20-39 of Kafka partition 0 again, as after a restart
    part.close()

    assert cut_on and "MainThread" not in cut_on and all(name.startswith("delta-upload") for name in cut_on)
    assert most_cutting == [1]
    cuts = [at for at, event in enumerate(events) if event[0] == "cut"]
    assert len(cuts) == len(cut_on) and all(events[at - 1] == ("released", events[at][1], True) for at in cuts)
    main, apart = read_delta(settings, bucket), read_delta(settings, bucket, "_synthetic")
    expected = {f"p0-{offset}" for offset in range(60)} | {f"p1-{offset}" for offset in range(30)}
    assert sorted(main.column("trade_id").to_pylist() + apart.column("trade_id").to_pylist()) == sorted(expected)
    assert set(apart.column("source").to_pylist()) == {"synthetic"}
    assert set(main.column("source").to_pylist()) == {"alpaca"}
