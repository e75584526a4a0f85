"""The `finnhub` message: one company-news article as JSON, key = ticker.

    {"id": 131419745, "ticker": "AAPL", "datetime": "2026-11-24T14:05:00.000000Z", "headline": "...",
     "summary": "...", "source": "Yahoo", "url": "https://...", "image": "https://...",
     "category": "company", "related": "AAPL"}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from marketstream.calendar import exchange_date
from marketstream.records import InvalidRecord, json_object, rfc3339, utc_micros
from marketstream.trades import TICKER_PATTERN

EARLIEST_ARTICLE = datetime(1990, 1, 1, tzinfo=timezone.utc)
TEXT_LIMITS = {"headline": 2_000, "summary": 20_000, "source": 200, "url": 4_000, "image": 4_000,
               "category": 100, "related": 2_000}


@dataclass(frozen=True, slots=True)
class NewsArticle:
    id: int
    ticker: str
    datetime: datetime
    headline: str
    summary: str
    source: str
    url: str
    image: str
    category: str
    related: str

    @property
    def key(self) -> str:
        return self.ticker

    def to_json(self) -> bytes:
        return orjson.dumps({
            "id": self.id, "ticker": self.ticker, "datetime": rfc3339(self.datetime), "headline": self.headline,
            "summary": self.summary, "source": self.source, "url": self.url, "image": self.image,
            "category": self.category, "related": self.related,
        })


def parse_news(raw: bytes | None) -> dict:
    """Validate one `finnhub` message into a row with `ticker` and `date` (New York) for partitioning."""
    obj = json_object(raw)
    article_id = obj.get("id")
    if isinstance(article_id, bool) or not isinstance(article_id, int) or not 0 < article_id < 2**63:
        raise InvalidRecord("field 'id' must be a positive integer")
    ticker = obj.get("ticker")
    if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker):
        raise InvalidRecord(f"field 'ticker' is not a valid ticker: {str(ticker)[:32]!r}")
    micros = utc_micros(obj.get("datetime"), "datetime", earliest=EARLIEST_ARTICLE)
    row = {"ticker": ticker, "id": article_id, "datetime": micros,
           "date": exchange_date(datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc))}
    for name, limit in TEXT_LIMITS.items():
        value = obj.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidRecord(f"field '{name}' must be a string of at most {limit} characters")
        row[name] = value
    if not row["headline"]:
        raise InvalidRecord("field 'headline' must not be empty")
    return row
