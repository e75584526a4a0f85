"""The Finnhub news source with the real finnhub-python client against a local fake Finnhub server."""

from datetime import datetime, timedelta, timezone

import pytest

from marketstream.companies import Company, CompanyDirectory
from sources.finnhub_news import FinnhubNews, finnhub_news_source
from fakes.finnhub import FakeFinnhub
from fakes.http import Reply
from tests.sources.clock import Clock

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def finnhub():
    with FakeFinnhub() as server:
        yield server


def partition(server, clock, tickers=("AAPL", "MSFT"), resume=None, **overrides):
    news = FinnhubNews(**{"api_key": "finnhub-test-token", "api_url": server.api_url, "cycle_seconds": 60,
                          "calls_per_minute": 55, "memory": 100_000, **overrides})
    directory = CompanyDirectory(lambda: [Company(t, t, ()) for t in tickers], refresh_seconds=300)
    return finnhub_news_source(news, directory, now=clock).build_part("news", "finnhub", resume)


def drain(part, clock, polls):
    records = []
    for _ in range(polls):
        clock.now = max(clock.now, part.next_awake())
        records += part.next_batch()
    return records


def test_each_ticker_is_asked_for_the_days_since_its_last_poll(finnhub):
    finnhub.publish("AAPL", 1, datetime(2026, 11, 24, 14, 5, tzinfo=timezone.utc), "Apple news")
    finnhub.publish("MSFT", 2, datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc), "Microsoft news")
    finnhub.publish("MSFT", 3, datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc), "Too old")
    clock = Clock(NOW)
    part = partition(finnhub, clock)
    records = drain(part, clock, 2)
    assert [(r.id, r.ticker, r.headline, r.datetime) for r in records] == [
        (1, "AAPL", "Apple news", datetime(2026, 11, 24, 14, 5, tzinfo=timezone.utc)),
        (2, "MSFT", "Microsoft news", datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)),
    ]
    assert [(q["symbol"], q["from"], q["to"]) for _, _, q in finnhub.requests] == [
        ("AAPL", "2026-11-24", "2026-11-25"), ("MSFT", "2026-11-24", "2026-11-25")]
    clock.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    drain(part, clock, 1)
    assert finnhub.requests[-1][2]["from"] == "2026-11-25"


def test_calls_are_spread_over_the_cycle_and_never_exceed_the_rate_limit(finnhub):
    clock = Clock(NOW)
    few = partition(finnhub, clock, tickers=("A", "B", "C", "D"))
    few.next_batch()
    assert (few.next_awake() - clock.now).total_seconds() == 15  # 60 s / 4 tickers
    many = partition(finnhub, clock, tickers=[f"T{i}" for i in range(500)])
    many.next_batch()
    assert (many.next_awake() - clock.now).total_seconds() == pytest.approx(60 / 55)
    requests_before, start = len(finnhub.requests), clock.now
    while many.next_awake() < start + timedelta(seconds=60):
        clock.now = many.next_awake()
        many.next_batch()
    assert len(finnhub.requests) - requests_before + 1 <= 55  # calls within one minute, the first included


def test_an_article_is_published_once_even_across_tickers_cycles_and_restarts(finnhub):
    at = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
    finnhub.publish("AAPL", 7, at, related="AAPL,MSFT")
    finnhub.publish("MSFT", 7, at, related="AAPL,MSFT")
    clock = Clock(NOW)
    part = partition(finnhub, clock)
    assert [r.ticker for r in drain(part, clock, 4)] == ["AAPL"]
    resumed = partition(finnhub, clock, resume=part.snapshot())
    finnhub.publish("AAPL", 8, at)
    assert [r.id for r in drain(resumed, clock, 2)] == [8]


def test_empty_answers_publish_nothing(finnhub):
    clock = Clock(NOW)
    assert drain(partition(finnhub, clock), clock, 3) == []


def test_429_waits_for_retry_after_and_keeps_its_place(finnhub, caplog):
    finnhub.publish("AAPL", 1, datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc))
    finnhub.faults.append(Reply(429, {"error": "API limit reached. Please try again later."}, {"Retry-After": "17"}))
    clock = Clock(NOW)
    part = partition(finnhub, clock)
    assert part.next_batch() == []
    assert (part.next_awake() - clock.now).total_seconds() == 17
    clock.now = part.next_awake()
    assert [(r.ticker, r.id) for r in part.next_batch()] == [("AAPL", 1)]
    assert "finnhub-test-token" not in caplog.text


def test_5xx_then_success(finnhub):
    finnhub.publish("AAPL", 1, datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc))
    finnhub.faults.append(Reply(503, "<html>upstream unavailable</html>", content_type="text/html"))
    clock = Clock(NOW)
    part = partition(finnhub, clock)
    assert part.next_batch() == []
    assert [r.id for r in drain(part, clock, 1)] == [1]


def test_malformed_payloads_are_retried_or_skipped_with_a_warning(finnhub, caplog):
    finnhub.faults.append(Reply(200, "not json at all", content_type="application/json"))
    finnhub.publish("AAPL", 5, datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc))
    finnhub.articles["AAPL"].append({"id": "x", "datetime": 1795600000, "headline": "bad id"})
    finnhub.articles["AAPL"].append({"id": 6, "headline": "no datetime"})
    clock = Clock(NOW)
    part = partition(finnhub, clock)
    assert part.next_batch() == []  # unparsable response: retried
    assert [r.id for r in drain(part, clock, 1)] == [5]
    assert caplog.text.count("skipping a malformed AAPL article") == 2


def test_rejected_api_key_stops_the_source_naming_the_variable(finnhub):
    part = partition(finnhub, Clock(NOW), api_key="not-the-token-42")
    with pytest.raises(RuntimeError, match="Finnhub rejected FINNHUB_API_KEY") as error:
        part.next_batch()
    assert "not-the-token-42" not in str(error.value)
