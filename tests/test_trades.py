import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import orjson
import pytest

from marketstream.records import InvalidRecord
from marketstream.trades import Trade, decode_trades, outside_session, parse_trade

REPO = Path(__file__).resolve().parent.parent
GOOD = {
    "symbol": "AAPL", "price": 189.12, "size": 100, "timestamp": "2026-11-24T15:30:01.123456789Z",
    "exchange": "V", "conditions": ["@"], "trade_id": 52983525029461, "tape": "C", "source": "alpaca",
}


def encode(**changes) -> bytes:
    obj = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not ...})


def test_valid_trade_becomes_a_row_with_partition_fields():
    row = parse_trade(encode())
    assert row["ticker"] == "AAPL"
    assert row["date"] == date(2026, 11, 24)
    expected = datetime(2026, 11, 24, 15, 30, 1, tzinfo=timezone.utc).timestamp() * 1_000_000 + 123456
    assert row["timestamp"] == expected  # nanoseconds truncated to microseconds
    assert row["trade_id"] == "52983525029461"
    assert (row["price"], row["size"], row["exchange"], row["conditions"], row["tape"]) == (189.12, 100.0, "V", ["@"], "C")


def test_trade_round_trips_through_its_json():
    trade = Trade("BRK.B", 455.5, 3, datetime(2026, 11, 24, 15, 0, 0, 42, tzinfo=timezone.utc), "x1", "synthetic")
    row = parse_trade(trade.to_json())
    assert row["ticker"] == "BRK.B" and row["timestamp"] % 1_000_000 == 42 and row["source"] == "synthetic"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (None, "empty message value"),
        (encode(price=...), "'price' must be a number"),
        (encode(price="12.5"), "'price' must be a number"),
        (encode(price=True), "'price' must be a number"),
        (encode(price=0), "'price' must be finite and > 0"),
        (encode(size=-5), "'size' must be finite and > 0"),
        (b'{"symbol":"AAPL","price":NaN}', "not valid JSON"),
        (b'{"symbol":"AAPL","price":Infinity}', "not valid JSON"),
        (encode(price=1e3, size=-1.0), "'size' must be finite and > 0"),
        (encode(price=1e308), "'price' must be at most 10,000,000"),
        (encode(price=10_000_000.01), "'price' must be at most 10,000,000"),
        (encode(size=1e11), "'size' must be at most 10,000,000,000"),
        (b'{"symbol":"../x","symbol":"HOST","price":1,"size":1,"timestamp":"2026-11-24T15:30:01Z",'
         b'"trade_id":"1","source":"alpaca"}', "duplicate key 'symbol'"),
        (encode()[:-1] + b',"source":"synthetic"}', "duplicate key 'source'"),
        (encode()[:-1] + b', "extra": {"a": 1, "a": 2}}', "duplicate key 'a'"),
        (encode(symbol="../x"), "not a valid ticker"),
        (encode(symbol="AAPL\n"), "not a valid ticker"),
        (encode(symbol="aapl"), "not a valid ticker"),
        (encode(symbol=None), "not a valid ticker"),
        (encode(timestamp="yesterday"), "not an RFC 3339 timestamp"),
        (encode(timestamp="2026-11-24T15:30:01"), "no UTC offset"),
        (encode(timestamp="1970-01-01T00:00:00Z"), "out of range"),
        (encode(timestamp="2999-01-01T00:00:00Z"), "out of range"),
        (encode(timestamp=1795620601), "RFC 3339 timestamp string"),
        (encode(trade_id=""), "'trade_id'"),
        (encode(trade_id="x" * 65), "'trade_id'"),
        (encode(source="bloomberg"), "'source' must be one of"),
        (encode(exchange="V" * 100), "'exchange' must be at most 16"),
        (encode(conditions="@"), "'conditions' must be an array"),
        (encode(conditions=[1]), "'conditions' must hold strings"),
    ],
)
def test_invalid_trades_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidRecord) as error:
        parse_trade(raw)
    assert reason in str(error.value)


def test_only_real_trades_outside_the_session_are_skipped():
    table, _ = decode_trades([
        encode(timestamp="2026-11-24T15:30:00Z"),  # inside
        encode(timestamp="2026-11-24T13:00:00Z"),  # pre-market
        encode(timestamp="2026-11-24T21:30:00Z"),  # after hours
        encode(timestamp="2026-11-24T03:00:00Z", source="synthetic"),
    ])
    mask, reason = outside_session(table)
    assert mask.to_pylist() == [False, True, True, False]
    assert reason == "outside the NYSE regular session"


def test_a_consumer_loads_the_exchange_calendar_only_for_a_year_the_shipped_sessions_lack():
    """The calendar library and pandas cost a consumer ~45 MB and ~1 s of CPU: real trades of the shipped
    years are checked against the shipped sessions (`marketstream.calendar`)."""
    script = """
import sys
from marketstream.datasets import STOCK
from tests.test_trades import encode
import pipelines.consumer
from marketstream.memory import keep_pyarrow_from_loading_pandas
assert keep_pyarrow_from_loading_pandas()  # as a consumer does when its flow is built
library = ("pandas_market_calendars", "exchange_calendars", "pandas")
for stamp, skipped in (("2026-11-24T15:00:00Z", False), ("2026-11-26T15:00:00Z", True),  # Thanksgiving
                       ("1990-01-02T15:00:00Z", False), ("1990-01-01T15:00:00Z", True)):
    table, _ = STOCK.decode([encode(timestamp=stamp)])
    assert STOCK.skip(table)[0].to_pylist() == [skipped], stamp
    assert not [name for name in library if name in sys.modules], stamp
from marketstream.calendar import nyse
assert nyse().in_session_us([501778800000000]).tolist() == [True]  # 1985-11-25 15:00 UTC, a Monday
assert "pandas_market_calendars" in sys.modules  # a year before the shipped ones (and before any valid trade)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


def test_the_largest_allowed_price_and_size_are_stored():
    row = parse_trade(encode(price=10_000_000, size=10_000_000_000))
    assert (row["price"], row["size"]) == (10_000_000.0, 10_000_000_000.0)
