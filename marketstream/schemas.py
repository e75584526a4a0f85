"""Arrow schemas of every dataset in the lake, declared once.

A schema lists the columns stored inside each Parquet file. Hive partition columns (for example `ticker`
and `date`) live only in object paths and are declared beside the schema as `partitioning`, so readers
such as pyarrow.dataset, DuckDB and Spark add them back. Timestamps are `timestamp[us, tz=UTC]`.
Every file also carries its Kafka lineage (`kafka_partition`, `kafka_offset`). Columns added later are
nullable and come after the lineage, in the order they were added, so a table created with the current
schema and one evolved to it (`sinks.delta_commits.evolve`) have the same columns in the same order.

`*_FEW_VALUES` name the columns with few distinct values, which Parquet dictionary-encodes; the others
(ids, prices, timestamps, texts) are written plain, which for them is both smaller and faster (a 20 000-row
trades file: 246 kB instead of 429 kB, written in half the time).
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

LINEAGE_FIELDS = [
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
]


SENTIMENT_FIELDS = [
    # added in 2026-12 by Delta schema evolution (`sinks.delta_commits.evolve`): null in rows written before;
    # VADER's compound score in [-1, 1] (null: no word to score) and the model that gave it (`marketstream.sentiment`)
    pa.field("sentiment", pa.float64()),
    pa.field("sentiment_model", pa.string()),
]


def dictionary_paths(schema: pa.Schema, names: tuple[str, ...]) -> list[str]:
    """The Parquet column paths of `names` (a list column's values are `<name>.list.element`; a field of the
    structs a list column holds is named `<name>.<field>`)."""
    paths = []
    for name in names:
        column, _, field = name.partition(".")
        path = f"{column}.list.element" if pa.types.is_list(schema.field(column).type) else column
        paths.append(f"{path}.{field}" if field else path)
    return paths


def decoded_columns(schema: pa.Schema, partitioning: pa.Schema) -> pa.Schema:
    """What a decoder yields for a dataset: its partition columns and its file columns but the lineage."""
    lineage = {f.name for f in LINEAGE_FIELDS}
    return pa.schema([*partitioning, *(f for f in schema if f.name not in lineage)])

STOCK_TRADES = pa.schema(
    [
        pa.field("trade_id", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("size", pa.float64(), nullable=False),
        pa.field("exchange", pa.string()),
        pa.field("conditions", pa.list_(pa.string())),
        pa.field("tape", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        *LINEAGE_FIELDS,
    ],
    metadata={"dataset": "stock", "version": "1"},
)

STOCK_TRADES_PARTITIONING = pa.schema([pa.field("ticker", pa.string()), pa.field("date", pa.date32())])
STOCK_TRADES_FEW_VALUES = ("exchange", "conditions", "tape", "source", "kafka_partition")

MACRO_OBSERVATIONS = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("realtime_start", pa.date32(), nullable=False),
        pa.field("fetched_at", TIMESTAMP, nullable=False),
        *LINEAGE_FIELDS,
    ],
    metadata={"dataset": "macro", "version": "1"},
)

MACRO_OBSERVATIONS_PARTITIONING = pa.schema([pa.field("alias", pa.string()), pa.field("year", pa.int32())])
MACRO_OBSERVATIONS_FEW_VALUES = ("series_id", "realtime_start", "kafka_partition")

NEWS_ARTICLES = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("datetime", TIMESTAMP, nullable=False),
        pa.field("headline", pa.string(), nullable=False),
        pa.field("summary", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("image", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("related", pa.string(), nullable=False),
        *LINEAGE_FIELDS,
        *SENTIMENT_FIELDS,
    ],
    metadata={"dataset": "news", "version": "2"},
)

NEWS_ARTICLES_PARTITIONING = pa.schema([pa.field("ticker", pa.string()), pa.field("date", pa.date32())])
NEWS_ARTICLES_FEW_VALUES = ("source", "category", "related", "kafka_partition", "sentiment_model")

BLUESKY_POSTS = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False),
        pa.field("cid", pa.string(), nullable=False),
        pa.field("author_handle", pa.string(), nullable=False),
        pa.field("author_did", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
        pa.field("like_count", pa.int64(), nullable=False),
        pa.field("repost_count", pa.int64(), nullable=False),
        pa.field("reply_count", pa.int64(), nullable=False),
        pa.field("language", pa.string()),
        *LINEAGE_FIELDS,
        *SENTIMENT_FIELDS,
        # added in 2026-12: whom the post's keyword stands for (`marketstream.social`); null in rows before
        pa.field("tickers", pa.list_(pa.string())),
    ],
    metadata={"dataset": "bluesky", "version": "2"},
)

BLUESKY_POSTS_PARTITIONING = pa.schema([pa.field("date", pa.date32()), pa.field("keyword", pa.string())])
BLUESKY_POSTS_FEW_VALUES = ("language", "kafka_partition", "sentiment_model", "tickers")

HELD_THROUGH = pa.list_(pa.struct([pa.field("incarnation", pa.string()), pa.field("kafka_partition", pa.int32()),
                                    pa.field("offset", pa.int64())]))

BARS = pa.schema(
    [
        pa.field("minute", TIMESTAMP, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trades", pa.int64(), nullable=False),
        pa.field("vwap", pa.float64(), nullable=False),
        pa.field("notional", pa.float64(), nullable=False),
        # which trades opened and closed the minute, and which offsets it holds: what merging a later part
        # of the minute needs (`marketstream.bars`)
        pa.field("open_ts", TIMESTAMP, nullable=False),
        pa.field("open_offset", pa.int64(), nullable=False),
        pa.field("close_ts", TIMESTAMP, nullable=False),
        pa.field("close_offset", pa.int64(), nullable=False),
        pa.field("first_offset", pa.int64(), nullable=False),
        pa.field("last_offset", pa.int64(), nullable=False),
        # per Kafka partition of a topic incarnation, the offset through which the minute's trades of that
        # partition are all in the row: what keeps independent writers and replays from folding one twice;
        # null in rows written before 2026-12 (`marketstream.bars.held_entries` reads those)
        pa.field("held_through", HELD_THROUGH),
    ],
    metadata={"dataset": "bars", "version": "2"},
)

# a bar's numbers are nearly all distinct: with every column a dictionary, a file of a ticker's day (300 bars)
# was 24.4 kB and took 0.94 ms to encode, against 18.3 kB and 0.69 ms
BARS_FEW_VALUES = ("held_through.incarnation", "held_through.kafka_partition")

BARS_PARTITIONING = pa.schema([pa.field("ticker", pa.string()), pa.field("date", pa.date32())])

SIGNAL_COUNTS = [
    pa.field(f"{source}_{measure}{suffix}", pa.int64() if measure == "count" else pa.float64(), nullable=measure != "count")
    for suffix in ("", "_15m", "_1h") for source in ("news", "posts") for measure in ("count", "sentiment")
]

SIGNALS = pa.schema(
    [
        # the bar of the minute, as the bars table holds it
        *(BARS.field(name) for name in ("minute", "open", "high", "low", "close", "volume", "vwap", "trades")),
        # per window (the minute, 15 minutes and an hour ending with it): articles and posts of the ticker, and
        # the mean sentiment of those scored (null: none); `marketstream.signals`
        *SIGNAL_COUNTS,
    ],
    metadata={"dataset": "signals", "version": "1"},
)

SIGNALS_PARTITIONING = BARS_PARTITIONING
