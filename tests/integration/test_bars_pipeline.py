"""The property that proves the bars: on the real stack, for every minute, the bars table equals the SQL
aggregate of the trades table over the same trades — with late and out-of-order trades, minutes written at
the end of one run and completed by the next, across a kill -9 and a restart with two workers, with and
without Bytewax recovery, after the trades topic is deleted and created again, and with several independent
deployments writing at once."""

import signal
import threading
import time
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import orjson
import pytest
from deltalake import DeltaTable

from chaos.reconcile import bars_differences
from marketstream.lake import lake_filesystem
from tests.dataflows.test_bars import tape
from tests.integration.kafka_helpers import produce
from tests.integration.test_fault_tolerance import consumer, init_recovery, log_of, recreate_topic, trade
from tests.integration.test_independent_writers import _produce_steadily


def bars_process(topic, bars_bucket, recovery=None, workers=1, **settings):
    return consumer(topic, bars_bucket, recovery, factory="bars_consume", workers=workers, **settings)


def version(uri, options) -> int:
    try:
        return DeltaTable(uri, storage_options=options).version()
    except Exception:  # noqa: BLE001 - not created yet
        return -1


@pytest.fixture
def bars_bucket(lake):
    settings, _, bucket = lake
    yield f"{bucket}-bars"
    fs = lake_filesystem(settings)
    if fs.exists(f"{bucket}-bars"):
        fs.rm(f"{bucket}-bars", recursive=True)


@pytest.mark.parametrize("recovery_on", [False, True], ids=["without-recovery", "with-recovery"])
def test_bars_equal_the_sql_aggregate_of_the_trades_table_across_a_kill_and_a_restart(lake, bars_bucket, tmp_path,
                                                                                      recovery_on):
    settings, topic, bucket = lake
    recovery = init_recovery(tmp_path / "recovery") if recovery_on else None
    keyed = keyed_tape()
    options = settings.delta_storage_options()
    bars_uri = f"s3://{bars_bucket}"

    half = len(keyed) // 2
    # the first half, to its end: the minutes still open are written as they are...
    produce(settings, topic, keyed[:half])
    early = bars_process(topic, bars_bucket, recovery)
    assert early.wait(120) == 0, log_of(early)[-2000:]
    # ...and the rest of their trades come later; restarts without recovery read the topic from its start
    produce(settings, topic, keyed[half:])
    trades = consumer(topic, bucket)
    assert trades.wait(120) == 0, log_of(trades)[-2000:]

    start = version(bars_uri, options)
    first = bars_process(topic, bars_bucket, recovery, kafka_stop_at_end=False, kafka_poll_max_messages=5,
                         batch_max_age_seconds=0.5)
    deadline = time.monotonic() + 120
    while version(bars_uri, options) < start + 3:
        assert first.poll() is None and time.monotonic() < deadline, log_of(first)[-2000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    stored_before = DeltaTable(bars_uri, storage_options=options).to_pyarrow_table().num_rows

    second = bars_process(topic, bars_bucket, recovery, workers=2)  # and another worker count
    assert second.wait(120) == 0, log_of(second)[-2000:]

    assert 0 < stored_before
    connection = assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)

    # and drawn: one candle per stored minute of the ticker-day
    from datetime import date

    from pipelines import cli
    from tests.conftest import make_settings

    aapl = connection.sql("SELECT count(*) FROM bars WHERE ticker = 'AAPL'").fetchall()[0][0]
    out = tmp_path / "AAPL.html"
    assert cli.chart(make_settings(bars_bucket=bars_bucket), "AAPL", date(2026, 11, 24), False, out) == 0
    assert out.read_text().count('class="candle ') == aapl > 0


def assert_bars_equal_the_aggregate_of_the_trades(settings, bucket: str, bars_bucket: str) -> duckdb.DuckDBPyConnection:
    """Every minute of both bars tables equals the SQL aggregate of its trades table, one row a minute."""
    options = settings.delta_storage_options()
    connection = duckdb.connect()
    for name, uri in (("trades", f"s3://{bucket}"), ("synthetic_trades", f"s3://{bucket}/_synthetic"),
                      ("bars", f"s3://{bars_bucket}"), ("synthetic_bars", f"s3://{bars_bucket}/_synthetic")):
        connection.register(name, DeltaTable(uri, storage_options=options).to_pyarrow_dataset())
    for trades_table, bars_table in (("trades", "bars"), ("synthetic_trades", "synthetic_bars")):
        assert connection.sql(f"SELECT count(*) FROM {bars_table}").fetchall()[0][0] > 10
        differences = bars_differences(connection, trades_table, bars_table)
        assert not differences, f"{len(differences)} bars differ from the SQL aggregate, e.g. {differences[:3]}"
    return connection


