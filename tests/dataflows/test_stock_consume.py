"""stock_consume wired with TestingSource / TestingSink: what goes to the lake, the DLQ, or is skipped."""

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from marketstream.datasets import STOCK
from pipelines.consumer import SkipCounter, build_consumer_flow
from sources.kafka_topic import PolledMessages
from tests.conftest import lake_files, make_settings

REPO = Path(__file__).resolve().parents[2]


def trade(symbol="AAPL", ts="2026-11-24T15:30:00Z", source="alpaca", trade_id="1", price=100.0) -> bytes:
    return orjson.dumps({"symbol": symbol, "price": price, "size": 10, "timestamp": ts,
                         "trade_id": trade_id, "source": source, "exchange": "V", "conditions": ["@"]})


def run(values: list[tuple[int, bytes]], workers: int = 1, **settings):
    """Messages as (Kafka partition, value); the offset is the position in the list."""
    batches = [PolledMessages("stock_trades", partition, [offset], [b"k"], [value])
               for offset, (partition, value) in enumerate(values)]
    lake, dead = [], []
    flow = build_consumer_flow(
        STOCK, make_settings(**settings),
        source=TestingSource(batches), lake_sink=TestingSink(lake), dead_letter_sink=TestingSink(dead),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    views = [SimpleNamespace(prefix=b.prefix, kafka_partition=b.kafka_partition, rows=b.table.to_pylist())
             for b in lake_files(lake)]
    return views, dead


def test_valid_trades_are_batched_per_ticker_date_and_kafka_partition():
    lake, dead = run([
        (0, trade("AAPL", trade_id="a1")),
        (1, trade("AAPL", trade_id="a2")),
        (0, trade("AAPL", trade_id="a3")),
        (0, trade("MSFT", ts="2026-11-25T15:30:00Z", trade_id="m1")),
    ])
    assert dead == []
    got = {(b.prefix, b.kafka_partition): sorted(r["trade_id"] for r in b.rows) for b in lake}
    assert got == {
        ("ticker=AAPL/date=2026-11-24", 0): ["a1", "a3"],
        ("ticker=AAPL/date=2026-11-24", 1): ["a2"],
        ("ticker=MSFT/date=2026-11-25", 0): ["m1"],
    }
    row = next(r for b in lake for r in b.rows if r["trade_id"] == "a3")
    assert (row["kafka_partition"], row["kafka_offset"]) == (0, 2)
    assert "date" not in row and "ticker" not in row  # partition columns live in the path


def test_invalid_messages_go_to_the_dead_letter_topic_with_reason_and_origin():
    lake, dead = run([(2, b"not json"), (2, trade(price=-1.0)), (2, trade(symbol="../x")), (2, trade())])
    assert sum(len(b.rows) for b in lake) == 1
    assert [m.value for m in dead] == [b"not json", trade(price=-1.0), trade(symbol="../x")]
    headers = [dict(m.headers()) for m in dead]
    assert headers[0]["dlq.reason"].startswith(b"not valid JSON")
    assert headers[0]["dlq.dataset"] == b"stock"
    assert headers[1]["dlq.reason"] == b"field 'price' must be finite and > 0, got -1.0"
    assert b"not a valid ticker" in headers[2]["dlq.reason"]
    assert [(h["dlq.topic"], h["dlq.partition"], h["dlq.offset"]) for h in headers] == [
        (b"stock_trades", b"2", b"0"), (b"stock_trades", b"2", b"1"), (b"stock_trades", b"2", b"2")
    ]
    assert all(m.key == b"k" for m in dead)


def test_real_trades_outside_the_session_are_not_stored_but_synthetic_ones_are_kept_apart():
    lake, dead = run([
        (0, trade(ts="2026-11-24T13:00:00Z", trade_id="premarket")),
        (0, trade(ts="2025-11-27T16:00:00Z", trade_id="thanksgiving")),
        (0, trade(ts="2026-11-24T03:00:00Z", source="synthetic", trade_id="night")),
        (0, trade(trade_id="regular")),
    ])
    assert dead == []
    stored = {r["trade_id"]: b.prefix for b in lake for r in b.rows}
    assert stored == {"night": "_synthetic/ticker=AAPL/date=2026-11-23", "regular": "ticker=AAPL/date=2026-11-24"}


def test_synthetic_prefix_can_be_turned_off():
    lake, _ = run([(0, trade(source="synthetic"))], stock_synthetic_prefix="")
    assert [b.prefix for b in lake] == ["ticker=AAPL/date=2026-11-24"]


def test_batches_split_at_the_row_limit():
    lake, _ = run([(0, trade(trade_id=str(i))) for i in range(7)], batch_max_rows=3)
    assert sorted(len(b.rows) for b in lake) == [1, 3, 3]


def test_a_poll_of_many_tickers_becomes_one_file_per_ticker_with_rows_in_offset_order():
    symbols = ["MSFT", "AAPL", "NVDA"]
    values = [trade(symbols[i % 3], trade_id=str(i)) for i in range(30)]
    batch = PolledMessages("stock_trades", 2, list(range(100, 130)), [b"k"] * 30, values)
    lake = []
    flow = build_consumer_flow(STOCK, make_settings(), source=TestingSource([batch]),
                               lake_sink=TestingSink(lake), dead_letter_sink=TestingSink([]))
    run_main(flow)
    files = {b.prefix: b.table.to_pydict() for b in lake_files(lake)}
    assert sorted(files) == [f"ticker={s}/date=2026-11-24" for s in sorted(symbols)]
    for position, symbol in enumerate(symbols):
        rows = files[f"ticker={symbol}/date=2026-11-24"]
        assert rows["kafka_offset"] == list(range(100 + position, 130, 3))
        assert rows["trade_id"] == [str(i) for i in range(position, 30, 3)]
        assert set(rows["kafka_partition"]) == {2}
    assert [key for key, _ in lake] == ["2"]  # one flush of Kafka partition 2, committed as one


def test_every_file_of_a_poll_of_many_tickers_and_both_sources_holds_only_its_own_trades():
    """Rows are cut into files by runs of their sorted partition values; Arrow's group_by returns such runs
    out of order, which once put trades into another ticker's file (and real ones among synthetic)."""
    symbols = [f"T{n}" for n in (0, 1, 12, 13, 15, 18, 19, 8, 9, 2, 21, 3)]
    values = [trade(symbols[(i * 7) % len(symbols)], trade_id=f"{symbols[(i * 7) % len(symbols)]}-{i}",
                    source="synthetic" if i % 5 == 0 else "alpaca") for i in range(240)]
    batch = PolledMessages("stock_trades", 0, list(range(240)), [b"k"] * 240, values)
    lake = []
    run_main(build_consumer_flow(STOCK, make_settings(), source=TestingSource([batch]),
                                 lake_sink=TestingSink(lake), dead_letter_sink=TestingSink([])))
    files = lake_files(lake)
    assert len(files) == 2 * len(symbols) and sum(f.table.num_rows for f in files) == 240
    for file in files:
        ticker = dict(file.partition_values)["ticker"]
        synthetic = file.prefix.startswith("_synthetic/")
        ids = file.table.column("trade_id").to_pylist()
        assert {i.split("-")[0] for i in ids} == {ticker}, file.prefix
        assert {int(i.split("-")[1]) % 5 == 0 for i in ids} == {synthetic}, file.prefix


@pytest.mark.parametrize("workers", [1, 3])
def test_a_short_run_logs_how_many_trades_it_did_not_store_when_it_ends(caplog, workers):
    with caplog.at_level(logging.INFO, logger="pipelines.consumer"):
        run([(0, trade(ts="2026-11-24T13:00:00Z", trade_id="premarket")),
             (1, trade(ts="2026-11-24T22:00:00Z", trade_id="after hours")),
             (0, trade(trade_id="regular"))], workers=workers)
    assert [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()] == [
        "stock: not stored in this run: 2 rows outside the NYSE regular session"]


def test_skips_are_logged_every_interval_while_they_come(caplog):
    now = [0.0]
    counter = SkipCounter("stock", interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="pipelines.consumer"):
        for second in range(0, 31, 5):
            now[0] = float(second)
            counter.add("outside the NYSE regular session", 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"stock: not stored so far: {n} rows outside the NYSE regular session" for n in (3, 5, 7)]


def test_the_first_batch_after_a_start_loads_no_library_and_the_consumer_never_holds_pandas():
    """Libraries load at start: one loaded by the first batch delays every restart's first commit. pandas,
    which pyarrow imports on its first `pa.array` unless told at start it is absent, is not loaded at all
    (36 MB), neither are the exchange calendars (real trades are checked against the shipped sessions);
    what asks for pandas outright still gets it."""
    script = """
import sys
import threading
from bytewax.testing import TestingSink, TestingSource, run_main
from marketstream.datasets import STOCK
from pipelines.consumer import build_consumer_flow
from sources.kafka_topic import PolledMessages
from tests.conftest import make_settings
from tests.dataflows.test_stock_consume import trade
values = [trade(trade_id=str(i), source="synthetic", ts="2026-11-24T23:30:00Z") for i in range(10)]
values += [trade(trade_id=str(i), source="alpaca", ts=f"2026-11-2{4 + 2 * (i % 2)}T15:00:00Z") for i in range(10, 20)]
lake = []
flow = build_consumer_flow(STOCK, make_settings(), source=TestingSource([PolledMessages("stock_trades", 0,
    list(range(20)), [b"k"] * 20, values)]), lake_sink=TestingSink(lake), dead_letter_sink=TestingSink([]))
for thread in threading.enumerate():
    if thread.name == "stock-prepare":  # the calendar, loaded at start on a thread of its own
        thread.join()
before = set(sys.modules)
run_main(flow)
assert lake, "nothing reached the lake"
print(" ".join(sorted(set(sys.modules) - before)))
rows = sum(flush.rows.num_rows for _, flush in lake)
assert rows == 15, rows  # the synthetic trades and the real ones of the 24th; the 26th was Thanksgiving
assert not [m for m in ("pandas", "pandas_market_calendars") if m in sys.modules], "loaded"
import pyarrow as pa
assert type(pa.table({"a": [1]}).to_pandas()).__name__ == "DataFrame"
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.split()
    assert [name for name in loaded if not name.startswith("pyarrow.")] == [], loaded  # pyarrow's own shims only


def test_the_dataset_is_prepared_on_a_thread_of_its_own_and_a_failed_preparation_is_only_logged(caplog):
    import dataclasses
    import threading

    ran_on = []
    prepared = threading.Event()

    def prepare():
        ran_on.append(threading.current_thread().name)
        prepared.set()

    build_consumer_flow(dataclasses.replace(STOCK, prepare=prepare), make_settings(), source=TestingSource([]),
                        lake_sink=TestingSink([]), dead_letter_sink=TestingSink([]))
    assert prepared.wait(10) and ran_on == ["stock-prepare"]

    def fail():
        prepared.clear()
        raise OSError("no exchange calendar")

    lake, dead = [], []
    with caplog.at_level(logging.WARNING, logger="pipelines.consumer"):
        flow = build_consumer_flow(dataclasses.replace(STOCK, prepare=fail), make_settings(),
                                   source=TestingSource([PolledMessages("stock_trades", 0, [0], [b"k"], [trade()])]),
                                   lake_sink=TestingSink(lake), dead_letter_sink=TestingSink(dead))
        run_main(flow)
        for _ in range(100):
            if "preparing ahead failed" in caplog.text:
                break
            threading.Event().wait(0.05)
    assert "stock: preparing ahead failed, done when needed: no exchange calendar" in caplog.text
    assert sum(len(batch.table) for batch in lake_files(lake)) == 1 and dead == []
