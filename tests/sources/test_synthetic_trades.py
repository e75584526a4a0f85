from datetime import datetime, timedelta, timezone

import orjson

from marketstream.trades import Trade, parse_trade
from sources.synthetic_trades import SyntheticTrades

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
TICKERS = ["AAPL", "MSFT", "NVDA"]


def trades(block) -> list[dict]:
    return [] if block is None else [parse_trade(value) for value in block.values]


def test_rate_is_per_ticker_per_second_and_carries_fractions():
    generator = SyntheticTrades(2.0, seed=1)
    total = 0
    for step in range(1, 101):  # 10 s in 0.1 s steps
        total += len(trades(generator.generate(TICKERS, T0 + timedelta(seconds=step / 10))))
    assert abs(total - 2.0 * 3 * 10) <= 1


def test_trades_are_valid_plausible_and_ids_unique():
    generator = SyntheticTrades(1000.0, seed=2)
    rows = trades(generator.generate(TICKERS, T0)) + trades(generator.generate(TICKERS, T0 + timedelta(seconds=2)))
    assert len({r["trade_id"] for r in rows}) == len(rows) > 5000
    assert {r["ticker"] for r in rows} == set(TICKERS)
    assert all(r["source"] == "synthetic" and r["price"] > 0 and 1 <= r["size"] <= 500 for r in rows)
    low, high = (T0 - timedelta(seconds=1)).timestamp() * 1e6, (T0 + timedelta(seconds=2)).timestamp() * 1e6
    assert all(low <= r["timestamp"] <= high for r in rows)
    aapl = [r["price"] for r in rows if r["ticker"] == "AAPL"]
    assert max(aapl) / min(aapl) < 1.2  # a random walk, not noise


def test_messages_are_exactly_what_trade_to_json_writes():
    block = SyntheticTrades(100.0, seed=3).generate(["BRK.B"], T0)
    for key, value in zip(block.keys, block.values):
        row = parse_trade(value)
        same = Trade(row["ticker"], row["price"], row["size"], datetime.fromtimestamp(row["timestamp"] / 1e6, timezone.utc),
                     row["trade_id"], row["source"], row["exchange"], tuple(row["conditions"]), row["tape"])
        assert key == b"BRK.B" and same.to_json() == value
        assert orjson.loads(value)["conditions"] == (["@"] if row["size"] >= 100 else ["@", "I"])


def test_no_tickers_no_trades():
    assert SyntheticTrades(5.0).generate([], T0) is None


def test_batches_are_capped_for_load_test_rates_and_say_so():
    generator = SyntheticTrades(1_000_000.0, seed=3, max_batch=500)
    generator.generate(TICKERS, T0)
    assert len(generator.generate(TICKERS, T0 + timedelta(seconds=1))) == 500
    assert generator.saturated