def keyed_tape(seed: int = 11, count: int = 4_000, shift_us: int = 0) -> list[tuple[bytes, bytes]]:
    """`tape` keyed by ticker, as the producer keys trades (one ticker's trades stay in one partition, in
    order), its event times moved by `shift_us`."""
    messages, _ = tape(seed=seed, count=count, symbols=("AAPL", "MSFT", "NVDA", "KO", "XOM", "JPM", "BRK.B", "T"))
    keyed = []
    for message in messages:
        if message.startswith(b"{") and shift_us:
            trade = orjson.loads(message)
            moment = datetime.fromisoformat(trade["timestamp"].replace("Z", "+00:00")) + timedelta(microseconds=shift_us)
            message = orjson.dumps(trade | {"timestamp": moment.isoformat().replace("+00:00", "Z")})
        keyed.append((message.split(b'"')[3] if message.startswith(b"{") else b"x", message))
    return keyed


def test_bars_equal_the_sql_aggregate_after_the_trades_topic_is_deleted_and_created_again(lake, bars_bucket):
    """The new topic's offsets start at 0 again, and its trades fall into minutes the bars table holds."""
    settings, topic, bucket = lake
    produce(settings, topic, keyed_tape(count=2_000))
    for process in (consumer(topic, bucket), bars_process(topic, bars_bucket)):
        assert process.wait(120) == 0, log_of(process)[-2000:]
    recreate_topic(settings, topic)
    # the same minutes again, a microsecond apart (so that time then offset orders trades as SQL does)
    produce(settings, topic, keyed_tape(seed=12, count=3_000, shift_us=1))
    for process in (consumer(topic, bucket), bars_process(topic, bars_bucket)):
        assert process.wait(120) == 0, log_of(process)[-2000:]
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)
    again = bars_process(topic, bars_bucket)  # a later run changes nothing
    assert again.wait(120) == 0, log_of(again)[-2000:]
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)


def test_independent_bars_deployments_fold_every_trade_once_while_trades_stream(lake, bars_bucket):
    """Three deployments of bars_consume, each batching its own way, started apart while trades stream; one
    killed mid-run and started again."""
    settings, topic, bucket = lake
    keyed = keyed_tape(count=6_000)
    options = settings.delta_storage_options()
    producer = threading.Thread(target=lambda: [produce(settings, topic, keyed[i:i + 200]) or time.sleep(0.1)
                                                for i in range(0, len(keyed), 200)], daemon=True)
    producer.start()
    ways = [{"batch_max_age_seconds": 0.5, "kafka_poll_max_messages": 50},
            {"batch_max_age_seconds": 2, "kafka_poll_max_messages": 500, "bars_batch_max_parts": 300},
            {"batch_max_age_seconds": 1, "bars_allowed_lateness_seconds": 5}]
    processes = []
    for way in ways:
        processes.append(bars_process(topic, bars_bucket, kafka_stop_at_end=False, **way))
        time.sleep(2)
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(10)
    processes[0] = bars_process(topic, bars_bucket, kafka_stop_at_end=False, **ways[0])
    producer.join()
    trades = consumer(topic, bucket)
    assert trades.wait(120) == 0, log_of(trades)[-2000:]
    expected = duckdb.connect()
    expected.register("t", DeltaTable(f"s3://{bucket}", storage_options=options).to_pyarrow_dataset())
    want = expected.sql("SELECT count(*) FROM t").fetchall()[0][0]
    deadline = time.monotonic() + 180
    while True:  # until every trade is in a bar: the last minutes close `lateness` after the last trade
        for process in processes:
            assert process.poll() is None, log_of(process)[-3000:]
        if version(f"s3://{bars_bucket}", options) >= 0:
            have = DeltaTable(f"s3://{bars_bucket}", storage_options=options).to_pyarrow_table(columns=["trades"])
            if sum(have.column("trades").to_pylist()) >= want:
                break
        assert time.monotonic() < deadline, "the bars never held every trade"
        time.sleep(1)
    time.sleep(3)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(60) == 0, log_of(process)[-3000:]
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)


