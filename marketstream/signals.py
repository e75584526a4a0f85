"""Per-minute signals: each one-minute bar joined with what the news and Bluesky posts said about its ticker.

A signals row is one bar (`marketstream.bars`: ticker, event-time UTC minute, open, high, low, close, volume,
vwap, trades; `date` the New York date) with, for the window of minutes ending with its own:
- `news_count…`: the news articles of the ticker (the `news` table's `ticker`) whose `datetime` falls in the
  window, each article (`id`) once (copies of one article: its earliest `datetime`, their mean `sentiment`); `news_sentiment…`: the mean `sentiment` of those that have one (null when
  none has);
- `posts_count…`, `posts_sentiment…`: the same of the Bluesky posts whose `tickers` name the ticker, by
  `created_at`, each post (`uri`) once per ticker however many keywords found it. Posts without tickers (null
  or empty: before December 2026, or a keyword no company lists) and market-wide posts (`*MARKET*`) belong to
  no ticker's row.
Windows: the minute itself (no suffix), the 15 minutes ending with it (`_15m`: minutes m-14 … m) and the hour
(`_1h`: m-59 … m), on event time, whether or not those minutes have bars. Rows exist for minutes with a
bar; an article in a minute without one counts in the rolling windows of the minutes after it.

`compute` is a pure function of the three tables' rows, so a signals row is whatever the SQL join of the
source tables gives for its minute, however late an item came: the writer (`pipelines.signals`) computes the
rows of every ticker-day a source changed again from the tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketstream.bars import MINUTE_US
from marketstream.schemas import SIGNALS, SIGNALS_PARTITIONING, TIMESTAMP

WINDOWS = {"": 1, "_15m": 15, "_1h": 60}
"""Column suffix -> minutes in the window, ending with the row's own."""
BAR_COLUMNS = ["ticker", "date", "minute", "open", "high", "low", "close", "volume", "vwap", "trades"]
TABLE_SCHEMA = pa.schema([*SIGNALS_PARTITIONING, *SIGNALS])
ITEMS = pa.schema([pa.field("ticker", pa.string()), pa.field("item", pa.string()), pa.field("at", TIMESTAMP),
                   pa.field("sentiment", pa.float64())])


def news_items(news: pa.Table) -> pa.Table:
    """Rows of the news table (`ticker`, `id`, `datetime`, `sentiment`) -> one item per (ticker, article)."""
    items = pa.table({"ticker": news.column("ticker"), "item": pc.cast(news.column("id"), pa.string()),
                      "at": news.column("datetime"), "sentiment": news.column("sentiment")})
    return _distinct(items)


def post_items(posts: pa.Table) -> pa.Table:
    """Rows of the Bluesky table (`uri`, `created_at`, `sentiment`, `tickers`) -> one item per (ticker named
    in `tickers`, post)."""
    tickers = posts.column("tickers").combine_chunks() if posts.num_rows else pa.array([], pa.list_(pa.string()))
    parents = pc.list_parent_indices(tickers)
    items = pa.table({"ticker": pc.list_flatten(tickers),
                      "item": pc.take(posts.column("uri"), parents), "at": pc.take(posts.column("created_at"), parents),
                      "sentiment": pc.take(posts.column("sentiment"), parents)})
    return _distinct(items)


def _distinct(items: pa.Table) -> pa.Table:
    """Each (ticker, item) once (a post found by two keywords, an article stored twice): at its earliest time,
    with the mean score of its copies (null: none scored)."""
    items = items.cast(ITEMS)
    if items.num_rows == 0:
        return items
    return items.group_by(["ticker", "item"], use_threads=False).aggregate(
        [("at", "min"), ("sentiment", "mean")]).rename_columns(["ticker", "item", "at", "sentiment"]).select(ITEMS.names)


def _window_sums(bar_keys: np.ndarray, keys: np.ndarray, values: np.ndarray, minutes: int) -> np.ndarray:
    """For each bar key (ticker index and minute), the sum of `values` of the items whose key lies in the
    `minutes` ending with it; `keys` sorted."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    high = np.searchsorted(keys, bar_keys, side="right")
    low = np.searchsorted(keys, bar_keys - (minutes - 1), side="left")
    return cumulative[high] - cumulative[low]


def _counts(bar_keys: np.ndarray, items: pa.Table, index: dict[str, int], name: str) -> dict[str, pa.Array]:
    known = pc.is_in(items.column("ticker"), pa.array(list(index), pa.string()))
    items = items.filter(known)
    ticker_index = np.array([index[t] for t in items.column("ticker").to_pylist()], dtype=np.int64)
    minutes = np.floor_divide(pc.cast(items.column("at"), pa.int64()).to_numpy(zero_copy_only=False), MINUTE_US)
    keys = (ticker_index << 32) + minutes.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    sentiment = pc.fill_null(items.column("sentiment"), np.nan).to_numpy(zero_copy_only=False).astype(np.float64)[order]
    scored = ~np.isnan(sentiment)
    columns = {}
    for suffix, width in WINDOWS.items():
        count = _window_sums(bar_keys, keys, np.ones(len(keys)), width).round().astype(np.int64)
        n_scored = _window_sums(bar_keys, keys, scored.astype(np.float64), width).round()
        total = _window_sums(bar_keys, keys, np.where(scored, sentiment, 0.0), width)
        mean = np.divide(total, n_scored, out=np.zeros_like(total), where=n_scored > 0)
        columns[f"{name}_count{suffix}"] = pa.array(count, pa.int64())
        columns[f"{name}_sentiment{suffix}"] = pa.array(np.clip(mean, -1.0, 1.0), pa.float64(), mask=n_scored == 0)
    return columns


def compute(bars: pa.Table, news: pa.Table, posts: pa.Table) -> pa.Table:
    """The signals rows of `bars` (rows of a bars table), with the items of `news` (rows of the news table)
    and `posts` (rows of the Bluesky table) in their windows: rows of `TABLE_SCHEMA`, sorted by ticker, date
    and minute. Pass every item whose minute may fall in a window of a bar (the hour before its day too)."""
    bars = bars.select(BAR_COLUMNS).sort_by([("ticker", "ascending"), ("date", "ascending"), ("minute", "ascending")])
    tickers = sorted(set(bars.column("ticker").to_pylist()))
    index = {ticker: i for i, ticker in enumerate(tickers)}
    bar_keys = (np.array([index[t] for t in bars.column("ticker").to_pylist()], dtype=np.int64) << 32) + np.floor_divide(
        pc.cast(bars.column("minute"), pa.int64()).to_numpy(zero_copy_only=False), MINUTE_US)
    columns = {name: bars.column(name) for name in BAR_COLUMNS}
    columns.update(_counts(bar_keys, news_items(news), index, "news"))
    columns.update(_counts(bar_keys, post_items(posts), index, "posts"))
    return pa.table({name: columns[name] for name in TABLE_SCHEMA.names}).cast(TABLE_SCHEMA)
