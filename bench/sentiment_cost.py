"""What sentiment scoring costs the news and Bluesky consumers: their decode step (`Dataset.decode`, where the
scoring happens) timed on the same messages with and without the scorer, in this process and on one thread,
as the consumer's worker runs it; against the peak rates their producers can publish at.

The producers' peaks, from the settings' defaults: `bluesky_produce` makes one search every
`BLUESKY_KEYWORD_DELAY_SECONDS` (2 s) of at most `BLUESKY_MAX_PAGES` (3) pages of `BLUESKY_POSTS_PER_SEARCH`
(25) posts: 37.5 posts/s. `news_produce` makes at most `FINNHUB_CALLS_PER_MINUTE` (55) calls a minute; taking
an answer to hold at most `ARTICLES_PER_CALL` articles (a busy large-cap's news of two days), 229 articles/s.
"""

from __future__ import annotations

import time
from dataclasses import replace

import orjson

from marketstream.datasets import BLUESKY, NEWS
from marketstream.news import parse_news
from marketstream.social import parse_post

ARTICLES_PER_CALL = 250
HEADLINES = [
    "Apple beats quarterly earnings estimates as iPhone sales rise",
    "Tesla misses delivery targets and shares plunge",
    "Microsoft to hold annual shareholder meeting on December 5",
    "Bank shares tumble on fears of loan defaults",
    "Nvidia shares jump after record data-center revenue",
]
SUMMARY = ("Revenue grew 8% from a year earlier and the company raised its dividend, while analysts said demand in "
           "China stayed weak and margins could come under pressure next quarter as costs rise. ") * 2
POSTS = [
    "$AAPL just crushed earnings, holding my shares forever 🚀🚀",
    "this market crash is brutal, lost so much money today 😡",
    "Apple earnings call is tomorrow at 5pm ET",
    "Nvidia is way overvalued, this bubble will burst badly",
    "great day in the stock market, my portfolio is up 4% 😀 not selling anything before the Fed meeting",
]


def messages(rows: int) -> tuple[list[bytes], list[bytes]]:
    """`rows` news messages (a headline and a ~400-character summary) and `rows` posts (50–100 characters)."""
    news = [orjson.dumps({"id": i + 1, "ticker": "AAPL", "datetime": "2026-11-24T15:00:00.000000Z",
                          "headline": f"{HEADLINES[i % len(HEADLINES)]} ({i})", "summary": SUMMARY, "source": "Yahoo",
                          "url": f"https://example.com/{i}", "image": "", "category": "company", "related": "AAPL"})
            for i in range(rows)]
    posts = [orjson.dumps({"uri": f"at://did:plc:a/app.bsky.feed.post/{i}", "cid": "c", "author_handle": "a.bsky.social",
                           "author_did": "did:plc:a", "text": f"{POSTS[i % len(POSTS)]} #{i}",
                           "created_at": "2026-11-24T15:00:00.000000Z", "indexed_at": "2026-11-24T15:00:01.000000Z",
                           "like_count": 0, "repost_count": 0, "reply_count": 0, "language": "en", "keyword": "earnings"})
             for i in range(rows)]
    return news, posts


def _rate(dataset, values: list[bytes], batch: int = 500) -> float:
    """Rows per second of `dataset.decode` over `values`, in batches as a poll brings them."""
    started = time.perf_counter()
    stored = 0
    for start in range(0, len(values), batch):
        table, rejects = dataset.decode(values[start:start + batch])
        assert not rejects, rejects[:1]
        stored += table.num_rows
    return stored / (time.perf_counter() - started)


def run(rows: int, *, keyword_delay_s: float = 2.0, max_pages: int = 3, posts_per_search: int = 25,
        calls_per_minute: float = 55.0) -> dict:
    news, posts = messages(rows)
    unscored = {"news": replace(NEWS, parse=parse_news), "bluesky": replace(BLUESKY, parse=parse_post)}
    peaks = {"news": calls_per_minute / 60 * ARTICLES_PER_CALL, "bluesky": max_pages * posts_per_search / keyword_delay_s}
    found = {"rows": rows}
    for name, scored, values in (("news", NEWS, news), ("bluesky", BLUESKY, posts)):
        _rate(scored, values[: min(rows, 200)])  # VADER's lexicon loaded, caches warm
        without = _rate(unscored[name], values)
        with_scoring = _rate(scored, values)
        found[name] = {
            "decode_rows_per_s_without_sentiment": without,
            "decode_rows_per_s_with_sentiment": with_scoring,
            "scoring_us_per_row": (1 / with_scoring - 1 / without) * 1e6,
            "producer_peak_rows_per_s": peaks[name],
            "headroom": with_scoring / peaks[name],
        }
    return found
