"""The auto source switches between synthetic and Alpaca at NYSE session open and close."""

from datetime import datetime, timedelta, timezone

import pytest

from marketstream.companies import Company, CompanyDirectory
from marketstream.trades import Trade, parse_trade
from marketstream.messages import MessageBlock
from sources.stock_trades import StockTradeSource


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeAlpaca:
    instances: list["FakeAlpaca"] = []

    def __init__(self):
        self.followed: list[str] = []
        self.closed = False
        FakeAlpaca.instances.append(self)

    def follow(self, symbols):
        self.followed = list(symbols)

    def drain(self):
        return [Trade(s, 1.0, 1.0, datetime.now(timezone.utc), "live", "alpaca") for s in self.followed]

    def close(self):
        self.closed = True


def sources_of(items) -> set[str]:
    """The `source` of every trade in a batch of Trade objects and synthetic message blocks."""
    found = set()
    for item in items:
        if isinstance(item, MessageBlock):
            found |= {parse_trade(value)["source"] for value in item.values}
        else:
            found.add(item.source)
    return found


def tickers_of(items) -> set[str]:
    return {parse_trade(value)["ticker"] for item in items for value in item.values}


def directory(tickers):
    return CompanyDirectory(lambda: [Company(t, t, ()) for t in tickers], refresh_seconds=300)


@pytest.fixture(autouse=True)
def _reset():
    FakeAlpaca.instances.clear()


def build(mode="auto", keys=True, worker=(0, 1), start=datetime(2026, 11, 24, 14, 29, 59, tzinfo=timezone.utc)):
    clock = Clock(start)
    source = StockTradeSource(directory(["AAPL", "MSFT", "TSLA"]), mode=mode, synthetic_trades_per_second=50,
                              alpaca_stream=FakeAlpaca if keys else None, now=clock)
    return source.build("trades", *worker), clock


def test_auto_streams_alpaca_only_while_the_session_is_open():
    part, clock = build()
    assert sources_of(part.next_batch()) <= {"synthetic"}
    clock.now += timedelta(seconds=1)  # 09:30 ET
    assert sources_of(part.next_batch()) == {"alpaca"}
    assert FakeAlpaca.instances[0].followed == ["AAPL", "MSFT", "TSLA"]
    clock.now = datetime(2026, 11, 24, 21, 0, 1, tzinfo=timezone.utc)  # after the close
    batch = part.next_batch()
    assert batch and sources_of(batch) == {"synthetic"}
    assert FakeAlpaca.instances[0].closed


def test_auto_without_keys_stays_synthetic_during_the_session():
    part, clock = build(keys=False, start=datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc))
    clock.now += timedelta(seconds=1)
    assert sources_of(part.next_batch()) == {"synthetic"}
    assert FakeAlpaca.instances == []


def test_auto_uses_synthetic_on_a_holiday():
    part, clock = build(start=datetime(2025, 11, 27, 15, 0, tzinfo=timezone.utc))
    clock.now += timedelta(seconds=1)
    assert sources_of(part.next_batch()) == {"synthetic"}


def test_alpaca_mode_streams_outside_the_session_too():
    part, _ = build(mode="alpaca", start=datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc))
    assert sources_of(part.next_batch()) == {"alpaca"}


def test_synthetic_tickers_are_split_between_workers_and_alpaca_uses_worker_zero():
    seen = set()
    for index in range(3):
        part, clock = build(mode="synthetic", worker=(index, 3))
        seen |= tickers_of(part.next_batch())
        clock.now += timedelta(seconds=2)
        seen |= tickers_of(part.next_batch())
    assert seen == {"AAPL", "MSFT", "TSLA"}
    other, _ = build(mode="alpaca", worker=(1, 2))
    assert other.next_batch() == [] and FakeAlpaca.instances == []


def test_produce_for_seconds_bounds_the_source():
    clock = Clock(datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc))
    part = StockTradeSource(directory(["AAPL"]), mode="synthetic", run_for_seconds=5, now=clock).build("t", 0, 1)
    part.next_batch()
    clock.now += timedelta(seconds=5)
    with pytest.raises(StopIteration):
        part.next_batch()
