"""The `bluesky` message: one post found by a keyword search, as JSON, key = keyword.

    {"uri": "at://did:plc:…/app.bsky.feed.post/3l…", "cid": "bafyrei…", "author_handle": "alice.bsky.social",
     "author_did": "did:plc:…", "text": "…", "created_at": "2026-11-25T10:00:00.000000Z",
     "indexed_at": "2026-11-25T10:00:01.000000Z", "like_count": 3, "repost_count": 0, "reply_count": 1,
     "language": "en", "keyword": "Tim Cook", "tickers": ["AAPL"]}

`tickers` names whom the keyword stands for when the producer published the post: each company of
`companies_info` whose `company_name` or one of whose `related_words` is the keyword, and `MARKET` (the
market as a whole) for a static keyword of `BLUESKY_KEYWORDS`; sorted, each once, possibly empty (a keyword
no company lists any more). Optional: messages of producers before December 2026 have none, and their rows
a null `tickers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from marketstream.records import InvalidRecord, json_object, rfc3339, utc_micros
from marketstream.trades import TICKER_PATTERN

EARLIEST_POST = datetime(2000, 1, 1, tzinfo=timezone.utc)
TEXT_LIMITS = {"uri": 1_000, "cid": 200, "author_handle": 300, "author_did": 300, "text": 10_000}
MARKET = "*MARKET*"
"""The key of the market as a whole, for posts found by a static keyword; never a ticker (the asterisks)."""
MAX_TICKERS = 100


@dataclass(frozen=True, slots=True)
class BlueskyPost:
    uri: str
    cid: str
    author_handle: str
    author_did: str
    text: str
    created_at: datetime
    indexed_at: datetime
    like_count: int
    repost_count: int
    reply_count: int
    language: str | None
    keyword: str
    tickers: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return self.keyword

    def to_json(self) -> bytes:
        return orjson.dumps({
            "uri": self.uri, "cid": self.cid, "author_handle": self.author_handle, "author_did": self.author_did,
            "text": self.text, "created_at": rfc3339(self.created_at), "indexed_at": rfc3339(self.indexed_at),
            "like_count": self.like_count, "repost_count": self.repost_count, "reply_count": self.reply_count,
            "language": self.language, "keyword": self.keyword,
            **({} if self.tickers is None else {"tickers": list(self.tickers)}),
        })


def parse_post(raw: bytes | None) -> dict:
    """Validate one `bluesky` message into a row with `date` (UTC, of created_at) and `keyword`."""
    obj = json_object(raw)
    row = {}
    for name, limit in TEXT_LIMITS.items():
        value = obj.get(name)
        if not isinstance(value, str) or len(value) > limit or (name != "text" and not value):
            raise InvalidRecord(f"field '{name}' must be a {'non-empty ' if name != 'text' else ''}string of at most {limit} characters")
        row[name] = value
    if not row["uri"].startswith("at://"):
        raise InvalidRecord("field 'uri' must be an at:// URI")
    keyword = obj.get("keyword")
    if not isinstance(keyword, str) or not keyword.strip() or len(keyword) > 200 or not keyword.isprintable():
        raise InvalidRecord("field 'keyword' must be a non-empty printable string of at most 200 characters")
    row["keyword"] = keyword
    row["created_at"] = utc_micros(obj.get("created_at"), "created_at", earliest=EARLIEST_POST)
    row["indexed_at"] = utc_micros(obj.get("indexed_at"), "indexed_at", earliest=EARLIEST_POST)
    for name in ("like_count", "repost_count", "reply_count"):
        value = obj.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise InvalidRecord(f"field '{name}' must be a non-negative integer")
        row[name] = value
    language = obj.get("language")
    if language is not None and (not isinstance(language, str) or len(language) > 35):
        raise InvalidRecord("field 'language' must be a language tag or null")
    row["language"] = language
    row["tickers"] = _tickers(obj.get("tickers"))
    row["date"] = datetime.fromtimestamp(row["created_at"] / 1_000_000, tz=timezone.utc).date()
    return row


def _tickers(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_TICKERS:
        raise InvalidRecord(f"field 'tickers' must be a list of at most {MAX_TICKERS} tickers or null")
    for ticker in value:
        if not isinstance(ticker, str) or not (ticker == MARKET or TICKER_PATTERN.fullmatch(ticker)):
            raise InvalidRecord(f"field 'tickers' holds {str(ticker)[:32]!r}, which is neither a ticker nor {MARKET!r}")
    if len(set(value)) < len(value):
        raise InvalidRecord("field 'tickers' names a ticker twice")
    return value