def test_a_quiet_tickers_last_minute_is_written_by_the_wall_clock_while_the_flow_runs(lake, bars_bucket):
    """No later trade and no shutdown: the watermark moves on with the wall clock, the minute closes
    `BARS_ALLOWED_LATENESS_SECONDS` after its end, and its bar is written while the dataflow keeps running."""
    from datetime import timedelta

    from tests.dataflows.test_bars import OPEN, message

    settings, topic, _ = lake
    trades = [message("AAPL", OPEN + timedelta(seconds=s), f"q{s}", 100.0 + s) for s in (50, 57, 58)]
    produce(settings, topic, [(b"AAPL", m) for m in trades])
    process = bars_process(topic, bars_bucket, kafka_stop_at_end=False, bars_allowed_lateness_seconds=1,
                           batch_max_age_seconds=0.5)
    try:
        options = settings.delta_storage_options()
        deadline = time.monotonic() + 60
        while version(f"s3://{bars_bucket}", options) < 1:  # created at version 0, the minute comes after
            assert process.poll() is None and time.monotonic() < deadline, log_of(process)[-2000:]
            time.sleep(0.2)
        [bar] = DeltaTable(f"s3://{bars_bucket}", storage_options=options).to_pyarrow_table().to_pylist()
        assert (bar["ticker"], bar["trades"], bar["open"], bar["close"]) == ("AAPL", 3, 150.0, 158.0)
        assert process.poll() is None, "written while running, not at shutdown"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def rebuild(settings, topic: str, bucket: str, bars_bucket: str):
    """`marketstream rebuild-bars` of 2026-11-24, for this test's own topic and tables."""
    from dataclasses import replace
    from datetime import date

    from marketstream.datasets import STOCK
    from pipelines.bars_rebuild import rebuild_bars

    tables = {"stock": f"s3://{bucket}", "stock_synthetic": f"s3://{bucket}/_synthetic",
              "bars": f"s3://{bars_bucket}", "bars_synthetic": f"s3://{bars_bucket}/_synthetic"}
    return rebuild_bars(settings, date(2026, 11, 24), date(2026, 11, 24), dataset=replace(STOCK, topic=topic),
                        tables=tables)


def test_bars_gone_wrong_are_rebuilt_from_the_trades_table_and_the_stream_goes_on_from_there(lake, bars_bucket):
    """A bars table an earlier version left wrong (a minute lost, a volume doubled, rows without held offsets)
    is rebuilt by `marketstream rebuild-bars`; trades streamed afterwards fold into it exactly."""
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    settings, topic, bucket = lake
    options = settings.delta_storage_options()
    produce(settings, topic, keyed_tape(count=2_000))
    for process in (consumer(topic, bucket), bars_process(topic, bars_bucket)):
        assert process.wait(120) == 0, log_of(process)[-2000:]
    table = DeltaTable(f"s3://{bars_bucket}", storage_options=options)
    rows = table.to_pyarrow_table()
    wrong = rows.filter(pc.not_equal(rows.column("ticker"), "KO")).drop_columns(["held_through"])
    wrong = wrong.set_column(wrong.schema.get_field_index("volume"), "volume", pc.multiply(wrong.column("volume"), 2.0))
    wrong = wrong.append_column("held_through", pa.nulls(wrong.num_rows, rows.schema.field("held_through").type))
    write_deltalake(f"s3://{bars_bucket}", wrong, mode="overwrite", storage_options=options)
    with pytest.raises(AssertionError):
        assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)

    assert rebuild(settings, topic, bucket, bars_bucket).ahead == []
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)

    produce(settings, topic, keyed_tape(seed=13, count=1_500, shift_us=1))  # more trades in the same minutes
    for process in (consumer(topic, bucket), bars_process(topic, bars_bucket)):
        assert process.wait(120) == 0, log_of(process)[-2000:]
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)


def test_a_rebuild_leaves_the_bars_of_trades_the_trades_table_lacks_as_they_are(lake, bars_bucket):
    settings, topic, bucket = lake
    produce(settings, topic, keyed_tape(count=800))
    assert consumer(topic, bucket).wait(120) == 0
    produce(settings, topic, keyed_tape(seed=14, count=800, shift_us=1))
    assert bars_process(topic, bars_bucket).wait(120) == 0  # the trades consumer has not read these yet
    before = DeltaTable(f"s3://{bars_bucket}", storage_options=settings.delta_storage_options()).to_pyarrow_table()
    done = rebuild(settings, topic, bucket, bars_bucket)
    assert done.ahead and {table for table, _, _ in done.ahead} <= {"bars", "bars_synthetic"}
    after = DeltaTable(f"s3://{bars_bucket}", storage_options=settings.delta_storage_options()).to_pyarrow_table()
    ahead = {ticker for table, ticker, _ in done.ahead if table == "bars"}
    assert sorted(r["trades"] for r in before.to_pylist() if r["ticker"] in ahead) == \
        sorted(r["trades"] for r in after.to_pylist() if r["ticker"] in ahead)
    assert "run it again once stock_consume has caught up" in done.summary()


