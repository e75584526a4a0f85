"""One-minute bars built by the bars flow (TestingSource / TestingSink): merged with their corrections,
they equal the SQL aggregate of exactly the trades the trades table keeps, whatever the lateness and the
split of the input into polls."""

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import orjson
import pytest
import pyarrow as pa
from bytewax.testing import TestingSink, TestingSource, run_main

from marketstream import metrics
from marketstream.bars import MINUTE_US, Bar
from pipelines.bars import StoredBars, TradeTimeClock, build_bars_flow, restored_minute
from sources.kafka_topic import PolledMessages
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]

OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)  # 09:30 in New York


def message(symbol: str, at: datetime, trade_id: str, price: float, size: float = 10, source: str = "alpaca") -> bytes:
    return orjson.dumps({"symbol": symbol, "price": price, "size": size,
                         "timestamp": at.isoformat().replace("+00:00", "Z"), "trade_id": trade_id,
                         "source": source, "exchange": "V", "conditions": ["@"]})


def tape(seed: int = 7, count: int = 600, symbols=("AAPL", "MSFT", "NVDA")) -> tuple[list[bytes], list[dict]]:
    """`count` trades of `symbols`, about one a second (600: ten minutes), some out of order within the
    lateness, some much later, synthetic ones, plus messages the trades table does not keep; and the trades
    it keeps."""
    rnd = random.Random(seed)
    messages, kept = [], []
    clock = OPEN
    for n in range(count):
        clock += timedelta(milliseconds=rnd.randint(200, 1800))
        symbol = rnd.choice(symbols)
        at = clock - timedelta(seconds=rnd.choice([0, 0, 0, 5, 20]))  # out of order within 30 s
        if n % 97 == 0 and n > 150:
            at = clock - timedelta(minutes=2)  # far beyond the lateness, still in the session: a correction
        source = "synthetic" if n % 11 == 0 else "alpaca"
        price, size = round(rnd.uniform(90, 110), 2), float(rnd.randint(1, 500))
        messages.append(message(symbol, at, f"t{n}", price, size, source))
        if source == "alpaca" and at < OPEN:
            continue  # a real trade before the open: the trades table skips it, so do bars
        kept.append({"table": "_synthetic" if source == "synthetic" else "", "ticker": symbol,
                     "ts": int((at - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)),
                     "offset": len(messages) - 1, "trade_id": f"t{n}", "price": price, "size": size})
    messages.append(b"not json")
    messages.append(message("AAPL", OPEN - timedelta(hours=2), "pre", 100.0))  # real, before the open: skipped
    return messages, kept


INCARNATION = "topic-id"
FIXED_NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)  # the wall clock stands still: watermarks move with trades only


def as_bars(folder: str, parts: pa.Table) -> list[tuple[str, Bar]]:
    def us(moment: datetime) -> int:
        return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)

    return [(f"{folder}|{r['ticker']}",
             Bar(us(r["minute"]), (us(r["open_ts"]), r["open_offset"], ""), r["open"], (us(r["close_ts"]), r["close_offset"], ""),
                 r["close"], r["high"], r["low"], r["volume"], r["trades"], r["notional"], r["first_offset"],
                 r["last_offset"]))
            for r in parts.to_pylist()]


def late_trades() -> float:
    return sum(metrics.BARS_LATE_TRADES.labels(table)._value.get() for table in ("/", "_synthetic"))


def run(messages: list[bytes], poll_sizes: list[int], stored: StoredBars | None = None, **settings) -> list:
    """The flow over `messages` in polls of `poll_sizes` (cycled); its parts as `(key, Bar)`, in the order
    they were emitted."""
    polls, start, i = [], 0, 0
    while start < len(messages):
        size = poll_sizes[i % len(poll_sizes)]
        end = min(start + size, len(messages))
        polls.append(PolledMessages("stock_trades", 0, list(range(start, end)), [b"k"] * (end - start),
                                    messages[start:end], INCARNATION))
        start, i = end, i + 1
    out = []
    run_main(build_bars_flow(make_settings(bars_allowed_lateness_seconds=30, **settings), source=TestingSource(polls),
                             sink=TestingSink(out), stored=stored, now=lambda: FIXED_NOW))
    return [part for _, (folder, parts) in out for part in as_bars(folder, parts)]


def merged(parts) -> dict:
    bars = {}
    for key, bar in parts:
        slot = (key, bar.minute_us)
        bars[slot] = bars[slot].merge(bar) if slot in bars else bar
    return bars


