"""Synthetic trades: a random walk per ticker, for nights, weekends, demos and load tests.

Delivery guarantee: none needed, the data is generated: trades are stamped with the wall-clock time they
are emitted, and a restarted generator simply goes on from fresh prices. Every trade id is unique
(a random run id plus a counter), so downstream exactly-once checks can count by id.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
from datetime import datetime, timedelta

from marketstream.trades import Trade

EXCHANGES = ("V", "P", "Q", "N", "Z", "K", "D")
ROUND_LOTS = (100, 100, 100, 200, 300, 500)


def _start_price(ticker: str) -> float:
    """A stable, plausible starting price between 10 and 500 derived from the ticker."""
    digest = int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=4).digest(), "big")
    return round(10 * math.exp(digest / 0xFFFFFFFF * math.log(50)), 2)


class SyntheticTrades:
    """Generates `rate` trades per second per ticker, evenly spread over the time since the last call."""

    def __init__(self, rate_per_ticker: float, *, seed: int | None = None, max_batch: int = 10_000):
        self._rate = rate_per_ticker
        self._random = random.Random(seed)
        self._run_id = secrets.token_hex(4) if seed is None else f"{seed:08x}"
        self._sequence = 0
        self._prices: dict[str, float] = {}
        self._carry = 0.0
        self._last: datetime | None = None
        self._max_batch = max_batch
        self._next_ticker = 0

    def generate(self, tickers: list[str], now: datetime) -> list[Trade]:
        if not tickers:
            self._last = now
            return []
        if self._last is None:
            self._last = now - timedelta(seconds=1 / (self._rate * len(tickers)))
        elapsed = max((now - self._last).total_seconds(), 0.0)
        wanted = elapsed * self._rate * len(tickers) + self._carry
        count = min(int(wanted), self._max_batch)
        self._carry = wanted - count if count < self._max_batch else 0.0
        if count == 0:
            self._last = now
            return []
        step = (now - self._last) / count
        trades = []
        for n in range(count):
            ticker = tickers[self._next_ticker % len(tickers)]
            self._next_ticker += 1
            trades.append(self._trade(ticker, self._last + step * (n + 1)))
        self._last = now
        return trades

    def _trade(self, ticker: str, at: datetime) -> Trade:
        rnd = self._random
        price = self._prices.get(ticker) or _start_price(ticker)
        price = max(0.01, price * math.exp(rnd.gauss(0.0, 0.0004)))
        self._prices[ticker] = price
        self._sequence += 1
        size = rnd.choice(ROUND_LOTS) if rnd.random() < 0.6 else rnd.randint(1, 99)
        return Trade(
            symbol=ticker,
            price=round(price, 4),
            size=float(size),
            timestamp=at,
            trade_id=f"syn-{self._run_id}-{self._sequence}",
            source="synthetic",
            exchange=rnd.choice(EXCHANGES),
            conditions=("@",) if size >= 100 else ("@", "I"),
            tape="C",
        )
