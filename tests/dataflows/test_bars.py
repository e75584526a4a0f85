"""One-minute bars built by the bars flow (TestingSource / TestingSink): merged with their corrections,
they equal the SQL aggregate of exactly the trades the trades table keeps, whatever the lateness and the
split of the input into polls."""

import random
from datetime import datetime, timedelta, timezone

import duckdb
import orjson
import pyarrow as pa
from bytewax.testing import TestingSink, TestingSource, run_main

from marketstream.bars import MINUTE_US, Bar
from pipelines.bars import build_bars_flow
from sources.kafka_topic import PolledMessages
from tests.conftest import make_settings

OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)  # 09:30 in New York


def message(symbol: str, at: datetime, trade_id: str, price: float, size: float = 10, source: str = "alpaca") -> bytes:
    return orjson.dumps({"symbol": symbol, "price": price, "size": size,
                         "timestamp": at.isoformat().replace("+00:00", "Z"), "trade_id": trade_id,
                         "source": source, "exchange": "V", "conditions": ["@"]})


def tape(seed: int = 7) -> tuple[list[bytes], list[dict]]:
    """Trades of three tickers over ten minutes, some out of order within the lateness, some much later,
    synthetic ones, plus messages the trades table does not keep; and the trades it keeps."""
    rnd = random.Random(seed)
    messages, kept = [], []
    clock = OPEN
    for n in range(600):
        clock += timedelta(milliseconds=rnd.randint(200, 1800))
        symbol = rnd.choice(["AAPL", "MSFT", "NVDA"])
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


def run(messages: list[bytes], poll_sizes: list[int], stored=None) -> list:
    polls, start, i = [], 0, 0
    while start < len(messages):
        size = poll_sizes[i % len(poll_sizes)]
        end = min(start + size, len(messages))
        polls.append(PolledMessages("stock_trades", 0, list(range(start, end)), [b"k"] * (end - start),
                                    messages[start:end]))
        start, i = end, i + 1
    out = []
    run_main(build_bars_flow(make_settings(bars_allowed_lateness_seconds=30), source=TestingSource(polls),
                             sink=TestingSink(out), stored=stored))
    return out


def merged(parts) -> dict:
    bars = {}
    for key, (_, bar) in parts:
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


def test_bars_with_their_corrections_equal_the_sql_aggregate_of_the_kept_trades():
    messages, kept = tape()
    parts = run(messages, [50])
    assert any(kind == "late" for _, (kind, _) in parts), "the tape has trades beyond the lateness"
    bars, expected = merged(parts), sql_bars(kept)
    assert bars.keys() == expected.keys()
    for slot, (open_, high, low, close, volume, count, vwap) in expected.items():
        bar = bars[slot]
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (open_, high, low, close, volume, count)
        assert abs(bar.vwap - vwap) <= 1e-9 * vwap


def per_key(parts) -> dict:
    sequences = {}
    for key, part in parts:
        sequences.setdefault(key, []).append(part)
    return sequences


def test_the_same_trades_in_other_polls_give_the_same_parts():
    messages, _ = tape(seed=3)
    assert per_key(run(messages, [50])) == per_key(run(messages, [1, 7, 300]))


def test_a_minute_is_emitted_once_a_trade_lateness_newer_arrives_and_not_before():
    messages = [message("AAPL", OPEN + timedelta(seconds=10), "a", 100.0),
                message("AAPL", OPEN + timedelta(seconds=89), "b", 101.0),   # watermark 59 s: 14:30 still open
                message("AAPL", OPEN + timedelta(seconds=50), "c", 99.0),    # in time for 14:30
                message("AAPL", OPEN + timedelta(seconds=91), "d", 102.0),   # watermark 61 s: 14:30 closes
                message("AAPL", OPEN + timedelta(seconds=55), "e", 98.0)]    # late: a correction
    parts = run(messages, [1])
    kinds = [(kind, bar.minute, bar.trades, bar.open, bar.close) for _, (kind, bar) in parts]
    assert kinds == [("closed", OPEN, 2, 100.0, 99.0),
                     ("late", OPEN, 1, 98.0, 98.0),
                     ("closed", OPEN + timedelta(minutes=1), 2, 101.0, 102.0)]


def test_after_a_restart_only_the_trades_the_table_lacks_are_folded_again():
    messages = [message("AAPL", OPEN + timedelta(seconds=s), f"t{s}", 100.0 + s) for s in (1, 2, 3, 4)]
    messages.append(message("AAPL", OPEN + timedelta(seconds=95), "later", 99.0))  # closes 14:30
    held = {("|AAPL", int((OPEN - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))): 1}
    parts = run(messages, [2], stored=lambda key, minute: held.get((key, minute), -1))
    first = parts[0][1][1]
    assert (first.trades, first.first_offset, first.last_offset, first.open, first.close) == (2, 2, 3, 103.0, 104.0)


def test_an_open_minute_restored_from_an_older_snapshot_is_dropped_once_the_table_holds_it():
    from pipelines.bars import BarBuilder, BarsState

    minute = int((OPEN - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
    restored = BarsState({minute: Bar.of_trade(minute + 1, 0, "a", 100.0, 1.0)}, minute + 1)
    # after the snapshot the minute was stored through offset 2 (trades 0-2); then the process died
    builder = BarBuilder(timedelta(seconds=30), restored, stored=lambda key, m: 2 if m == minute else -1)
    parts = builder.fold("|AAPL", [(minute + 2_000_000, 1, "b", 101.0, 1.0), (minute + 3_000_000, 2, "c", 102.0, 1.0),
                                   (minute + 4_000_000, 3, "d", 103.0, 1.0)])
    parts += builder.on_eof()[0]
    assert [(kind, bar.trades, bar.first_offset, bar.open) for kind, bar in parts] == [("closed", 1, 3, 103.0)]