def sql_bars(kept: list[dict]) -> dict:
    connection = duckdb.connect()
    connection.register("trades", pa.Table.from_pylist(kept))
    rows = connection.sql(f"""
        SELECT "table" || '|' || ticker AS key, ts - ts % {MINUTE_US} AS minute,
               first(price ORDER BY ts, "offset") AS open, max(price) AS high, min(price) AS low,
               last(price ORDER BY ts, "offset") AS close, sum(size) AS volume, count(*) AS trades,
               sum(price * size) / sum(size) AS vwap
        FROM trades GROUP BY ALL""").fetchall()
    return {(key, minute): rest for key, minute, *rest in rows}


@pytest.mark.parametrize("poll_sizes", [[1], [50], [7, 300], [10_000]], ids=["1", "50", "7-300", "all"])
def test_bars_with_their_corrections_equal_the_sql_aggregate_of_the_kept_trades(poll_sizes):
    messages, kept = tape()
    late_before = late_trades()
    parts = run(messages, poll_sizes)
    if len(poll_sizes) == 1 and poll_sizes[0] <= 50:  # windows close between such polls: later trades are late
        assert late_trades() > late_before, "the tape has trades beyond the lateness"
    bars, expected = merged(parts), sql_bars(kept)
    assert bars.keys() == expected.keys()
    for slot, (open_, high, low, close, volume, count, vwap) in expected.items():
        bar = bars[slot]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (open_, high, low, close, volume, count)
        assert abs(bar.vwap - vwap) <= 1e-9 * vwap


def test_many_tickers_in_six_kafka_partitions_polled_500_at_a_time_give_the_sql_aggregate():
    """A poll spans many minutes, tickers and both tables: each run of its bar rows keeps its own table and
    minute (Arrow's group_by once reordered them, putting synthetic trades into real bars)."""
    symbols = ("AAPL", "MSFT", "NVDA", "KO", "XOM", "JPM", "BRK.B", "T")
    messages, kept = tape(seed=11, count=4_000, symbols=symbols)
    by_partition: dict[int, list[bytes]] = {}
    for value in messages:
        symbol = value.split(b'"')[3].decode() if value.startswith(b"{") else "AAPL"
        by_partition.setdefault(symbols.index(symbol) % 6, []).append(value)
    polls = [PolledMessages("stock_trades", partition, list(range(start, min(start + 500, len(values)))),
                            [b"k"] * len(values[start:start + 500]), values[start:start + 500], INCARNATION)
             for start in range(0, 4_100, 500) for partition, values in sorted(by_partition.items()) if start < len(values)]
    out = []
    run_main(build_bars_flow(make_settings(), source=TestingSource(polls), sink=TestingSink(out), now=lambda: FIXED_NOW))
    bars, expected = merged([part for _, (folder, parts) in out for part in as_bars(folder, parts)]), sql_bars(kept)
    assert bars.keys() == expected.keys()
    for slot, (open_, high, low, close, volume, count, _) in expected.items():
        bar = bars[slot]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (open_, high, low, close, volume, count)


def test_a_batch_holds_at_most_the_parts_setting_allows():
    messages, _ = tape()
    polls = []
    out = []
    for start in range(0, len(messages), 50):
        polls.append(PolledMessages("stock_trades", 0, list(range(start, min(start + 50, len(messages)))),
                                    [b"k"] * 50, messages[start:start + 50]))
    run_main(build_bars_flow(make_settings(bars_batch_max_parts=7), source=TestingSource(polls),
                             sink=TestingSink(out), now=lambda: FIXED_NOW))
    # flushed as the process holds more than 7 parts, not only at the end (one batch per table)
    assert len(out) > 10 and max(parts.num_rows for _, (_, parts) in out) < 20


def test_a_minute_closes_once_a_trade_lateness_newer_arrives_and_only_trades_of_a_closed_minute_are_corrections():
    """A trade older than the watermark whose minute is still open goes into its window: a correction reaching
    the table before its window's bars would make the table take those bars for trades it holds."""
    messages = [message("AAPL", OPEN + timedelta(seconds=10), "a", 100.0),
                message("AAPL", OPEN + timedelta(seconds=89), "b", 101.0),   # watermark 59 s: 14:30 still open
                message("AAPL", OPEN + timedelta(seconds=59.5), "c", 99.0),  # in time
                message("AAPL", OPEN + timedelta(seconds=50), "d", 97.0),    # older than the watermark, 14:30 open
                message("AAPL", OPEN + timedelta(seconds=91), "e", 102.0),   # watermark 61 s: 14:30 closes
                message("AAPL", OPEN + timedelta(seconds=55), "f", 98.0)]    # its minute closed: a correction
    late_before = late_trades()
    parts = run(messages, [1])
    assert [(bar.minute, bar.trades, bar.open, bar.close) for _, bar in parts] == [
        (OPEN, 3, 100.0, 99.0),  # 14:30's window: a, c and d
        (OPEN, 1, 98.0, 98.0),  # f, after it
        (OPEN + timedelta(minutes=1), 2, 101.0, 102.0)]  # 14:31 at the end of input
    assert late_trades() - late_before == 1


