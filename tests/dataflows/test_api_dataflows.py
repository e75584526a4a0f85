"""The macro, news and Bluesky dataflows wired with TestingSource / TestingSink."""

from datetime import date, datetime, timezone

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows import bluesky_produce, macro_produce, news_produce
from marketstream.datasets import BLUESKY, MACRO, NEWS
from pipelines.consumer import build_consumer_flow
from marketstream.macro import MacroObservation
from marketstream.news import NewsArticle
from marketstream.social import BlueskyPost
from sources.kafka_topic import PolledMessages
from tests.conftest import lake_files, make_settings

AT = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)
OBSERVATION = MacroObservation("cpi", "CPIAUCSL", date(2026, 9, 1), 323.9, date(2026, 10, 15), AT)
ARTICLE = NewsArticle(9, "AAPL", AT, "Apple ships", "summary", "Wire", "https://n.example/9", "", "company", "AAPL")
POST = BlueskyPost("at://did:plc:a/app.bsky.feed.post/1", "bafy1", "a.bsky.social", "did:plc:a", "Tim Cook on AI",
                   AT, AT, 3, 1, 0, "en", "Tim Cook/AI \"quoted\" é")

CASES = {
    "macro": (macro_produce, MACRO, OBSERVATION, b"cpi", "alias=cpi/year=2026"),
    "news": (news_produce, NEWS, ARTICLE, b"AAPL", "ticker=AAPL/date=2026-11-24"),
    "bluesky": (bluesky_produce, BLUESKY, POST, "Tim Cook/AI \"quoted\" é".encode(),
                "date=2026-11-24/keyword=Tim%20Cook%2FAI%20%22quoted%22%20é"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_producer_publishes_records_as_json_keyed_by_their_key(case):
    module, _, record, key, _ = CASES[case]
    out = []
    run_main(module.build_flow(make_settings(), source=TestingSource([record]), sink=TestingSink(out)))
    assert [(m.key, m.value) for m in out] == [(key, record.to_json())]


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_consumer_stores_valid_messages_under_their_partitions_and_dead_letters_the_rest(case):
    _, dataset, record, key, prefix = CASES[case]
    broken = orjson.loads(record.to_json())
    broken.pop(next(iter(broken)))  # drop the first field
    values = [record.to_json(), b"\x00\xff", orjson.dumps(broken), b"[]"]
    messages = [PolledMessages(dataset.topic, 1, list(range(len(values))), [key] * len(values), values)]
    lake, dead = [], []
    run_main(build_consumer_flow(dataset, make_settings(), source=TestingSource(messages),
                                 lake_sink=TestingSink(lake), dead_letter_sink=TestingSink(dead)))
    assert [(b.prefix, b.kafka_partition, b.table.num_rows) for b in lake_files(lake)] == [(prefix, 1, 1)]
    assert [m.offset for m in dead] == [1, 2, 3]
    assert all(m.reason for m in dead)
