"""Historical trades from Alpaca's market-data REST API (`GET /v2/stocks/trades`) through alpaca-py's client.

`AlpacaTradeHistory.trades(ticker, start, end)` pages through one ticker's trades in `[start, end)` (at most
`PAGE_SIZE` per request, following `next_page_token`). Its requests go through a `sources.pacing.Pacer`:
paced to `requests_per_minute` (Alpaca's free plan allows 200); a 429 waits for its Retry-After, a 5xx, a
timeout (`request_timeout_seconds`) or a failed connection for a growing pause, each retry one warning
line, until `patience_seconds` have passed (then `GaveUp`, naming ALPACA_DATA_URL); a refusal (credentials,
subscription, a malformed request) raises `Refused` at once. Trades come back as this project's `Trade`
contract, the same as live ones (`source` "alpaca", Alpaca's trade id).

Delivery guarantee: what Alpaca serves for the window, each trade once per call; nothing is kept between
calls (the backfill records what it finished in the table).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import requests

from marketstream.trades import Trade
from sources.pacing import Clock, Pacer, PermanentError, TransientError, describe_failure, retry_after_seconds

PAGE_SIZE = 10_000
SOURCE = "alpaca_history"
ALPACA_DATA_URL = "https://data.alpaca.markets"
"""Alpaca's own market-data API, where alpaca-py goes unless ALPACA_DATA_URL says otherwise."""


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class _TimeLimitedSession(requests.Session):
    """alpaca-py sends its requests without a timeout: a server that accepts and never answers would hold
    the backfill forever."""

    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, **kwargs)


class AlpacaTradeHistory:
    def __init__(self, api_key: str, api_secret: str, *, feed: str = "iex", url_override: str | None = None,
                 requests_per_minute: float = 180, patience_seconds: float = 300,
                 request_timeout_seconds: float = 30, clock: Clock = Clock()):
        from alpaca.data.historical import StockHistoricalDataClient

        self._client = StockHistoricalDataClient(api_key, api_secret, raw_data=True, url_override=url_override)
        # alpaca-py would sleep 3 s per 429 on its own, three times; the waits are the pacer's instead, with
        # the server's Retry-After, a bounded patience and a clock tests can drive
        self._client._retry = 0
        self._client._session = _TimeLimitedSession(request_timeout_seconds)
        self._feed = feed
        self._pacer = Pacer(SOURCE, f"Alpaca's market-data API at {url_override or ALPACA_DATA_URL} (ALPACA_DATA_URL)",
                            requests_per_minute, patience_seconds=patience_seconds, clock=clock)

    def _page(self, params: dict) -> dict:
        from alpaca.common.exceptions import APIError

        try:
            page = self._client.get("/stocks/trades", params)
        except APIError as exc:
            status, text = exc.status_code, " ".join(str(exc).split())[:200]
            if status == 429 or (status or 0) >= 500:
                raise TransientError(f"HTTP {status} {text}",
                                     retry_after_seconds(getattr(exc.response, "headers", None))) from None
            hint = ": check API_KEY_ALPACA / API_SECRET_ALPACA" if status in (401, 403) else ""
            raise PermanentError(f"HTTP {status} {text}{hint}") from None
        except requests.RequestException as exc:
            raise TransientError(describe_failure(exc)) from None
        if not isinstance(page, dict):
            raise TransientError(f"the answer is {type(page).__name__}, not an object")
        return page

    def trades(self, ticker: str, start: datetime, end: datetime) -> Iterator[Trade]:
        """`ticker`'s trades from `start` (inclusive) to `end` (exclusive), in Alpaca's order, page by page."""
        params = {"symbols": ticker, "start": _rfc3339(start), "end": _rfc3339(end), "limit": PAGE_SIZE,
                  "feed": self._feed, "sort": "asc"}
        what = f"GET /v2/stocks/trades of {ticker} from {params['start']} to {params['end']}"
        while True:
            page = self._pacer.call(what, lambda: self._page(params))
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