def stored_table(rows: list[tuple[str, int, int]]) -> StoredBars:
    """A bars table holding `rows` (ticker, minute in µs, offset held of partition 0) in its root folder."""
    table = pa.table({"ticker": [r[0] for r in rows], "minute": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                      "incarnation": [INCARNATION] * len(rows), "kafka_partition": pa.array([0] * len(rows), pa.int32()),
                      "offset": pa.array([r[2] for r in rows], pa.int64())})
    return StoredBars(lambda folder, day: table if folder == "" else table.slice(0, 0))


OPEN_US = int((OPEN - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))


@pytest.mark.parametrize("poll_sizes", [[1], [2], [10]])
def test_after_a_restart_only_the_trades_the_table_lacks_are_folded_again(poll_sizes):
    messages = [message("AAPL", OPEN + timedelta(seconds=s), f"t{s}", 100.0 + s) for s in (1, 2, 3, 4)]
    messages.append(message("AAPL", OPEN + timedelta(seconds=95), "later", 99.0))  # closes 14:30
    messages.append(message("AAPL", OPEN + timedelta(seconds=5), "late", 90.0))  # offset 5: 14:30 lacks it
    messages.append(message("MSFT", OPEN + timedelta(seconds=5), "m", 50.0))  # a ticker the table lacks
    stored = stored_table([("AAPL", OPEN_US, 1), ("AAPL", OPEN_US + MINUTE_US, 4)])
    bars = merged(run(messages, poll_sizes, stored))
    first = bars[("|AAPL", OPEN_US)]  # offsets 2, 3 and 5; 0 and 1 are held
    assert (first.trades, first.first_offset, first.last_offset, first.open, first.close) == (3, 2, 5, 103.0, 90.0)
    assert ("|AAPL", OPEN_US + 60_000_000) not in bars  # offset 4 is held by its minute
    assert bars[("|MSFT", OPEN_US)].trades == 1


def trades_at(*rows: tuple[str, int, int, float]) -> pa.Table:
    """Trades (ticker, µs, offset, price) of partition 0."""
    return pa.table({"ticker": [r[0] for r in rows], "date": pa.array([OPEN.date()] * len(rows), pa.date32()),
                     "timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                     "kafka_partition": pa.array([0] * len(rows), pa.int32()),
                     "kafka_offset": pa.array([r[2] for r in rows], pa.int64()),
                     "price": [r[3] for r in rows], "size": [1.0] * len(rows)})


def test_an_open_minute_restored_from_an_older_snapshot_is_dropped_once_the_table_holds_it():
    from marketstream.bars import trade_parts

    restored = ("|0", [trade_parts(trades_at(("AAPL", OPEN_US + 1, 0, 100.0), ("MSFT", OPEN_US + 1, 1, 50.0)), INCARNATION)])
    # after the snapshot AAPL's minute was stored through offset 2 (trades 0-2); then the process died
    logic = restored_minute(stored_table([("AAPL", OPEN_US, 2)]), restored)
    [(_, _, kept)] = logic.on_close()
    assert kept.column("ticker").to_pylist() == ["MSFT"]
    logic = restored_minute(stored_table([("AAPL", OPEN_US, 2)]), restored)
    logic.on_value(("|0", OPEN_US + 4_000_000, trade_parts(trades_at(("AAPL", OPEN_US + 4_000_000, 3, 103.0)), INCARNATION)))
    [(key, _, bars)] = logic.on_close()
    by_ticker = {key.split("|")[1]: bar for key, bar in as_bars("", bars)}
    assert (by_ticker["AAPL"].trades, by_ticker["AAPL"].first_offset, by_ticker["AAPL"].open) == (1, 3, 103.0)
    assert by_ticker["MSFT"].trades == 1
    # a minute the table does not hold yet is kept as restored
    kept = restored_minute(stored_table([("AAPL", OPEN_US + MINUTE_US, 9)]), restored)
    [(_, _, bars)] = kept.on_close()
    assert bars.num_rows == 2


