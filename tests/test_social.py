"""The `bluesky` message contract (`marketstream.social`): the `tickers` a post's keyword stands for."""

from dataclasses import replace
from datetime import datetime, timezone

import orjson
import pytest

from marketstream.datasets import BLUESKY
from marketstream.records import InvalidRecord
from marketstream.social import MARKET, BlueskyPost, parse_post

POST = BlueskyPost("at://did:plc:a/app.bsky.feed.post/1", "bafy1", "a.bsky.social", "did:plc:a", "Tim Cook on AI",
                   datetime(2026, 11, 25, 10, tzinfo=timezone.utc), datetime(2026, 11, 25, 10, 0, 1, tzinfo=timezone.utc),
                   1, 0, 0, "en", "Tim Cook", ("AAPL",))


def test_tickers_travel_in_the_message_and_into_the_row():
    assert orjson.loads(POST.to_json())["tickers"] == ["AAPL"]
    assert parse_post(POST.to_json())["tickers"] == ["AAPL"]
    market = replace(POST, keyword="earnings", tickers=(MARKET, "MSFT"))
    assert parse_post(market.to_json())["tickers"] == [MARKET, "MSFT"]
    assert "tickers" not in orjson.loads(replace(POST, tickers=None).to_json())


def test_a_message_of_an_earlier_producer_without_tickers_is_stored_with_null_tickers():
    earlier = {k: v for k, v in orjson.loads(POST.to_json()).items() if k != "tickers"}
    assert parse_post(orjson.dumps(earlier))["tickers"] is None
    assert parse_post(orjson.dumps({**earlier, "tickers": None}))["tickers"] is None
    assert parse_post(orjson.dumps({**earlier, "tickers": []}))["tickers"] == []
    table, rejects = BLUESKY.decode([orjson.dumps(earlier), POST.to_json()])
    assert rejects == [] and table.column("tickers").to_pylist() == [None, ["AAPL"]]


@pytest.mark.parametrize("tickers, reason", [
    ("AAPL", "must be a list"),
    ([1], "neither a ticker"),
    (["aapl"], "neither a ticker"),
    (["MARKET"] * 2, "twice"),
    (["*market*"], "neither a ticker"),
    (["A"] * 101, "at most 100"),
])
def test_malformed_tickers_are_dead_lettered_with_the_reason(tickers, reason):
    message = orjson.dumps({**orjson.loads(POST.to_json()), "tickers": tickers})
    with pytest.raises(InvalidRecord, match=reason):
        parse_post(message)
    table, rejects = BLUESKY.decode([message])
    assert table.num_rows == 0 and reason.split()[0] in rejects[0][1]
