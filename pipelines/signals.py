"""Per-minute signals from the lake's own tables: `dataflows.signals_consume`.

Every `SIGNALS_INTERVAL_SECONDS` a round looks at the three source tables — a bars table (`bars`, or
`bars_synthetic` for `signals_synthetic`), `news` and `bluesky` — and finds what changed since the versions the
signals table last recorded (`sinks.signals_table`): the files added or removed between those versions and
now, by their partitions. Each changed partition names the ticker-days whose signals may differ:
- a bars partition (ticker, New York date d): that ticker-day;
- a news partition (ticker, d): that ticker on d and d + 1 (the rolling hour reaches past midnight);
- a Bluesky partition (UTC date u, keyword): each ticker its rows name, on u - 1, u and u + 1 (a UTC date
  spans two New York dates).
Those ticker-days that have bars are computed again whole from the tables (`marketstream.signals.compute`,
with the items of the day before and after, for the windows) and replaced, one commit per date; the round's
last commit records the source versions it read. So late trades (corrections of a bar), late articles and
posts, rows a backfill added and compactions all end in the signals of their minutes at the next round,
however late: when a round ends, every row equals the SQL join of the source tables as of the versions recorded.

Several writers of one signals table may run at once (a second deployment started by mistake, a slow one, one
killed mid-round): `sinks.signals_table` lets no commit replace rows computed from newer source versions than
its own, and records a round's versions only if no newer rows landed during it; a round that meets newer rows
is given up (`Round.superseded`) and the next one starts from the table as it then is. Rows another writer
commits after a round ended may be newer than the versions recorded, never older, so the next round, by any
writer, still leaves every row equal to the join.

Why from the tables and not the topics: the bars table already folds every trade exactly once, late ones
included, across restarts, recreated topics and independent writers; the news and Bluesky tables hold their
rows once by the Delta protocol. Reading them keeps one definition of each (the signals cannot disagree
with the tables analysts query) and needs no state of its own beyond the recorded versions, so no Bytewax
recovery: a restart, a kill -9 included, does the unfinished round again. The price is latency: a minute's
signals land one round (10 s) after its bar, which itself lands `BARS_ALLOWED_LATENESS_SECONDS` plus a batch
age after the minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink
from deltalake import DeltaTable

from marketstream import preflight, schemas
from marketstream.datasets import BARS_TABLES, BLUESKY, NEWS, lake_tables
from marketstream.datasets import signals_tables as signals_uris
from marketstream.lake import is_delta_table
from marketstream.settings import Settings
from marketstream.signals import TABLE_SCHEMA, compute
from pipelines.connectors import shared_object_store
from pipelines.runtime import build_or_exit
from sinks.signals_table import SignalsWriter, SupersededRound
from sources.polling import PollingSource, TransientError

log = logging.getLogger(__name__)

SOURCES = ("bars", "news", "bluesky")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class SignalsTable:
    """Where one signals table reads and writes."""

    name: str
    uri: str
    bucket: str
    folder: str
    sources: dict[str, str]
    """Source name (`SOURCES`) -> table URI."""


def signals_tables(settings: Settings) -> list[SignalsTable]:
    """`signals` (from the bars of real trades) and `signals_synthetic` (from the bars of synthetic ones)."""
    prefix, bucket = settings.stock_synthetic_prefix, settings.signals_bucket
    bars = lake_tables(prefix, settings.bars_bucket)
    shared = {"news": bars[NEWS.name], "bluesky": bars[BLUESKY.name]}
    return [SignalsTable(name, uri, bucket, uri.removeprefix(f"s3://{bucket}").strip("/"), {"bars": bars[bars_name], **shared})
            for (name, uri), bars_name in zip(signals_uris(prefix, bucket).items(), BARS_TABLES)]


def _open(uri: str, options: dict[str, str], version: int | None = None) -> DeltaTable | None:
    """The table at `uri`; None while there is none, its bucket included (a source not deployed yet, such as
    Bluesky without credentials: its signals columns stay empty)."""
    if not is_delta_table(uri, options):
        return None
    return DeltaTable(uri, storage_options=options, version=version)


def changed_partitions(table: DeltaTable | None, since: int, options: dict[str, str]) -> list[dict[str, str]]:
    """The partition values of the files added or removed since version `since` (-1: every file)."""
    if table is None or table.version() == since:
        return []
    now = set(_files(table))
    before = set(_files(DeltaTable(table.table_uri, storage_options=options, version=since))) if since >= 0 else set()
    return [dict(partition) for _, partition in now ^ before]


def _files(table: DeltaTable) -> list[tuple[str, tuple]]:
    actions = table.get_add_actions(flatten=True)
    names = [name for name in actions.column_names if name.startswith("partition.")]
    columns = {name.removeprefix("partition."): actions.column(name).to_pylist() for name in names}
    paths = actions.column("path").to_pylist()
    return [(path, tuple((name, str(values[i])) for name, values in columns.items())) for i, path in enumerate(paths)]


def _read(table: DeltaTable | None, filters: list[tuple], columns: list[str], schema: pa.Schema) -> pa.Table:
    if table is None:
        return schema.empty_table().select(columns)
    present = set(table.schema().to_arrow().names)
    rows = table.to_pyarrow_table(filters=filters, columns=[c for c in columns if c in present])
    for name in columns:  # a table of an earlier schema: its rows read null
        if name not in rows.column_names:
            rows = rows.append_column(name, pa.nulls(rows.num_rows, schema.field(name).type))
    return rows.select(columns)


NEWS_SCHEMA = pa.schema([*schemas.NEWS_ARTICLES_PARTITIONING, *schemas.NEWS_ARTICLES])
POSTS_SCHEMA = pa.schema([*schemas.BLUESKY_POSTS_PARTITIONING, *schemas.BLUESKY_POSTS])
BARS_SCHEMA = pa.schema([*schemas.BARS_PARTITIONING, *schemas.BARS])


@dataclass
class Round:
    """What one round did."""

    table: str
    sources: dict[str, int]
    ticker_days: int = 0
    rows: int = 0
    superseded: str = ""
    """Why the round was given up (`SignalsWriter`: another writer's rows are newer); empty: it ended."""

    def __str__(self) -> str:
        versions = ", ".join(f"{name} v{version}" for name, version in self.sources.items())
        done = f"{self.table}: {self.ticker_days} ticker-days, {self.rows} rows computed again ({versions})"
        return f"{done}; given up, another writer's rows are newer ({self.superseded})" if self.superseded else done


def run_round(table: SignalsTable, writer: SignalsWriter, options: dict[str, str]) -> Round:
    """One round: the ticker-days the sources changed since the recorded versions, computed again and replaced;
    given up (`Round.superseded`) when another writer committed rows computed from newer sources meanwhile."""
    recorded = writer.source_versions(list(SOURCES))
    opened = {name: _open(uri, options) for name, uri in table.sources.items()}
    versions = {name: (source.version() if source is not None else -1) for name, source in opened.items()}
    done = Round(table.name, versions)
    if versions == recorded:
        return done
    affected: dict[date, set[str]] = {}

    def touch(ticker: str, day: date) -> None:
        affected.setdefault(day, set()).add(ticker)

    for part in changed_partitions(opened["bars"], recorded["bars"], options):
        touch(part["ticker"], date.fromisoformat(part["date"]))
    for part in changed_partitions(opened["news"], recorded["news"], options):
        day = date.fromisoformat(part["date"])
        touch(part["ticker"], day)
        touch(part["ticker"], day + DAY)
    posts_changed = changed_partitions(opened["bluesky"], recorded["bluesky"], options)
    for utc_day, keywords in _by_date(posts_changed).items():
        named = _read(opened["bluesky"], [("date", "=", utc_day), ("keyword", "in", sorted(keywords))], ["tickers"], POSTS_SCHEMA)
        for ticker in set(pc.list_flatten(named.column("tickers")).to_pylist()):
            for day in (utc_day - DAY, utc_day, utc_day + DAY):
                touch(ticker, day)

    days = sorted(affected)
    computed = []
    for day in days:
        bars = _read(opened["bars"], [("date", "=", day), ("ticker", "in", sorted(affected[day]))],
                     ["ticker", "date", "minute", "open", "high", "low", "close", "volume", "vwap", "trades"], BARS_SCHEMA)
        if bars.num_rows:
            computed.append((day, bars))
    try:
        if not computed:
            writer.record_sources(versions)
        for index, (day, bars) in enumerate(computed):
            tickers = sorted(set(bars.column("ticker").to_pylist()))
            news = _read(opened["news"], [("date", "in", [day - DAY, day]), ("ticker", "in", tickers)],
                         ["ticker", "id", "datetime", "sentiment"], NEWS_SCHEMA)
            posts = _read(opened["bluesky"], [("date", "in", [day - DAY, day, day + DAY])],
                          ["uri", "created_at", "sentiment", "tickers"], POSTS_SCHEMA)
            rows = compute(bars, news, posts)
            writer.replace(day, tickers, rows, versions, last=index == len(computed) - 1)
            done.ticker_days += len(tickers)
            done.rows += rows.num_rows
    except SupersededRound as exc:
        done.superseded = str(exc)
        log.info("signals: %s: round given up, another writer committed rows of newer sources (%s)", table.uri, exc)
    return done


def _by_date(partitions: list[dict[str, str]]) -> dict[date, set[str]]:
    found: dict[date, set[str]] = {}
    for part in partitions:
        found.setdefault(date.fromisoformat(part["date"]), set()).add(part["keyword"])
    return found


class SignalsPoller:
    """A `Poller` over one signals table: each poll is a round."""

    def __init__(self, table: SignalsTable, settings: Settings):
        self._table = table
        self._settings = settings
        self._writer: SignalsWriter | None = None
        self._interval = timedelta(seconds=settings.signals_interval_seconds)

    def initial_state(self) -> None:
        return None

    def poll(self, state: None, now: datetime) -> tuple[list[Round], datetime]:
        settings = self._settings
        options = settings.delta_storage_options()
        try:
            if self._writer is None:
                self._writer = SignalsWriter(self._table.uri, self._table.bucket, self._table.folder, options,
                                             shared_object_store(settings)(), settings.parquet_compression)
            done = run_round(self._table, self._writer, options)
        except Exception as exc:  # noqa: BLE001 - outages and lost races: the round is done again, whole
            self._writer = None
            raise TransientError(f"signals round of {self._table.uri} failed: {str(exc).splitlines()[0][:300]}") from None
        return ([done] if done.ticker_days or done.superseded else []), now + self._interval

    def close(self) -> None:
        pass


def build_signals_flow(settings: Settings, tables: list[SignalsTable] | None = None, *,
                       now: Callable[[], datetime] = lambda: datetime.now(timezone.utc), sink: Sink | None = None) -> Dataflow:
    """A partition per signals table; with `PRODUCE_FOR_SECONDS` the flow ends that long after it starts."""
    flow = Dataflow("signals_consume")
    tables = tables or signals_tables(settings)
    by_uri = {table.uri: table for table in tables}
    source = PollingSource(list(by_uri), lambda uri: SignalsPoller(by_uri[uri], settings), now=now,
                           run_for=settings.produce_for_seconds)
    rounds = op.input("rounds", flow, source)
    op.output("log", op.map("describe", rounds, str), sink or StdOutSink())
    return flow


SIGNALS_NEEDS = ("s3", preflight.delta_tables_of(
    lambda settings: list(signals_uris(settings.stock_synthetic_prefix, settings.signals_bucket).values()),
    TABLE_SCHEMA, list(schemas.SIGNALS_PARTITIONING.names), "a signals table", "SIGNALS_BUCKET"))
"""What the signals flow waits for and checks before it starts (`marketstream.preflight`)."""


def signals_dataflow() -> Dataflow:
    return build_or_exit(build_signals_flow, SIGNALS_NEEDS)