def test_trades_read_again_from_the_topic_are_the_trades_the_trades_table_keeps_or_a_clear_error(lake):
    """The re-read a bars writer falls back on (another writer cut a minute elsewhere): the offsets asked for,
    decoded, filtered and split into tables as stock_consume stores them; a topic created again, or trades
    past its retention, end in one clear error rather than a bar folded from fewer trades."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from pipelines.bars import TopicRange

    settings, topic, bucket = lake
    produce(settings, topic, keyed_tape(count=1_500), partition=2)
    trades = consumer(topic, bucket)
    assert trades.wait(120) == 0, log_of(trades)[-2000:]
    incarnation = settings.kafka_cluster().topic_incarnation(topic)
    reread = TopicRange(settings, topic, timeout=30)
    options = settings.delta_storage_options()
    columns = ["ticker", "timestamp", "price", "size", "kafka_offset"]
    for folder, uri in (("", f"s3://{bucket}"), ("_synthetic", f"s3://{bucket}/_synthetic")):
        stored = DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=columns + ["kafka_partition"])
        first, last = 300, 1_100
        want = sorted(row for row in zip(*(stored.column(c).to_pylist() for c in columns))
                      if first <= row[-1] <= last)
        got = reread(folder, incarnation, 2, first, last)
        assert set(got.column("kafka_partition").to_pylist()) <= {2}
        assert sorted(zip(*(got.column(c).to_pylist() for c in columns))) == want
        assert len(want) > 50
    assert reread("", incarnation, 0, 0, 10).num_rows == 0  # a partition that got nothing
    admin = AdminClient(settings.kafka_client_config())
    admin.delete_records([TopicPartition(topic, 2, 500)])[TopicPartition(topic, 2, 500)].result()
    with pytest.raises(RuntimeError, match=r"offsets 300\.\.499 are past the topic's retention: run `marketstream "
                                           r"rebuild-bars`"):
        reread("", incarnation, 2, 300, 1_100)
    assert reread("", incarnation, 2, 600, 700).num_rows > 0
    recreate_topic(settings, topic)
    with pytest.raises(RuntimeError, match=f"the topic is incarnation .* now, not {incarnation}"):
        reread("", incarnation, 2, 600, 700)


@pytest.mark.faults  # three minutes: `make test-faults`
def test_bars_of_trades_cycling_over_three_days_while_they_stream_equal_the_sql_aggregate(lake, bars_bucket):
    """Trades of 20 tickers whose event times cycle over three days and sixty minutes (every trade but a
    few is late for the newest day's minutes), every seventh synthetic, produced at 1 000/s for 40 s while
    stock_consume and bars_consume stream them; the bars are read once they hold every trade (or 150 s)."""
    settings, topic, bucket = lake

    def mixed(i: int) -> tuple[bytes, bytes]:
        key, value = trade(i)
        return key, value.replace(b'"source":"alpaca"', b'"source":"synthetic"') if i % 7 == 0 else value

    total, options = 40_000, settings.delta_storage_options()
    settings.kafka_cluster().ensure_topics([topic])
    producer = _produce_steadily(settings, topic, [mixed(i) for i in range(total)], 1_000)
    streaming = {"kafka_stop_at_end": False, "batch_max_age_seconds": 1}
    processes = [consumer(topic, bucket, **streaming), bars_process(topic, bars_bucket, **streaming)]
    producer.join()
    deadline, held = time.monotonic() + 150, 0
    while held < total and time.monotonic() < deadline:
        time.sleep(2)
        if version(f"s3://{bars_bucket}", options) >= 0 and version(f"s3://{bars_bucket}/_synthetic", options) >= 0:
            held = sum(sum(DeltaTable(f"s3://{bars_bucket}{table}", storage_options=options)
                           .to_pyarrow_table(columns=["trades"]).column("trades").to_pylist())
                       for table in ("", "/_synthetic"))
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(60) == 0, log_of(process)[-3000:]
    assert_bars_equal_the_aggregate_of_the_trades(settings, bucket, bars_bucket)
