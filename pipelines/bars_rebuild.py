"""`marketstream rebuild-bars`: the bars of closed or open days computed again from the trades tables, which
are what the bars are defined by (`dataflows.bars_consume` keeps them equal in the stream).

For a bars table written by an earlier version that went wrong (after the trades topic was recreated, say, or
by two deployments at once), and after a backfill added trades to days the stream had missed. Each date is
one commit per bars table (`sinks.bars_table.BarsWriter.replace_day`): its ticker partitions are replaced by
the bars of the trades table's rows for that date, holding every Kafka partition of the topic's current
incarnation through the offset the trades table holds it through, so that a running bars_consume goes on
folding only later trades. A ticker-day whose bars hold later trades than the trades table (the trades
consumer is behind) is left as it is and named: run it again once the trades consumer has caught up.
Safe while bars_consume runs: its commits and these are ordered by the date's transaction id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from marketstream.datasets import STOCK, Dataset, lake_tables
from marketstream.settings import Settings
from pipelines.connectors import shared_object_store
from sinks.bars_table import BarsWriter
from sinks.delta_commits import app_id_prefix

TRADE_COLUMNS = ["ticker", "date", "timestamp", "kafka_partition", "kafka_offset", "price", "size"]


@dataclass
class RebuildReport:
    days: int = 0
    ticker_days: int = 0
    trades: int = 0
    ahead: list[tuple[str, str, date]] = field(default_factory=list)
    """(bars table, ticker, date) left as they were: the bars hold trades the trades table does not yet."""

    def summary(self) -> str:
        text = (f"rebuild-bars: {self.ticker_days:,} ticker-days of {self.days} dates rebuilt from {self.trades:,} "
                "trades")
        if self.ahead:
            named = ", ".join(f"{table} {ticker} {day}" for table, ticker, day in self.ahead[:5])
            more = f" and {len(self.ahead) - 5} more" if len(self.ahead) > 5 else ""
            text += (f"; {len(self.ahead)} left as they were, their bars holding trades the trades table does not yet "
                     f"({named}{more}): run it again once stock_consume has caught up")
        return text


def _held_through(trades: DeltaTable, dataset: Dataset, incarnation: str, partitions: int) -> dict[int, int]:
    """Per Kafka partition of the topic's current incarnation, the offset the trades table holds it through."""
    prefixes = [app_id_prefix(name, dataset.topic, incarnation) for name in (dataset.name, *dataset.former_names)]
    return {p: max(trades.transaction_version(f"{prefix}:{p}") or -1 for prefix in prefixes) for p in range(partitions)}


def rebuild_bars(settings: Settings, start: date, end: date, tickers: list[str] | None = None, *,
                 dataset: Dataset = STOCK, tables: dict[str, str] | None = None) -> RebuildReport:
    """Rebuild the bars of the dates from `start` to `end` (of `tickers`, default every ticker) in both bars
    tables from their trades tables (`tables`: SQL name -> URI, default the lake's; `dataset`: the trades')."""
    options = settings.delta_storage_options()
    tables = tables or lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket)
    topic = settings.kafka_cluster().existing_topic(dataset.topic)
    incarnation, partitions = (topic.incarnation, topic.partitions) if topic is not None else (None, 0)
    report = RebuildReport()
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    report.days = len(days)
    for trades_name, bars_name in ((STOCK.name, "bars"), (STOCK.kept_apart_table, "bars_synthetic")):
        trades_table = DeltaTable(tables[trades_name], storage_options=options)
        held = _held_through(trades_table, dataset, incarnation, partitions) if incarnation else {}
        bucket, _, folder = tables[bars_name].removeprefix("s3://").partition("/")
        writer = BarsWriter(tables[bars_name], bucket, folder, options, shared_object_store(settings)(), incarnation,
                            settings.parquet_compression)
        for day in days:
            filters = [("date", "=", day)] + ([("ticker", "in", tickers)] if tickers else [])
            trades = trades_table.to_pyarrow_table(filters=filters, columns=TRADE_COLUMNS)
            present = writer.tickers_on(day)
            chosen = sorted(set(pc.unique(trades.column("ticker")).to_pylist()) | present)
            if tickers:
                chosen = [ticker for ticker in chosen if ticker in tickers]
            if not chosen:
                continue
            ahead = writer.replace_day(day, trades.select(TRADE_COLUMNS).cast(pa.schema(
                [trades.schema.field(name) for name in TRADE_COLUMNS])), chosen, held)
            report.ahead += [(bars_name, ticker, day) for ticker in ahead]
            report.ticker_days += len(chosen) - len(ahead)
            report.trades += pc.sum(pc.invert(pc.is_in(trades.column("ticker"), pa.array(ahead, pa.string())))).as_py() or 0
    return report
