"""The signals part of `make bench` (issue 26: signals_consume keeps up with stock_consume): signals_consume
turns the bars of the bench's trades, `--articles` news articles and `--posts` Bluesky posts of the same
tickers and day into signals, against stock_consume's time for the same trades.

The bars are bars_consume's, from the bench's topic (not timed here: `--only bars` times them). The articles
and posts are written straight into Delta tables partitioned as news_consume and bluesky_consume partition
theirs (ticker and New York date; UTC date and keyword), one file per partition, spread over the trading day
and the hour around it: each article names one of the trades' tickers, each post the tickers of its keyword
(one or two) or the market (one in ten), a score on most. signals_consume then runs as its own process
(`bench.flows.signals_consume`) until its first round — every ticker-day at once, as after a backfill — has
ended, timed from the end of its imports. Its trades/s (the bench's trades over its seconds) against
stock_consume's rows/s is the ratio (`signals/stock_consume`; `…_cpu` the same by CPU seconds): at 1 or more it
turns a stretch of trades into signals in no more time than stock_consume takes to store them. A round
computes whole ticker-days again, so this one round over the whole day is also what a live round costs at the
close, when every ticker's day so far has changed since the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from marketstream import schemas
from marketstream.lake import lake_filesystem
from marketstream.settings import Settings

DAY = date(2026, 11, 24)  # the day of the bench's trades (bench.run.prefill: 15:00 to 20:00 UTC)
FIRST, LAST = datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc), datetime(2026, 11, 24, 21, 0, tzinfo=timezone.utc)
KEYWORDS = 100
NEWS = pa.schema([*schemas.NEWS_ARTICLES_PARTITIONING, *schemas.NEWS_ARTICLES])
POSTS = pa.schema([*schemas.BLUESKY_POSTS_PARTITIONING, *schemas.BLUESKY_POSTS])


def _moments(rng: np.random.Generator, count: int) -> pa.Array:
    first, last = (int(moment.timestamp() * 1e6) for moment in (FIRST, LAST))
    return pa.array(np.sort(rng.integers(first, last, count)), pa.int64()).cast(schemas.TIMESTAMP)


def _scores(rng: np.random.Generator, count: int) -> pa.Array:
    return pa.array(rng.uniform(-1, 1, count), pa.float64(), mask=rng.random(count) < 0.1)


def _constant(value, count: int, kind: pa.DataType) -> pa.Array:
    return pa.array([value] * count, kind)


def articles_table(tickers: list[str], count: int, rng: np.random.Generator) -> pa.Table:
    names = pa.array(rng.choice(tickers, count))
    return pa.table({
        "ticker": names, "date": _constant(DAY, count, pa.date32()), "id": pa.array(np.arange(count), pa.int64()),
        "datetime": _moments(rng, count), "headline": _constant("Shares rise after earnings beat", count, pa.string()),
        "summary": _constant("Revenue grew 8% from a year earlier.", count, pa.string()),
        "source": _constant("bench", count, pa.string()), "url": _constant("https://example.com/a", count, pa.string()),
        "image": _constant("", count, pa.string()), "category": _constant("company", count, pa.string()),
        "related": names, "kafka_partition": _constant(0, count, pa.int32()),
        "kafka_offset": pa.array(np.arange(count), pa.int64()), "sentiment": _scores(rng, count),
        "sentiment_model": _constant("vader-3.3.2", count, pa.string())}, NEWS)


def posts_table(tickers: list[str], count: int, rng: np.random.Generator) -> pa.Table:
    named = {f"keyword {k}": [tickers[k % len(tickers)]] + ([tickers[(k + 1) % len(tickers)]] if k % 3 == 0 else [])
             for k in range(KEYWORDS)}
    keywords = rng.choice(list(named), count)
    market = rng.random(count) < 0.1
    at = _moments(rng, count)
    return pa.table({
        "date": pa.array([moment.date() for moment in at.to_pylist()], pa.date32()), "keyword": pa.array(keywords),
        "uri": pa.array([f"at://did:plc:bench/app.bsky.feed.post/{i}" for i in range(count)]),
        "cid": _constant("c", count, pa.string()), "author_handle": _constant("bench.bsky.social", count, pa.string()),
        "author_did": _constant("did:plc:bench", count, pa.string()),
        "text": _constant("great quarter, holding my shares", count, pa.string()), "created_at": at, "indexed_at": at,
        "like_count": _constant(0, count, pa.int64()), "repost_count": _constant(0, count, pa.int64()),
        "reply_count": _constant(0, count, pa.int64()), "language": _constant("en", count, pa.string()),
        "kafka_partition": _constant(0, count, pa.int32()), "kafka_offset": pa.array(np.arange(count), pa.int64()),
        "sentiment": _scores(rng, count), "sentiment_model": _constant("vader-3.3.2", count, pa.string()),
        "tickers": pa.array([["*MARKET*"] if m else named[k] for k, m in zip(keywords, market)], pa.list_(pa.string()))},
        POSTS)


def run(settings: Settings, run_id: str, trades: int, articles: int, posts: int,
        bars_command: Callable[[str], list[str]], signals_command: Callable[[str, str], list[str]],
        run_contender: Callable[[list[str]], dict]) -> dict:
    """Bars of the trades (`bars_command(bucket)`), the articles and posts beside them, then signals_consume
    (`signals_command(bars_uri, prefix)`) timed by `run_contender`; its figures, and what it stored."""
    bars_bucket, bucket = f"bench-sigbars-{run_id}", f"bench-signals-{run_id}"
    options = settings.delta_storage_options()
    fs = lake_filesystem(settings)
    try:
        print("    bars of the trades (bars_consume)", flush=True)
        run_contender(bars_command(bars_bucket))
        bars = DeltaTable(f"s3://{bars_bucket}", storage_options=options).to_pyarrow_table(columns=["ticker"])
        names = sorted(set(bars.column("ticker").to_pylist()))
        rng = np.random.default_rng(26)
        print(f"    {articles:,} articles and {posts:,} posts of their {len(names)} tickers", flush=True)
        fs.mkdir(bucket)
        write_deltalake(f"s3://{bucket}/news", articles_table(names, articles, rng), partition_by=["ticker", "date"],
                        storage_options=options)
        write_deltalake(f"s3://{bucket}/bluesky", posts_table(names, posts, rng), partition_by=["date", "keyword"],
                        storage_options=options)
        print("    signals_consume: one round over every ticker-day", flush=True)
        result = run_contender(signals_command(f"s3://{bars_bucket}", bucket))
        signals = DeltaTable(f"s3://{bucket}/signals", storage_options=options).to_pyarrow_table(
            columns=["news_count", "posts_count"])
        if signals.num_rows != bars.num_rows:
            raise SystemExit(f"signals_consume stored {signals.num_rows} rows for {bars.num_rows} bars")
        result.update(rows=signals.num_rows, bars=bars.num_rows, trades=trades, articles=articles, posts=posts,
                      rows_per_s=signals.num_rows / result["seconds"], trades_per_s=trades / result["seconds"],
                      news_counted=int(np.sum(signals.column("news_count"))),
                      posts_counted=int(np.sum(signals.column("posts_count"))))
        print(f"    {signals.num_rows:,} signals rows in {result['seconds']:.2f} s: {result['rows_per_s']:,.0f} rows/s, "
              f"{result['trades_per_s']:,.0f} trades/s, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        return result
    finally:
        for name in (bars_bucket, bucket):
            if fs.exists(name):
                fs.rm(name, recursive=True)
