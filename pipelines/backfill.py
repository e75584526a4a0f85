"""Historical backfill: trades from Alpaca's REST API and company news from Finnhub, for closed days, into the
same Delta tables the consumers write.

The unit of work is one ticker and one day. Its records are fetched whole (trades in hourly windows over
the NYSE session, news for the day), checked by the dataset's own contract (`Dataset.decode`: what the
consumer would dead-letter is counted here by reason and not stored; real trades outside the session are
skipped by the same rule), and merged into the table on their key (`sinks.delta_merge`), the registry's `Dataset.identity`: (ticker,
date, trade_id) or (ticker, date, id). The merge commit also records the unit as done (a Delta transaction id
`marketstream:backfill:<dataset>:<ticker>:<date>`), so a second run skips it and a run stopped half-way
resumes where it stopped; `again=True` fetches done units again, and still inserts only rows the table
lacks. Rows written by a backfill carry `kafka_partition = -1` and `kafka_offset = -1`: they never came
through Kafka.

Today is refused: the live consumer is writing it, and a merge racing its appends could store a trade
twice. Backfill up to yesterday; today's trades come from the stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from marketstream.calendar import exchange_date, nyse
from marketstream.datasets import NEWS, STOCK, Dataset
from marketstream.metrics import reason_kind
from marketstream.records import ROW_INDEX
from pipelines.progress import Progress
from sinks.delta_commits import open_or_create
from sinks.delta_merge import is_done, merge_new_rows
from sinks.object_store import ObjectStore

WINDOW = timedelta(hours=1)


class BackfillError(ValueError):
    """A backfill that cannot start: the message names the option."""


@dataclass
class BackfillReport:
    units: int = 0
    already_done: int = 0
    fetched: int = 0
    inserted: int = 0
    outside_session: int = 0
    rejected: Counter = field(default_factory=Counter)

    def summary(self, what: str) -> str:
        rejected = sum(self.rejected.values())
        line = (f"{what}: {self.units} ticker-days ({self.already_done} done before, skipped), {self.fetched:,} records "
                f"fetched, {self.inserted:,} rows inserted, {self.fetched - self.inserted - rejected - self.outside_session:,}"
                f" already in the table, {self.outside_session:,} outside the NYSE session, {rejected:,} rejected")
        if rejected:
            line += " (" + "; ".join(f"{n} × {reason}" for reason, n in self.rejected.most_common(3)) + ")"
        return line


def done_app_id(dataset: str, ticker: str, day: date) -> str:
    return f"marketstream:backfill:{dataset}:{ticker}:{day.isoformat()}"


def session_day(session) -> date:
    return exchange_date(session.open)


def check_range(start: date, end: date, today: date) -> None:
    if end < start:
        raise BackfillError(f"--end {end} is before --start {start}")
    if end >= today:
        raise BackfillError(f"--end {end} is not a closed day: backfill up to {today - timedelta(days=1)} "
                            f"(today's records come from the live stream)")


def stored_rows(dataset: Dataset, messages: list[bytes], report: BackfillReport) -> pa.Table:
    """The rows the dataset's consumer would store from `messages`, with backfill lineage."""
    report.fetched += len(messages)
    table, rejects = dataset.decode(messages)
    report.rejected.update(reason_kind(reason) for _, reason in rejects)
    if dataset.skip is not None and table.num_rows:
        mask, _ = dataset.skip(table)
        report.outside_session += pc.sum(mask).as_py() or 0
        table = table.filter(pc.invert(mask))
    table = table.drop_columns([ROW_INDEX])
    table = table.append_column("kafka_partition", pa.repeat(pa.scalar(-1, pa.int32()), table.num_rows))
    return table.append_column("kafka_offset", pa.repeat(pa.scalar(-1, pa.int64()), table.num_rows))


def _store(dataset: Dataset, uri: str, storage_options: dict[str, str], ticker: str, day: date, rows: pa.Table,
           report: BackfillReport) -> int:
    """Merge the rows of one unit, partition by partition (news published late at night in UTC belongs to
    the day before in New York); the unit's own partition last, with its done mark."""
    schema = pa.schema([*dataset.partitioning, *dataset.schema])
    other_days = sorted(set(rows.column("date").to_pylist()) - {day}) if rows.num_rows else []
    inserted = 0
    for partition_day in [*other_days, day]:
        part = rows.filter(pc.equal(rows.column("date"), pa.scalar(partition_day, pa.date32()))) if rows.num_rows else rows
        inserted += merge_new_rows(uri, storage_options, schema, list(dataset.partitioning.names), part,
                                   keys=list(dataset.identity), partition={"ticker": ticker, "date": partition_day},
                                   done_app_id=done_app_id(dataset.name, ticker, day) if partition_day == day else None)
    report.inserted += inserted
    return inserted


def _backfill(dataset: Dataset, what: str, tickers: list[str], days: list, day_of: Callable[[object], date],
              fetch: Callable[[str, object], list[bytes]], *, store: ObjectStore, bucket: str,
              storage_options: dict[str, str], again: bool, progress: Progress | None) -> BackfillReport:
    """Each (ticker, day) not done before (or every one, `again`): `fetch` its messages, keep what the
    dataset stores, merge it with the day's done mark."""
    store.ensure_bucket(bucket)
    uri = f"s3://{bucket}"
    report = BackfillReport()
    progress = progress or Progress(what, 0, "ticker-days")
    progress.total = len(tickers) * len(days)
    table = open_or_create(uri, storage_options, pa.schema([*dataset.partitioning, *dataset.schema]),
                       list(dataset.partitioning.names))
    for ticker in tickers:
        for day in days:
            report.units += 1
            if not again and is_done(table, done_app_id(dataset.name, ticker, day_of(day))):
                report.already_done += 1
                progress.advance()
                continue
            rows = stored_rows(dataset, fetch(ticker, day), report)
            progress.advance(rows=_store(dataset, uri, storage_options, ticker, day_of(day), rows, report))
    return report


def backfill_trades(history, tickers: list[str], start: date, end: date, *, store: ObjectStore,
                    storage_options: dict[str, str], today: date, again: bool = False,
                    progress: Progress | None = None, bucket: str = STOCK.bucket) -> BackfillReport:
    """Every regular-session trade of `tickers` from `start` to `end` (New York dates) from `history`
    (`sources.alpaca_history.AlpacaTradeHistory`) into the trades table of `bucket` (created if missing)."""
    check_range(start, end, today)

    def session_trades(ticker: str, session) -> list[bytes]:
        messages, opening = [], session.open
        while opening < session.close:
            closing = min(opening + WINDOW, session.close)
            messages.extend(trade.to_json() for trade in history.trades(ticker, opening, closing))
            opening = closing
        return messages

    return _backfill(STOCK, "backfill trades", tickers, nyse().sessions(start, end), session_day, session_trades,
                     store=store, bucket=bucket, storage_options=storage_options, again=again, progress=progress)


def backfill_news(news, tickers: list[str], start: date, end: date, *, store: ObjectStore,
                  storage_options: dict[str, str], today: date, again: bool = False,
                  progress: Progress | None = None, bucket: str = NEWS.bucket) -> BackfillReport:
    """Company news of `tickers` published from `start` to `end` (New York dates) from `news`
    (`sources.finnhub_news.FinnhubNewsHistory`) into the news table of `bucket` (created if missing)."""
    check_range(start, end, today)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    return _backfill(NEWS, "backfill news", tickers, days, lambda day: day, news.messages_for_day,
                     store=store, bucket=bucket, storage_options=storage_options, again=again, progress=progress)
