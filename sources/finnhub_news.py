"""Finnhub company news through finnhub-python, for every ticker in `companies_info`.

One partition cycles through the tickers, one `company_news` call per poll, spaced so a cycle takes
`NEWS_POLL_SECONDS` (60) but never faster than `FINNHUB_CALLS_PER_MINUTE` (55, under the free tier's
60): with many tickers the cycle stretches instead of breaking the limit. Each call asks only for the
dates since that ticker's previous call. An article is published once, under the first ticker that
returns it: the ids already published are Bytewax state (bounded, `DEDUP_MEMORY_PER_KEY` x 20).

Delivery guarantee: at-least-once (see `sources.polling`). 401/403 stop the source (rejected
FINNHUB_API_KEY); 429 waits for Retry-After; 5xx, timeouts and unparsable responses are retried.
The API key travels in the query string, so it is scrubbed from every message this module logs.

`FinnhubNewsHistory` (the backfill's) makes the same call for one ticker and day through a
`sources.pacing.Pacer`, which paces and retries it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import finnhub
import requests

from marketstream.companies import CompanyDirectory
from marketstream.dedup import RecentlySeen
from marketstream.news import NewsArticle
from sources.pacing import Clock, Pacer, PermanentError, TransientError, describe_failure, retry_after_seconds
from sources.polling import PollingSource

log = logging.getLogger(__name__)

HISTORY_SOURCE = "finnhub_history"


@dataclass(frozen=True)
class FinnhubNews:
    """The key, the server (None: Finnhub's own), and the pace."""

    api_key: str = field(repr=False)
    api_url: str | None
    cycle_seconds: float
    calls_per_minute: float
    memory: int
    """How many published article ids are remembered."""


class FinnhubNewsPoller:
    def __init__(self, news: FinnhubNews, directory: CompanyDirectory | None):
        self._key = news.api_key
        self._client = finnhub.Client(api_key=self._key)
        if news.api_url:
            self._client.API_URL = news.api_url.rstrip("/")
        self._directory = directory
        self._cycle = timedelta(seconds=news.cycle_seconds)
        # rounded up to the microsecond, so rounding never squeezes in one call too many per minute
        self._min_gap = timedelta(microseconds=math.ceil(60_000_000 / news.calls_per_minute))
        self._memory = news.memory

    def initial_state(self) -> dict:
        return {"queue": [], "cycle_size": 0, "polled_on": {}, "seen": RecentlySeen(self._memory)}

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***")

    def _company_news(self, ticker: str, since: str, until: str) -> list:
        """`ticker`'s articles from `since` to `until` (ISO dates); failures say why, not which request."""
        try:
            items = self._client.company_news(ticker, _from=since, to=until)
        except finnhub.FinnhubAPIException as exc:
            message = self._scrub(str(exc))
            if exc.status_code in (401, 403):
                raise PermanentError(f"Finnhub rejected FINNHUB_API_KEY: {message}") from None
            retry_after = retry_after_seconds(exc.response.headers) if exc.status_code == 429 else None
            raise TransientError(message, retry_after) from None
        except requests.RequestException as exc:
            raise TransientError(describe_failure(exc)) from None
        except (finnhub.FinnhubRequestException, ValueError) as exc:
            raise TransientError(self._scrub(str(exc))[:200]) from None
        if not isinstance(items, list):
            raise TransientError(f"the answer is {type(items).__name__}, not a list")
        return items

    def _article(self, ticker: str, item: object) -> NewsArticle | None:
        try:
            assert isinstance(item, dict), "not an object"
            article_id, moment = item["id"], item["datetime"]
            assert isinstance(article_id, int) and article_id > 0, "id is not a positive integer"
            assert isinstance(moment, (int, float)) and moment > 0, "datetime is not a Unix time"
            texts = {name: item.get(name) or "" for name in
                     ("headline", "summary", "source", "url", "image", "category", "related")}
            assert all(isinstance(v, str) for v in texts.values()), "a text field is not a string"
            assert texts["headline"], "headline is empty"
        except (AssertionError, KeyError) as exc:
            log.warning("finnhub: skipping a malformed %s article (%s): %.200r", ticker, exc or "missing field", item)
            return None
        return NewsArticle(article_id, ticker, datetime.fromtimestamp(moment, tz=timezone.utc), **texts)

    def poll(self, state: dict, now: datetime) -> tuple[list[NewsArticle], datetime]:
        if not state["queue"]:
            state["queue"] = self._directory.tickers()
            state["cycle_size"] = len(state["queue"])
            if not state["queue"]:
                return [], now + self._cycle
        gap = max(self._cycle / state["cycle_size"], self._min_gap)
        ticker = state["queue"][0]
        today = now.date()
        since = state["polled_on"].get(ticker, (today - timedelta(days=1)).isoformat())
        try:
            items = self._company_news(ticker, since, today.isoformat())
        except TransientError as exc:
            raise TransientError(f"Finnhub request for {ticker} failed: {exc}", exc.retry_after) from None
        state["queue"].pop(0)
        state["polled_on"][ticker] = today.isoformat()
        articles = []
        for item in items:
            article = self._article(ticker, item)
            if article is not None and state["seen"].add(article.id):
                articles.append(article)
        return articles, now + gap

    def close(self) -> None:
        self._client.close()


class FinnhubNewsHistory:
    """Company news of one ticker and one day, for a backfill: the call and the article checks of the
    poller, paced to `calls_per_minute` and retried by a `sources.pacing.Pacer` (429s after Retry-After,
    5xx, timeouts and failed connections for at most `patience_seconds`, then `GaveUp` naming
    FINNHUB_API_URL); a rejected key raises `Refused` at once.

    Delivery guarantee: what Finnhub serves for the day, each article once per call (the backfill
    records what it finished in the table)."""

    def __init__(self, news: FinnhubNews, *, patience_seconds: float = 300, clock: Clock = Clock()):
        self._poller = FinnhubNewsPoller(news, directory=None)
        api = f"Finnhub's API at {news.api_url or finnhub.Client.API_URL} (FINNHUB_API_URL)"
        self._pacer = Pacer(HISTORY_SOURCE, api, news.calls_per_minute, patience_seconds=patience_seconds,
                            clock=clock)

    def messages_for_day(self, ticker: str, day: date) -> list[bytes]:
        items = self._pacer.call(f"company news of {ticker} on {day}",
                                 lambda: self._poller._company_news(ticker, day.isoformat(), day.isoformat()))
        articles = (self._poller._article(ticker, item) for item in items)
        return [article.to_json() for article in articles if article is not None]

    def close(self) -> None:
        self._poller.close()


def finnhub_news_source(news: FinnhubNews, directory: CompanyDirectory, **kwargs) -> PollingSource:
    """One partition cycling through the tickers; `kwargs` go to `PollingSource` (`run_for`, `now`, ...)."""
    return PollingSource(["finnhub"], lambda _: FinnhubNewsPoller(news, directory), **kwargs)
