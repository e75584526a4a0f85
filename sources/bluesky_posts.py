"""Bluesky posts through the atproto client: the newest posts for each keyword.

Keywords are the static financial terms of `BLUESKY_KEYWORDS` plus each company's `company_name` and
`related_words` from `companies_info` (re-read every `TICKERS_REFRESH_SECONDS`). One partition walks
the keywords, one search per poll, `BLUESKY_KEYWORD_DELAY_SECONDS` (2 s) apart, and starts a new cycle
every `BLUESKY_CYCLE_SECONDS` (30 s). A search reads pages of the newest posts (`sort=latest`) until a
page holds a post it has seen or `BLUESKY_MAX_PAGES` pages were read. Each post carries the tickers its
keyword stands for (`keyword_tickers`: each company whose name or related words hold the keyword, and
`marketstream.social.MARKET` for a static term), as `companies_info` says when the post is published.

The client logs in once and keeps its session; atproto refreshes the tokens before they expire, so
cycles reuse one session. A post is published once per keyword: the URIs already published are Bytewax
state, bounded to `DEDUP_MEMORY_PER_KEY` per keyword, so they survive a restart with recovery.

Delivery guarantee: at-least-once (see `sources.polling`). A 429 waits for Retry-After or the
rate-limit reset; 5xx, timeouts and malformed answers are retried with backoff; credentials Bluesky
rejects stop the source with a message naming BLUESKY_IDENTIFIER / BLUESKY_PASSWORD.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
from atproto import Client
from atproto_client import exceptions as at

from marketstream.companies import CompanyDirectory
from marketstream.dedup import RecentlySeen
from marketstream.social import MARKET, BlueskyPost
from sources.polling import PermanentError, PollingSource, TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlueskySearch:
    """Who searches where, for what, and how often."""

    identifier: str
    password: str = field(repr=False)
    api_url: str
    static_keywords: tuple[str, ...]
    keyword_delay_seconds: float
    cycle_seconds: float
    posts_per_search: int
    max_pages: int
    memory_per_keyword: int
    """How many published post URIs are remembered per keyword."""


def keyword_tickers(static_keywords: tuple[str, ...], directory: CompanyDirectory) -> dict[str, tuple[str, ...]]:
    """Each keyword (static terms, then each company's name and related words; each once, in that order) with
    whom it stands for: `MARKET` for a static term, the ticker of each company naming it; sorted."""
    found: dict[str, set[str]] = {}
    for word in static_keywords:
        if word:
            found.setdefault(word, set()).add(MARKET)
    for company in directory.companies():
        for word in (company.company_name, *company.related_words):
            if word:
                found.setdefault(word, set()).add(company.ticker)
    return {word: tuple(sorted(tickers)) for word, tickers in found.items()}


def keywords(static_keywords: tuple[str, ...], directory: CompanyDirectory) -> list[str]:
    """Static terms, then each company's name and related words; each once, in that order."""
    return list(keyword_tickers(static_keywords, directory))


def _moment(text: str | None) -> datetime:
    moment = datetime.fromisoformat(text or "")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _transient(what: str, exc: Exception) -> TransientError:
    """A retryable failure; for a 429, wait as long as Retry-After or the rate-limit reset says."""
    if isinstance(exc, at.RateLimitExceededError):
        wait = exc.retry_after
        if wait is None and exc.reset_at is not None:
            wait = max((exc.reset_at - datetime.now(timezone.utc)).total_seconds(), 0.0)
        return TransientError(f"{what}: Bluesky rate limit reached", wait)
    return TransientError(f"{what} failed: {type(exc).__name__}: {exc}")


class BlueskyPoller:
    def __init__(self, search: BlueskySearch, directory: CompanyDirectory):
        self._search_config = search
        self._directory = directory
        self._client: Client | None = None
        self._delay = timedelta(seconds=search.keyword_delay_seconds)
        self._cycle = timedelta(seconds=search.cycle_seconds)

    def initial_state(self) -> dict:
        return {"queue": [], "cycle_started": None, "seen": {}}

    def _session(self) -> Client:
        if self._client is None:
            search = self._search_config
            client = Client(base_url=search.api_url)
            try:
                client.login(search.identifier, search.password, fetch_bsky_profile=False)
            except (at.UnauthorizedError, at.BadRequestError) as exc:
                raise PermanentError(f"Bluesky rejected BLUESKY_IDENTIFIER / BLUESKY_PASSWORD: {exc}") from None
            except (at.AtProtocolError, httpx.TransportError) as exc:  # a connection dropped at login is not wrapped
                raise _transient("Bluesky login", exc) from None
            log.info("bluesky: logged in as %s", search.identifier)
            self._client = client
        return self._client

    def _search(self, keyword: str, cursor: str | None):
        client = self._session()
        params = {"q": keyword, "limit": self._search_config.posts_per_search, "sort": "latest"}
        if cursor:
            params["cursor"] = cursor
        try:
            return client.app.bsky.feed.search_posts(params=params)
        except at.UnauthorizedError as exc:
            self._client = None  # the session is gone: log in again on the next poll
            raise TransientError(f"Bluesky session rejected ({exc}); logging in again") from None
        except (at.AtProtocolError, httpx.TransportError, ValueError) as exc:
            raise _transient(f"Bluesky search for {keyword!r}", exc) from None

    def _post(self, keyword: str, tickers: tuple[str, ...], view) -> BlueskyPost | None:
        try:
            record = view.record
            langs = getattr(record, "langs", None) or []
            return BlueskyPost(
                uri=view.uri, cid=view.cid, author_handle=view.author.handle, author_did=view.author.did,
                text=getattr(record, "text", ""), created_at=_moment(getattr(record, "created_at", None)),
                indexed_at=_moment(view.indexed_at), like_count=view.like_count or 0,
                repost_count=view.repost_count or 0, reply_count=view.reply_count or 0,
                language=langs[0] if langs else None, keyword=keyword, tickers=tickers,
            )
        except (AttributeError, ValueError, TypeError) as exc:
            log.warning("bluesky: skipping a malformed post for %r (%s): %.200r", keyword, exc, view)
            return None

    def poll(self, state: dict, now: datetime) -> tuple[list[BlueskyPost], datetime]:
        if not state["queue"]:
            state["queue"] = keywords(self._search_config.static_keywords, self._directory)
            state["cycle_started"] = now
            state["seen"] = {k: v for k, v in state["seen"].items() if k in state["queue"]}  # forget dropped keywords
        keyword = state["queue"][0]
        seen = state["seen"].setdefault(keyword, RecentlySeen(self._search_config.memory_per_keyword))
        # whom the keyword stands for as companies_info says now (a keyword added or moved applies from its
        # next search on; one no company lists any more stands for nobody until the cycle ends)
        tickers = keyword_tickers(self._search_config.static_keywords, self._directory).get(keyword, ())
        posts, cursor = [], None
        for _ in range(self._search_config.max_pages):
            page = self._search(keyword, cursor)
            fresh = [post for post in (self._post(keyword, tickers, view) for view in page.posts or []) if post]
            new = [post for post in fresh if post.uri not in seen and all(p.uri != post.uri for p in posts)]
            posts += new
            cursor = page.cursor
            if not cursor or len(new) < len(fresh) or not fresh:
                break
        for post in posts:
            seen.add(post.uri)
        state["queue"].pop(0)
        if state["queue"]:
            return posts, now + self._delay
        return posts, max(state["cycle_started"] + self._cycle, now + self._delay)

    def close(self) -> None:
        self._client = None


def bluesky_source(search: BlueskySearch, directory: CompanyDirectory, **kwargs) -> PollingSource:
    """One partition walking every keyword; `kwargs` go to `PollingSource` (`run_for`, `now`, ...)."""
    return PollingSource(["bluesky"], lambda _: BlueskyPoller(search, directory), **kwargs)
