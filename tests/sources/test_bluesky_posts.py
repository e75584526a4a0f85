"""The Bluesky source with the real atproto client against a local fake XRPC server."""

import time
from datetime import datetime, timezone

import pytest

from marketstream.companies import Company, CompanyDirectory
from marketstream.social import MARKET
from sources.bluesky_posts import BlueskySearch, bluesky_source, keyword_tickers, keywords
from fakes.bluesky import FakeBluesky
from fakes.http import Reply
from tests.sources.clock import Clock

COMPANIES = [Company("AAPL", "Apple", ("iPhone", "Tim Cook")), Company("TSLA", "Tesla", ("Elon Musk",))]


@pytest.fixture
def bluesky():
    with FakeBluesky() as server:
        yield server


def search_on(server, **overrides) -> BlueskySearch:
    return BlueskySearch(**{"identifier": "tester.bsky.social", "password": "app-pass-1234", "api_url": server.url,
                            "static_keywords": ("earnings",), "keyword_delay_seconds": 2, "cycle_seconds": 30,
                            "posts_per_search": 25, "max_pages": 3, "memory_per_keyword": 5_000, **overrides})


def partition(server, clock, resume=None, companies=COMPANIES, refresh_seconds=300, **overrides):
    directory = CompanyDirectory(lambda: list(companies), refresh_seconds=refresh_seconds)
    return bluesky_source(search_on(server, **overrides), directory, now=clock).build_part("bluesky", "bluesky", resume)


def run_cycle(part, clock) -> list:
    """Poll through one whole cycle of keywords, honouring the source's own schedule."""
    posts = part.next_batch()
    while part._state["queue"]:
        clock.now = part.next_awake()
        posts += part.next_batch()
    return posts


def test_keywords_are_static_terms_then_company_names_and_related_words(bluesky):
    directory = CompanyDirectory(lambda: COMPANIES + [Company("X", "Apple", ())], refresh_seconds=300)
    assert keywords(("earnings",), directory) == ["earnings", "Apple", "iPhone", "Tim Cook", "Tesla", "Elon Musk"]


def test_each_keyword_stands_for_the_companies_naming_it_and_static_terms_for_the_market(bluesky):
    directory = CompanyDirectory(lambda: COMPANIES + [Company("MSFT", "Microsoft", ("AI", "earnings")),
                                                      Company("NVDA", "Nvidia", ("AI",))], refresh_seconds=300)
    assert keyword_tickers(("earnings", "stock market"), directory) == {
        "earnings": (MARKET, "MSFT"), "stock market": (MARKET,), "Apple": ("AAPL",), "iPhone": ("AAPL",),
        "Tim Cook": ("AAPL",), "Tesla": ("TSLA",), "Elon Musk": ("TSLA",), "Microsoft": ("MSFT",), "AI": ("MSFT", "NVDA"),
        "Nvidia": ("NVDA",)}
    assert MARKET == "*MARKET*"


def test_posts_carry_their_keywords_tickers_and_a_keyword_added_later_applies_from_then_on(bluesky):
    bluesky.post(1, "Tim Cook and Elon Musk on earnings")
    companies = list(COMPANIES)
    clock = Clock()
    part = partition(bluesky, clock, companies=companies, refresh_seconds=0)  # companies_info read at every search
    first = {p.keyword: p.tickers for p in run_cycle(part, clock)}
    assert first == {"earnings": (MARKET,), "Tim Cook": ("AAPL",), "Elon Musk": ("TSLA",)}
    companies.append(Company("SPCX", "SpaceX", ("Elon Musk",)))  # added to companies_info between two cycles
    bluesky.post(2, "Elon Musk again")
    clock.now = part.next_awake()
    second = {p.keyword: p.tickers for p in run_cycle(part, clock)}
    assert second == {"Elon Musk": ("SPCX", "TSLA")}


def test_each_keyword_is_searched_two_seconds_apart_and_cycles_every_thirty(bluesky):
    bluesky.post(1, "Tim Cook on earnings")
    clock = Clock()
    part = partition(bluesky, clock)
    start = clock.now
    posts = part.next_batch()
    assert (part.next_awake() - clock.now).total_seconds() == 2
    posts += run_cycle(part, clock)
    searches = [q["q"] for _, path, q in bluesky.requests if path.endswith("searchPosts")]
    assert searches == ["earnings", "Apple", "iPhone", "Tim Cook", "Tesla", "Elon Musk"]
    assert (part.next_awake() - start).total_seconds() == 30
    assert sorted(p.keyword for p in posts) == ["Tim Cook", "earnings"]
    post = next(p for p in posts if p.keyword == "Tim Cook")
    assert (post.author_handle, post.text, post.language, post.like_count) == ("author1.bsky.social", "Tim Cook on earnings", "en", 1)
    assert post.created_at == datetime(2026, 11, 25, 10, 0, 1, tzinfo=timezone.utc)


