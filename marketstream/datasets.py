"""The one registry of datasets: what each is called, where it comes from and goes, and how its messages are
checked. The consumer dataflows, the command line, the benchmark and the reports all read it.

| dataset | dataflows | topic | bucket (Delta table) | partitioned by | kept apart | not stored |
|---|---|---|---|---|---|---|
| stock | `stock_produce`, `stock_consume` | `stock_trades` | `stock-data` | ticker, date (New York) | synthetic trades, in `_synthetic/` (table `stock_synthetic`) | real trades outside NYSE sessions |
| macro | `macro_produce`, `macro_consume` | `macrodata` | `macro-data` | alias, year | | |
| news | `news_produce`, `news_consume` | `finnhub` | `finnhub-data` | ticker, date (New York) | | |
| bluesky | `bluesky_produce`, `bluesky_consume` | `bluesky` | `bluesky-data` | date (UTC), keyword | | |

News articles and Bluesky posts are scored for sentiment as they are decoded (`marketstream.sentiment`,
columns `sentiment` and `sentiment_model`): the scoring is part of the dataset's parser here, so the
consumer, the backfill and the benchmark all store the same score.

A dataset's `name` is the one name it goes by: its dataflows are `<name>_produce` and `<name>_consume`
(also their Bytewax flow ids), its SQL table is `<name>`, its dead letters say `dlq.dataset=<name>`, and its
Delta transaction ids are `marketstream:<name>:…`. Topics and buckets keep the names the product was
deployed with. A dataset renamed lists its earlier names in `former_names`, so the offsets committed under
them still count (see the README on upgrading).
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
from marketstream.sentiment import article_text, post_text, scoring
from marketstream.settings import Settings
from marketstream.social import parse_post
from marketstream.trades import decode_trades, outside_session, parse_trade, prepare_session_check, synthetic_apart

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
    prepare: Callable[[], None] | None = None
    """Start-up work its decoding or `skip` would otherwise do in the first batch; a consumer runs it on a
    thread of its own while the rest of its start-up waits for the servers."""
    few_values: tuple[str, ...] = ("kafka_partition",)
    """Columns with few distinct values, dictionary-encoded in Parquet (`marketstream.schemas`)."""
    kept_apart_table: str | None = None
    """The SQL name of the table of rows kept apart by `prefix`."""
    former_names: tuple[str, ...] = ()
    """Names the dataset had before: its tables' transaction ids under them are still read."""
    natural_key: tuple[str, ...] = ()
    """File columns that identify a record within its partition (with the partition columns: `identity`)."""
    published_twice: bool = False
    """Whether its producers may publish a record twice (the API producers are at-least-once): then the
    lake checks each row's natural key and stores each once (`sinks.stored_keys`). Otherwise rows are
    identified by their Kafka offsets alone: the trade producers never publish a trade id twice."""

    @property
    def identity(self) -> tuple[str, ...]:
        """The columns that identify a stored row: its partition's and its natural key."""
        return (*self.partitioning.names, *self.natural_key)

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


STOCK = Dataset(
    name="stock",
    topic="stock_trades",
    bucket="stock-data",
    schema=schemas.STOCK_TRADES,
    partitioning=schemas.STOCK_TRADES_PARTITIONING,
    few_values=schemas.STOCK_TRADES_FEW_VALUES,
    parse=parse_trade,
    decode_batch=decode_trades,
    prefix=synthetic_apart,
    kept_apart_table="stock_synthetic",
    skip=outside_session,
    prepare=prepare_session_check,
    former_names=("stock_trades",),
    natural_key=("trade_id",),
)

MACRO = Dataset(
    name="macro",
    topic="macrodata",
    bucket="macro-data",
    schema=schemas.MACRO_OBSERVATIONS,
    partitioning=schemas.MACRO_OBSERVATIONS_PARTITIONING,
    few_values=schemas.MACRO_OBSERVATIONS_FEW_VALUES,
    parse=parse_macro,
    former_names=("macrodata",),
    natural_key=("series_id", "date", "realtime_start"),
    published_twice=True,
)

NEWS = Dataset(
    name="news",
    topic="finnhub",
    bucket="finnhub-data",
    schema=schemas.NEWS_ARTICLES,
    partitioning=schemas.NEWS_ARTICLES_PARTITIONING,
    few_values=schemas.NEWS_ARTICLES_FEW_VALUES,
    parse=scoring(parse_news, article_text),
    former_names=("finnhub",),
    natural_key=("id",),
    published_twice=True,
)

BLUESKY = Dataset(
    name="bluesky",
    topic="bluesky",
    bucket="bluesky-data",
    schema=schemas.BLUESKY_POSTS,
    partitioning=schemas.BLUESKY_POSTS_PARTITIONING,
    few_values=schemas.BLUESKY_POSTS_FEW_VALUES,
    parse=scoring(parse_post, post_text),
    natural_key=("uri",),
    published_twice=True,
)

DATASETS = {dataset.name: dataset for dataset in (STOCK, MACRO, NEWS, BLUESKY)}


BARS_TABLES = ("bars", "bars_synthetic")
"""The one-minute bars derived from `stock` (`dataflows.bars_consume`): real trades' and synthetic trades'."""


def lake_tables(kept_apart_prefix: str, bars_bucket: str = "bars-data") -> dict[str, str]:
    """Each Delta table of the lake by its SQL name (the dataset's), with its URI; rows a dataset keeps
    apart (synthetic trades) are a table of their own, under `kept_apart_prefix` of its bucket, and so are
    the bars of synthetic trades in `bars_bucket`."""
    tables = {}
    for dataset in DATASETS.values():
        tables[dataset.name] = f"s3://{dataset.bucket}"
        if dataset.kept_apart_table:
            tables[dataset.kept_apart_table] = f"s3://{dataset.bucket}/{kept_apart_prefix}"
    tables[BARS_TABLES[0]] = f"s3://{bars_bucket}"
    tables[BARS_TABLES[1]] = f"s3://{bars_bucket}/{kept_apart_prefix}"
    return tables


SIGNALS_TABLES = ("signals", "signals_synthetic")
"""Per-minute signals (`dataflows.signals_consume`): the bars of real trades' and of synthetic trades', each
joined with the news and the posts of their ticker (`marketstream.signals`)."""


def signals_tables(kept_apart_prefix: str, signals_bucket: str = "signals-data") -> dict[str, str]:
    """Each signals table by its SQL name, with its URI (rows of synthetic bars under `kept_apart_prefix`). Not
    among `lake_tables`: lake maintenance leaves them alone (each round of their writer replaces ticker-days
    whole, so they need no compaction, and delta-rs's optimize must not race those replacements)."""
    return {SIGNALS_TABLES[0]: f"s3://{signals_bucket}", SIGNALS_TABLES[1]: f"s3://{signals_bucket}/{kept_apart_prefix}"}
