"""A local server speaking Alpaca's historical market-data REST API (`GET /v2/stocks/trades`) as alpaca-py
calls it: API key headers, `symbols`, `start`/`end` (RFC 3339), `limit`, `feed`, and paging through
`page_token` / `next_page_token`. Tests script 429s with Retry-After through `faults`."""

from __future__ import annotations

from datetime import datetime

from fakes.http import FakeHTTPServer, Reply


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FakeAlpacaHistory(FakeHTTPServer):
    def __init__(self, key: str = "alpaca-test-key", secret: str = "alpaca-test-secret"):
        super().__init__()
        self.key, self.secret = key, secret
        self.trades: dict[str, list[dict]] = {}

    def add(self, symbol: str, trade_id: int, at: datetime, price: float = 100.0, size: float = 10, **fields) -> dict:
        trade = {"t": at.isoformat().replace("+00:00", "Z"), "x": "V", "p": price, "s": size, "c": ["@"],
                 "i": trade_id, "z": "C", **fields}
        self.trades.setdefault(symbol, []).append(trade)
        return trade

    def trade_requests(self) -> list[dict]:
        return [query for _, path, query in self.requests if path == "/v2/stocks/trades"]

    def route(self, method, path, query, headers, body) -> Reply:
        if headers.get("APCA-API-KEY-ID") != self.key or headers.get("APCA-API-SECRET-KEY") != self.secret:
            return Reply(401, {"message": "forbidden"})
        if path != "/v2/stocks/trades":
            return Reply(404, {"message": "not found"})
        symbol = query["symbols"]
        if "," in symbol:
            return Reply(400, {"message": "this fake serves one symbol per request"})
        start, end = _at(query["start"]), _at(query["end"])
        matching = sorted((t for t in self.trades.get(symbol, []) if start <= _at(t["t"]) < end),
                          key=lambda t: (t["t"], t["i"]))
        first = int(query.get("page_token") or 0)
        limit = int(query.get("limit") or 1000)
        page = matching[first:first + limit]
        following = first + limit if first + limit < len(matching) else None
        return Reply(200, {"trades": {symbol: page} if page else {},
                           "next_page_token": None if following is None else str(following)})
