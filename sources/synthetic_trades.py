"""Synthetic trades: a random walk per ticker, for nights, weekends, demos and load tests.

Trades are generated with numpy a block at a time and serialised straight to `stock_trades` JSON, so the
generator keeps up with load-test rates (hundreds of thousands of trades per second); the messages are
byte-for-byte what `Trade.to_json` would write, and `parse_trade` accepts every one.

Delivery guarantee: none needed, the data is generated: trades are stamped with the wall-clock time they
are emitted, and a restarted generator simply goes on from fresh prices. Every trade id is unique
(a random run id plus a counter), so downstream exactly-once checks can count by id.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta, timezone

import numpy as np

from marketstream.messages import MessageBlock

EXCHANGES = np.array(["V", "P", "Q", "N", "Z", "K", "D"])
ROUND_LOTS = np.array([100, 100, 100, 200, 300, 500])
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _start_price(ticker: str) -> float:
    """A stable, plausible starting price between 10 and 500 derived from the ticker."""
    digest = int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=4).digest(), "big")
    return round(10 * math.exp(digest / 0xFFFFFFFF * math.log(50)), 2)


class SyntheticTrades:
    """Generates `rate` trades per second per ticker, evenly spread over the time since the last call."""

    def __init__(self, rate_per_ticker: float, *, seed: int | None = None, max_batch: int = 100_000):
        self._rate = rate_per_ticker
        self._rng = np.random.default_rng(seed)
        self._run_id = secrets.token_hex(4) if seed is None else f"{seed:08x}"
        self._sequence = 0
        self._prices: dict[str, float] = {}
        self._carry = 0.0
        self._last: datetime | None = None
        self._max_batch = max_batch
        self._next_ticker = 0
        self.saturated = False
        """The last call was capped at `max_batch`: call again at once to keep up with the rate."""

    def generate(self, tickers: list[str], now: datetime) -> MessageBlock | None:
        if not tickers:
            self._last = now
            return None
        if self._last is None:
            self._last = now - timedelta(seconds=1 / (self._rate * len(tickers)))
        elapsed = max((now - self._last).total_seconds(), 0.0)
        wanted = elapsed * self._rate * len(tickers) + self._carry
        count = min(int(wanted), self._max_batch)
        self.saturated = count == self._max_batch
        self._carry = 0.0 if self.saturated else wanted - count
        if count == 0:
            self._last = now
            return None
        block = self._block(tickers, count, self._last, now)
        self._last = now
        return block

    def _block(self, tickers: list[str], count: int, start: datetime, end: datetime) -> MessageBlock:
        rng = self._rng
        which = (np.arange(count) + self._next_ticker) % len(tickers)
        self._next_ticker = (self._next_ticker + count) % len(tickers)
        # the random walk: each ticker's log-price moves by its own cumulative sum of small steps
        steps = rng.normal(0.0, 0.0004, count)
        prices = np.empty(count)
        for t in np.unique(which):
            mask = which == t
            ticker = tickers[t]
            walk = (self._prices.get(ticker) or _start_price(ticker)) * np.exp(np.cumsum(steps[mask]))
            walk = np.maximum(walk, 0.01)
            prices[mask] = walk
            self._prices[ticker] = float(walk[-1])
        odd_lot = rng.random(count) >= 0.6
        sizes = np.where(odd_lot, rng.integers(1, 100, count), ROUND_LOTS[rng.integers(0, len(ROUND_LOTS), count)])
        exchanges = EXCHANGES[rng.integers(0, len(EXCHANGES), count)].tolist()
        start_us = (start - _EPOCH) // timedelta(microseconds=1)
        span_us = (end - _EPOCH) // timedelta(microseconds=1) - start_us
        stamps = np.datetime_as_string(
            (start_us + (np.arange(1, count + 1) * span_us) // count).astype("datetime64[us]"), unit="us"
        ).tolist()
        price_texts = [repr(p) for p in np.round(prices, 4).tolist()]
        sequence = self._sequence
        self._sequence += count
        values = [
            (f'{{"symbol":"{tickers[t]}","price":{price},"size":{size}.0,"timestamp":"{stamp}Z","exchange":"{exchange}",'
             f'"conditions":{conditions},"trade_id":"syn-{self._run_id}-{sequence + n + 1}","tape":"C","source":"synthetic"}}').encode()
            for n, (t, price, size, stamp, exchange, conditions) in enumerate(zip(
                which.tolist(), price_texts, sizes.tolist(), stamps, exchanges,
                np.where(odd_lot, '["@","I"]', '["@"]').tolist()))
        ]
        keys = [tickers[t].encode() for t in which.tolist()]
        return MessageBlock(keys, values)