def test_posts_are_published_once_per_keyword_across_cycles_and_restarts(bluesky):
    bluesky.post(1, "Apple earnings beat")
    clock = Clock()
    part = partition(bluesky, clock)
    assert sorted(p.keyword for p in run_cycle(part, clock)) == ["Apple", "earnings"]
    clock.now = part.next_awake()
    assert run_cycle(part, clock) == []
    resumed = partition(bluesky, clock, resume=part.snapshot())
    bluesky.post(2, "Apple again")
    assert [(p.keyword, p.uri.endswith("00000002")) for p in run_cycle(resumed, clock)] == [("Apple", True)]


def test_pages_are_followed_until_a_seen_post_or_the_page_limit(bluesky):
    for n in range(60):
        bluesky.post(n, f"earnings call {n}")
    clock = Clock()
    part = partition(bluesky, clock, companies=[], posts_per_search=25, max_pages=3)
    first = part.next_batch()
    assert len(first) == 60 and len({p.uri for p in first}) == 60
    bluesky.post(60, "earnings surprise")
    clock.now = part.next_awake()
    assert [p.text for p in part.next_batch()] == ["earnings surprise"]
    cursors = [q.get("cursor") for _, path, q in bluesky.requests if path.endswith("searchPosts")]
    assert cursors == [None, "25", "50", None]


def test_the_session_is_created_once_and_refreshed_before_it_expires(bluesky):
    bluesky.access_lifetime = 15 * 60 + 1  # atproto refreshes 15 minutes before expiry
    bluesky.post(1, "earnings")
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    part.next_batch()
    time.sleep(1.5)
    for _ in range(3):
        clock.now = part.next_awake()
        part.next_batch()
    assert bluesky.sessions_created == 1
    assert bluesky.sessions_refreshed >= 1


def test_rate_limit_on_search_waits_for_retry_after(bluesky, caplog):
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    part.next_batch()  # logged in, nothing found
    bluesky.post(1, "earnings")
    bluesky.faults.append(Reply(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                                {"Retry-After": "42", "ratelimit-remaining": "0"}))
    clock.now = part.next_awake()
    assert part.next_batch() == []
    assert (part.next_awake() - clock.now).total_seconds() == 42
    clock.now = part.next_awake()
    assert len(part.next_batch()) == 1
    assert "rate limit" in caplog.text


def test_rate_limit_reset_header_is_honoured_at_login(bluesky):
    reset = int(time.time()) + 120
    bluesky.faults.extend([Reply(429, {"error": "RateLimitExceeded"}, {"ratelimit-reset": str(reset)})])
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    part.next_batch()
    assert 100 < (part.next_awake() - clock.now).total_seconds() <= 120


def test_5xx_then_success(bluesky):
    bluesky.post(1, "earnings")
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    part.next_batch()  # logs in and finds the post
    bluesky.post(2, "earnings again")
    bluesky.faults.append(Reply(502, "<html>bad gateway</html>", content_type="text/html"))
    clock.now = part.next_awake()
    assert part.next_batch() == []
    clock.now = part.next_awake()
    assert [p.text for p in part.next_batch()] == ["earnings again"]


def test_malformed_answers_are_retried(bluesky, caplog):
    bluesky.post(1, "earnings")
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    part.next_batch()
    bluesky.post(2, "earnings two")
    bluesky.faults.append(Reply(200, {"posts": [{"uri": 5}]}))
    clock.now = part.next_awake()
    assert part.next_batch() == []
    assert "failed" in caplog.text
    clock.now = part.next_awake()
    assert [p.text for p in part.next_batch()] == ["earnings two"]


def test_empty_results_publish_nothing(bluesky):
    clock = Clock()
    assert run_cycle(partition(bluesky, clock), clock) == []


def test_rejected_credentials_stop_with_a_clear_message(bluesky):
    part = partition(bluesky, Clock(), password="wrong-password-77")
    with pytest.raises(RuntimeError, match="Bluesky rejected BLUESKY_IDENTIFIER / BLUESKY_PASSWORD") as error:
        part.next_batch()
    assert "wrong-password-77" not in str(error.value)
    assert sum(path.endswith("createSession") for _, path, _ in bluesky.requests) == 1


def test_a_connection_closed_without_an_answer_at_login_is_retried_not_fatal(bluesky, caplog):
    """Found by `make chaos` (connection resets between bluesky_produce and the API): the login's
    `Server disconnected without sending a response` stopped the producer with a traceback."""
    bluesky.post(1, "earnings")
    bluesky.faults.append(Reply(drop=True))
    clock = Clock()
    part = partition(bluesky, clock, companies=[])
    assert part.next_batch() == []
    assert "Bluesky login failed" in caplog.text
    clock.now = part.next_awake()
    assert [p.text for p in part.next_batch()] == ["earnings"]
