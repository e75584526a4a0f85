"""The `stock_trades` message: one trade as a JSON object, key = ticker.

    {"symbol": "AAPL", "price": 189.12, "size": 100, "timestamp": "2026-11-24T15:30:01.123456Z",
     "exchange": "V", "conditions": ["@"], "trade_id": "52983525029461", "tape": "C", "source": "alpaca"}

| field      | type                         | notes                                              |
|------------|------------------------------|----------------------------------------------------|
| symbol     | string, required             | `^[A-Z][A-Z0-9]{0,9}([.-][A-Z0-9]{1,4})?$`         |
| price      | number, required             | finite, > 0                                        |
| size       | number, required             | finite, > 0                                        |
| timestamp  | RFC 3339 string, required    | event time with an offset; kept to microseconds, UTC |
| exchange   | string or null               | exchange code, at most 16 characters               |
| conditions | array of strings or null     | at most 16 codes of at most 8 characters           |
| trade_id   | string or integer, required  | at most 64 characters                              |
| tape       | string or null               | at most 4 characters                               |
| source     | "alpaca" or "synthetic"      |                                                    |

`Trade.to_json` writes it; `parse_trade` validates one raw message and raises `InvalidRecord` with the
reason when it does not conform.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from marketstream.calendar import exchange_date, nyse
from marketstream.records import InvalidRecord, json_object, rfc3339, utc_micros

SOURCES = ("alpaca", "synthetic")
TICKER_PATTERN = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[.\-][A-Z0-9]{1,4})?")
EARLIEST_TRADE = datetime(1990, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    price: float
    size: float
    timestamp: datetime
    trade_id: str
    source: str
    exchange: str | None = None
    conditions: tuple[str, ...] = field(default_factory=tuple)
    tape: str | None = None

    @property
    def key(self) -> str:
        return self.symbol

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "symbol": self.symbol,
                "price": self.price,
                "size": self.size,
                "timestamp": rfc3339(self.timestamp),
                "exchange": self.exchange,
                "conditions": list(self.conditions),
                "trade_id": self.trade_id,
                "tape": self.tape,
                "source": self.source,
            }
        )


def _positive_number(obj: dict, name: str) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(f"field '{name}' must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidRecord(f"field '{name}' must be finite and > 0, got {value!r}")
    return value


def _optional_text(obj: dict, name: str, max_len: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{name}' must be a string or null, got {type(value).__name__}")
    if len(value) > max_len or not value.isprintable():
        raise InvalidRecord(f"field '{name}' must be at most {max_len} printable characters")
    return value


def parse_trade(raw: bytes | None) -> dict:
    """Validate one `stock_trades` message and return its row, with `ticker` and `date` for partitioning."""
    obj = json_object(raw)

    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not TICKER_PATTERN.fullmatch(symbol):
        raise InvalidRecord(f"field 'symbol' is not a valid ticker: {str(symbol)[:32]!r}")
    price = _positive_number(obj, "price")
    size = _positive_number(obj, "size")
    micros = utc_micros(obj.get("timestamp"), "timestamp", earliest=EARLIEST_TRADE)

    trade_id = obj.get("trade_id")
    if isinstance(trade_id, int) and not isinstance(trade_id, bool):
        trade_id = str(trade_id)
    if not isinstance(trade_id, str) or not 0 < len(trade_id) <= 64 or not trade_id.isprintable():
        raise InvalidRecord("field 'trade_id' must be a non-empty string or integer of at most 64 characters")

    source = obj.get("source")
    if source not in SOURCES:
        raise InvalidRecord(f"field 'source' must be one of {SOURCES}, got {str(source)[:32]!r}")

    conditions = obj.get("conditions")
    if conditions is not None:
        if not isinstance(conditions, list) or len(conditions) > 16:
            raise InvalidRecord("field 'conditions' must be an array of at most 16 strings or null")
        for code in conditions:
            if not isinstance(code, str) or len(code) > 8 or not code.isprintable():
                raise InvalidRecord("field 'conditions' must hold strings of at most 8 printable characters")

    timestamp = datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)
    return {
        "ticker": symbol,
        "date": exchange_date(timestamp),
        "trade_id": trade_id,
        "timestamp": micros,
        "price": price,
        "size": size,
        "exchange": _optional_text(obj, "exchange", 16),
        "conditions": conditions,
        "tape": _optional_text(obj, "tape", 4),
        "source": source,
    }


def synthetic_apart(row: dict, settings) -> str:
    """Synthetic trades live under their own prefix (`STOCK_SYNTHETIC_PREFIX`), away from real data."""
    return settings.stock_synthetic_prefix if row["source"] == "synthetic" else ""


def outside_session(row: dict) -> str | None:
    """Real trades are stored only when their event time falls inside a regular NYSE session."""
    if row["source"] != "alpaca":
        return None
    moment = datetime.fromtimestamp(row["timestamp"] / 1_000_000, tz=timezone.utc)
    return None if nyse().is_open(moment) else "outside the NYSE regular session"
