from datetime import datetime, timedelta, timezone

from sources.synthetic_trades import SyntheticTrades

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
TICKERS = ["AAPL", "MSFT", "NVDA"]


def test_rate_is_per_ticker_per_second_and_carries_fractions():
    generator = SyntheticTrades(2.0, seed=1)
    total = 0
    for step in range(1, 101):  # 10 s in 0.1 s steps
        total += len(generator.generate(TICKERS, T0 + timedelta(seconds=step / 10)))
    assert abs(total - 2.0 * 3 * 10) <= 7  # the first call emits one inter-arrival's worth


def test_trades_are_plausible_and_ids_unique():
    generator = SyntheticTrades(1000.0, seed=2)
    trades = generator.generate(TICKERS, T0) + generator.generate(TICKERS, T0 + timedelta(seconds=2))
    assert len({t.trade_id for t in trades}) == len(trades) > 5000
    assert {t.symbol for t in trades} == set(TICKERS)
    assert all(t.source == "synthetic" and t.price > 0 and 1 <= t.size <= 500 for t in trades)
    assert all(T0 - timedelta(seconds=1) <= t.timestamp <= T0 + timedelta(seconds=2) for t in trades)
    aapl = [t.price for t in trades if t.symbol == "AAPL"]
    assert max(aapl) / min(aapl) < 1.2  # a random walk, not noise


def test_no_tickers_no_trades():
    assert SyntheticTrades(5.0).generate([], T0) == []


def test_batches_are_capped_for_load_test_rates():
    generator = SyntheticTrades(1_000_000.0, seed=3, max_batch=500)
    generator.generate(TICKERS, T0)
    assert len(generator.generate(TICKERS, T0 + timedelta(seconds=1))) == 500
