"""The one registry of datasets: what each is called, where it comes from and goes, and how its messages are
checked. The consumer dataflows, the command line, the benchmark and the reports all read it.

| dataset | topic | bucket (Delta table) | partitioned by | kept apart | not stored |
|---|---|---|---|---|---|
| stock_trades | `stock_trades` | `stock-data` | ticker, date (New York) | synthetic trades, in `_synthetic/` | real trades outside NYSE sessions |
| macrodata | `macrodata` | `macro-data` | alias, year | | |
| finnhub | `finnhub` | `finnhub-data` | ticker, date (New York) | | |
| bluesky | `bluesky` | `bluesky-data` | date (UTC), keyword | | |

A dataset's `name` is part of its stored identity (the Delta transaction ids `marketstream:<name>:…`, the
dead letters' `dlq.dataset`, the Bytewax flow id `<name>_consume` its recovery state is kept under):
renaming one is a migration, not an edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from marketstream import schemas
from marketstream.macro import parse_macro
from marketstream.news import parse_news
from marketstream.records import decode_each
from marketstream.schemas import decoded_columns
from marketstream.settings import Settings
from marketstream.social import parse_post
from marketstream.trades import decode_trades, outside_session, parse_trade, synthetic_apart

Decoder = Callable[[list], tuple[pa.Table, list[tuple[int, str]]]]


@dataclass(frozen=True)
class Dataset:
    """What a consumer needs to know about one dataset."""

    name: str
    topic: str
    bucket: str
    schema: pa.Schema
    """The columns of each Parquet file, lineage included (`marketstream.schemas`)."""
    partitioning: pa.Schema
    """The hive partition columns, in path order."""
    parse: Callable[[bytes | None], dict]
    """The authoritative validation of one message: a row of partition and file columns, or InvalidRecord."""
    decode_batch: Decoder | None = None
    """A faster decoder of a whole batch with the same verdicts as `parse`; by default `parse` per message."""
    prefix: Callable[[pa.Table, Settings], pa.Array] | None = None
    """Per row, an object-key prefix above the hive partitions, for rows kept apart (synthetic trades)."""
    skip: Callable[[pa.Table], tuple[pa.Array, str]] | None = None
    """A mask of valid rows the dataset does not store (counted and logged), with the reason."""
    few_values: tuple[str, ...] = ("kafka_partition",)
    """Columns with few distinct values, dictionary-encoded in Parquet (`marketstream.schemas`)."""

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def columns(self) -> pa.Schema:
        return decoded_columns(self.schema, self.partitioning)

    def decode(self, values: list) -> tuple[pa.Table, list[tuple[int, str]]]:
        if self.decode_batch is not None:
            return self.decode_batch(values)
        return decode_each(self.parse, self.columns, values)


STOCK_TRADES = Dataset(
    name="stock_trades",
    topic="stock_trades",
    bucket="stock-data",
    schema=schemas.STOCK_TRADES,
    partitioning=schemas.STOCK_TRADES_PARTITIONING,
    few_values=schemas.STOCK_TRADES_FEW_VALUES,
    parse=parse_trade,
    decode_batch=decode_trades,
    prefix=synthetic_apart,
    skip=outside_session,
)

MACRO_OBSERVATIONS = Dataset(
    name="macrodata",
    topic="macrodata",
    bucket="macro-data",
    schema=schemas.MACRO_OBSERVATIONS,
    partitioning=schemas.MACRO_OBSERVATIONS_PARTITIONING,
    few_values=schemas.MACRO_OBSERVATIONS_FEW_VALUES,
    parse=parse_macro,
)

NEWS_ARTICLES = Dataset(
    name="finnhub",
    topic="finnhub",
    bucket="finnhub-data",
    schema=schemas.NEWS_ARTICLES,
    partitioning=schemas.NEWS_ARTICLES_PARTITIONING,
    few_values=schemas.NEWS_ARTICLES_FEW_VALUES,
    parse=parse_news,
)

BLUESKY_POSTS = Dataset(
    name="bluesky",
    topic="bluesky",
    bucket="bluesky-data",
    schema=schemas.BLUESKY_POSTS,
    partitioning=schemas.BLUESKY_POSTS_PARTITIONING,
    few_values=schemas.BLUESKY_POSTS_FEW_VALUES,
    parse=parse_post,
)

DATASETS = {dataset.name: dataset for dataset in (STOCK_TRADES, MACRO_OBSERVATIONS, NEWS_ARTICLES, BLUESKY_POSTS)}


def lake_tables(synthetic_prefix: str) -> dict[str, str]:
    """Each Delta table of the lake by its SQL name, with its URI (synthetic trades are a table of their own,
    under `synthetic_prefix` of the stock bucket)."""
    return {
        "stock_trades": f"s3://{STOCK_TRADES.bucket}",
        "synthetic_trades": f"s3://{STOCK_TRADES.bucket}/{synthetic_prefix}",
        "macro_observations": f"s3://{MACRO_OBSERVATIONS.bucket}",
        "news_articles": f"s3://{NEWS_ARTICLES.bucket}",
        "bluesky_posts": f"s3://{BLUESKY_POSTS.bucket}",
    }
