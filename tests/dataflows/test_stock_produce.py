from datetime import datetime, timezone

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.stock_produce import build_flow
from marketstream.trades import Trade, parse_trade
from tests.conftest import make_settings


def test_trades_are_published_as_json_keyed_by_ticker():
    trades = [
        Trade("AAPL", 190.25, 100, datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc), "t1", "synthetic", "V", ("@",), "C"),
        Trade("BRK.B", 455.0, 5, datetime(2026, 11, 24, 15, 0, 1, tzinfo=timezone.utc), "t2", "alpaca"),
    ]
    out = []
    run_main(build_flow(make_settings(), source=TestingSource(trades), sink=TestingSink(out)))
    assert [m.key for m in out] == [b"AAPL", b"BRK.B"]
    first = orjson.loads(out[0].value)
    assert first == {
        "symbol": "AAPL", "price": 190.25, "size": 100, "timestamp": "2026-11-24T15:00:00.000000Z",
        "exchange": "V", "conditions": ["@"], "trade_id": "t1", "tape": "C", "source": "synthetic",
    }
    assert all(parse_trade(m.value)["trade_id"] in {"t1", "t2"} for m in out)
