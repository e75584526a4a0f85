"""Historical trades from Alpaca's market-data REST API (`GET /v2/stocks/trades`) through alpaca-py's client.

`AlpacaTradeHistory.trades(ticker, start, end)` pages through one ticker's trades in `[start, end)` (at most
`PAGE_SIZE` per request, following `next_page_token`), pacing its requests to `requests_per_minute`
(Alpaca's free plan allows 200). A 429 or a 5xx is tried again after a growing pause (up to
`MAX_RETRIES` times); a refusal (credentials, subscription) raises `AlpacaHistoryError` at once. Trades come back as this
project's `Trade` contract, the same as live ones (`source` "alpaca", Alpaca's trade id).

Delivery guarantee: what Alpaca serves for the window, each trade once per call; nothing is kept between
calls (the backfill records what it finished in the table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

from marketstream import metrics
from marketstream.trades import Trade

PAGE_SIZE = 10_000
MAX_RETRIES = 8
SOURCE = "alpaca_history"


class AlpacaHistoryError(RuntimeError):
    """Alpaca refused the request (credentials, subscription, a malformed one): retrying cannot help."""


def _retry_after(exc: Exception) -> float | None:
    """The seconds a 429's Retry-After header asks for, if any."""
    response = getattr(getattr(exc, "_http_error", None), "response", None)
    try:
        return max(float(response.headers["Retry-After"]), 0.0)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class AlpacaTradeHistory:
    def __init__(self, api_key: str, api_secret: str, *, feed: str = "iex", url_override: str | None = None,
                 requests_per_minute: float = 180, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        from alpaca.data.historical import StockHistoricalDataClient

        self._client = StockHistoricalDataClient(api_key, api_secret, raw_data=True, url_override=url_override)
        # alpaca-py would sleep 3 s per 429 on its own, three times; the waits are decided here instead, with the
        # server's Retry-After, a longer patience and a clock tests can drive
        self._client._retry = 0
        self._feed = feed
        self._interval = 60.0 / requests_per_minute
        self._clock, self._sleep = clock, sleep
        self._last_request: float | None = None
        self.requests = 0

    def _paced_get(self, params: dict) -> dict:
        from alpaca.common.exceptions import APIError, RetryException

        failures = 0
        while True:
            if self._last_request is not None:
                wait = self._last_request + self._interval - self._clock()
                if wait > 0:
                    self._sleep(wait)
            self._last_request = self._clock()
            self.requests += 1
            try:
                page = self._client.get("/stocks/trades", params)
                metrics.API_CALLS.labels(SOURCE, "ok").inc()
                return page
            except (RetryException, APIError) as exc:
                status = 429 if isinstance(exc, RetryException) else getattr(exc, "status_code", None)
                if status != 429 and not (status or 0) >= 500 or failures >= MAX_RETRIES:
                    metrics.API_CALLS.labels(SOURCE, "refused").inc()
                    hint = " - check API_KEY_ALPACA / API_SECRET_ALPACA" if status in (401, 403) else ""
                    raise AlpacaHistoryError(f"Alpaca refused GET /v2/stocks/trades ({status}): "
                                             f"{str(exc)[:200]}{hint}") from None
                metrics.API_CALLS.labels(SOURCE, "retried").inc()
                failures += 1
                pause = _retry_after(exc) or min(2.0 ** failures, 60.0)
                if status == 429:
                    metrics.RATE_LIMIT_WAITS.labels(SOURCE).inc()
                    metrics.RATE_LIMIT_WAIT_SECONDS.labels(SOURCE).inc(pause)
                self._sleep(pause)

    def trades(self, ticker: str, start: datetime, end: datetime) -> Iterator[Trade]:
        """`ticker`'s trades from `start` (inclusive) to `end` (exclusive), in Alpaca's order, page by page."""
        params = {"symbols": ticker, "start": _rfc3339(start), "end": _rfc3339(end), "limit": PAGE_SIZE,
                  "feed": self._feed, "sort": "asc"}
        while True:
            page = self._paced_get(params)
            for raw in (page.get("trades") or {}).get(ticker, []):
                stamp = datetime.fromisoformat(raw["t"].replace("Z", "+00:00"))
                if stamp >= end:  # Alpaca's `end` is inclusive; the next window starts there
                    continue
                yield Trade(symbol=ticker, price=raw["p"], size=raw["s"], timestamp=stamp, trade_id=str(raw["i"]),
                            source="alpaca", exchange=raw.get("x"), conditions=tuple(raw.get("c") or ()),
                            tape=raw.get("z"))
            token = page.get("next_page_token")
            if not token:
                return
            params = {**params, "page_token": token}