def test_a_quiet_tickers_minute_closes_lateness_after_its_end_by_the_wall_clock():
    wall = [FIXED_NOW]
    clock = TradeTimeClock(timedelta(seconds=30), now=lambda: wall[0]).build(None)
    assert clock.to_system_utc(OPEN + timedelta(minutes=1)) is None  # nothing seen: no wake-up
    timestamp, watermark = clock.on_item(("|0", OPEN_US + 45_000_000, pa.table({})))
    # a part stands at its minute's last microsecond, judged by the watermark windows were last closed at
    assert (timestamp, watermark) == (OPEN + timedelta(minutes=1, microseconds=-1), datetime.min.replace(tzinfo=timezone.utc))
    # the window 14:30-14:31 closes when the watermark reaches 14:31: 45 s of wall time later
    wake = clock.to_system_utc(OPEN + timedelta(minutes=1))
    assert wake == FIXED_NOW + timedelta(seconds=45)
    wall[0] = wake - timedelta(seconds=1)
    assert clock.on_notify() < OPEN + timedelta(minutes=1)
    wall[0] = wake
    assert clock.on_notify() == OPEN + timedelta(minutes=1)
    # restored from its snapshot an hour later, it has moved on by that hour
    later = TradeTimeClock(timedelta(seconds=30), now=lambda: wake + timedelta(hours=1)).build(clock.snapshot())
    assert later.on_notify() == OPEN + timedelta(hours=1, minutes=1)


def test_stored_bars_are_read_once_per_table_and_day_and_the_oldest_are_let_go():
    reads = []
    held = stored_table([("AAPL", OPEN_US, 5)])

    def load(folder, day):
        reads.append((folder, day))
        return held._load("", day)

    stored = StoredBars(load, keep=2)
    trades = trades_at(("AAPL", OPEN_US + 1, 5, 1.0), ("AAPL", OPEN_US + 2, 6, 1.0))
    assert stored.unstored("", trades, INCARNATION).column("kafka_offset").to_pylist() == [6]
    assert stored.unstored("", trades, INCARNATION).num_rows == 1 and reads == [("", OPEN.date())]
    assert stored.unstored("", trades, "another-incarnation").num_rows == 2  # a recreated topic: nothing held
    for n in (1, 2):  # two other days: the first is let go, and read again when needed
        stored.unstored("", trades.set_column(1, "date", pa.array([OPEN.date() + timedelta(days=n)] * 2, pa.date32())),
                        INCARNATION)
    assert stored.unstored("", trades, INCARNATION).num_rows == 1 and len(reads) == 4


def test_a_short_bars_run_logs_how_many_trades_it_left_out_when_it_ends(caplog):
    import logging

    messages = [message("AAPL", OPEN - timedelta(hours=2), "pre", 100.0),  # real, before the open
                message("AAPL", OPEN + timedelta(seconds=1), "in", 100.0)]
    with caplog.at_level(logging.INFO, logger="pipelines.consumer"):
        run(messages, [10])
    assert [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()] == [
        "bars: not stored in this run: 1 rows outside the NYSE regular session"]


def test_the_bars_flow_prepares_the_trades_dataset_on_a_thread_of_its_own(monkeypatch):
    import dataclasses
    import threading

    import pipelines.bars

    prepared_on = []
    done = threading.Event()
    monkeypatch.setattr(pipelines.bars, "STOCK", dataclasses.replace(
        pipelines.bars.STOCK, prepare=lambda: (prepared_on.append(threading.current_thread().name), done.set())))
    build_bars_flow(make_settings(), source=TestingSource([]), sink=TestingSink([]), now=lambda: FIXED_NOW)
    assert done.wait(10) and prepared_on == ["stock-prepare"]


def test_the_bars_consumer_never_holds_pandas():
    """pyarrow would import pandas (36 MB) on its first `pa.array`, and on importing `pyarrow.dataset`,
    which the bars sink reads stored bars with: the flow tells it at start that pandas is absent."""
    script = """
import sys
from datetime import datetime, timezone
from bytewax.testing import TestingSink, TestingSource, run_main
from pipelines.bars import build_bars_flow
from sources.kafka_topic import PolledMessages
from tests.conftest import make_settings
from tests.dataflows.test_stock_consume import trade
assert "pandas" not in sys.modules, "loaded by the imports"
values = [trade(trade_id=str(i), ts=f"2026-11-24T15:0{i}:00Z") for i in range(5)]
out = []
flow = build_bars_flow(make_settings(), source=TestingSource([PolledMessages("stock_trades", 0, list(range(5)),
    [b"k"] * 5, values, "incarnation")]), sink=TestingSink(out), now=lambda: datetime(2026, 11, 24, 16, tzinfo=timezone.utc))
import pyarrow.dataset
run_main(flow)
assert sum(parts.num_rows for _, (_, parts) in out) == 5, out
assert "pandas" not in sys.modules, "loaded"
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
