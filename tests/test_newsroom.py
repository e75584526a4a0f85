"""The demo's newsroom, read by the producers' own sources and the real client libraries (finnhub-python,
atproto) through the settings it gives them: each article under its company's ticker, each post attributed
to it, and wording that the sentiment model scores both ways."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from marketstream.companies import Company, CompanyDirectory
from marketstream.sentiment import score
from pipelines.api_sources import bluesky_posts_source, news_source
from pipelines.newsroom import COMPANIES, Newsroom
from tests.conftest import make_settings
from tests.sources.clock import Clock

SEEDED = [Company("MSFT", "Microsoft", ("Azure",)), Company("AAPL", "Apple", ("iPhone",)),
          Company("NVDA", "Nvidia", ("GPU",)), Company("AMZN", "Amazon", ("AWS", "Prime"))]
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


def drain(part, clock: Clock, polls: int) -> list:
    found = []
    for _ in range(polls):
        clock.now = max(clock.now, part.next_awake())
        found += part.next_batch()
    return found


@pytest.fixture(scope="module")
def newsroom():
    """A newsroom that has published 10 articles and 10 posts, each dated a minute after the one before."""
    moments = iter(NOW + timedelta(minutes=n) for n in range(1000))
    with Newsroom(SEEDED, every_seconds=0.01, now=lambda: next(moments)) as room:
        while room.published["posts"] < 10:
            time.sleep(0.01)
        room.stop_publishing()
        yield room


def test_it_writes_about_the_first_companies_by_ticker(newsroom):
    assert [company.ticker for company in newsroom.companies] == ["AAPL", "AMZN", "MSFT"][:COMPANIES]
    with pytest.raises(ValueError, match="companies_info holds no company"):
        Newsroom([])


def test_the_news_source_finds_each_article_under_its_companys_ticker(newsroom):
    settings = make_settings(**{name.lower(): value for name, value in newsroom.producer_environment().items()})
    directory = CompanyDirectory(lambda: SEEDED, refresh_seconds=300)
    clock = Clock(NOW + timedelta(hours=1))
    articles = drain(news_source(settings, directory, now=clock).build_part("news", "finnhub", None), clock, 8)
    names = {company.ticker: company.company_name for company in SEEDED}
    assert len(articles) == newsroom.published["articles"] >= 10
    assert {article.ticker for article in articles} == {"AAPL", "AMZN", "MSFT"}
    assert all(names[article.ticker] in article.headline for article in articles)
    scores = [score(article.headline) for article in articles]
    assert min(scores) < -0.3 and max(scores) > 0.3


def test_the_bluesky_source_attributes_each_post_to_its_company(newsroom):
    settings = make_settings(**{name.lower(): value for name, value in newsroom.producer_environment().items()})
    directory = CompanyDirectory(lambda: SEEDED, refresh_seconds=300)
    clock = Clock(NOW + timedelta(hours=1))
    posts = drain(bluesky_posts_source(settings, directory, now=clock).build_part("bluesky", "bluesky", None), clock, 20)
    by_uri = {post.uri: post for post in posts}  # a post is found once per keyword naming it
    assert len(by_uri) == newsroom.published["posts"]
    names = {company.ticker: company.company_name for company in SEEDED}
    assert all(len(post.tickers) == 1 and names[post.tickers[0]] in post.text for post in by_uri.values())
    scores = [score(post.text) for post in by_uri.values()]
    assert min(scores) < -0.3 and max(scores) > 0.3
