"""The signals tables on the real stack: every row equals the SQL join of the source tables (DuckDB over the Delta
tables as the reference), for generated bars, articles and posts — late ones, corrections of bars, posts without
tickers or market-wide, articles of tickers without bars — after each round, and a round done again changes
nothing; with several writers at once (one slow, one killed mid-round) while late data arrives, the recorded source
versions never claim more than the rows hold and a final round leaves every row equal to the join."""

from __future__ import annotations

import io
import os
import random
import signal
import sys
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from bytewax.testing import run_main
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from marketstream import schemas
from marketstream.lake import lake_filesystem
from marketstream.signals import TABLE_SCHEMA
from pipelines.cli import sql
from pipelines.sql_command import sql_tables
from pipelines.signals import SignalsTable, build_signals_flow, run_round, signals_tables
from sinks.object_store import ObjectStore
from sinks.signals_table import SignalsWriter
from tests.conftest import STACK_ENV, make_settings
from tests.integration.processes import logged

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)
DAY = date(2026, 11, 24)
BARS = pa.schema([*schemas.BARS_PARTITIONING, *(f for f in schemas.BARS if f.name in
                                                 ("minute", "open", "high", "low", "close", "volume", "trades", "vwap"))])
NEWS = pa.schema([*schemas.NEWS_ARTICLES_PARTITIONING, *schemas.NEWS_ARTICLES])
POSTS = pa.schema([*schemas.BLUESKY_POSTS_PARTITIONING, *schemas.BLUESKY_POSTS])
SENTIMENT = st.one_of(st.none(), st.floats(-1, 1, allow_nan=False))

bar = st.tuples(st.sampled_from(["AAPL", "MSFT", "NVDA"]), st.integers(0, 150), st.floats(1, 500), st.integers(1, 50))
article = st.tuples(st.sampled_from(["AAPL", "MSFT", "ZZZ"]), st.integers(1, 40), st.integers(-80 * 60, 200 * 60), SENTIMENT)
post = st.tuples(st.integers(1, 30), st.sampled_from([None, [], ["*MARKET*"], ["AAPL"], ["AAPL", "MSFT"], ["NVDA"]]),
                 st.integers(-80 * 60, 200 * 60), SENTIMENT, st.sampled_from(["Apple", "earnings", "Tim Cook"]))


def bar_rows(bars) -> list[dict]:
    unique = {(ticker, minute): (price, trades) for ticker, minute, price, trades in bars}
    return [{"ticker": t, "date": DAY, "minute": OPEN + timedelta(minutes=m), "open": p, "high": p + 1, "low": p - 0.5,
             "close": p + 0.25, "volume": float(n * 10), "trades": n, "vwap": p + 0.1} for (t, m), (p, n) in unique.items()]


def news_rows(articles, offset: int) -> list[dict]:
    unique = {(ticker, article_id): (seconds, sentiment) for ticker, article_id, seconds, sentiment in articles}
    rows = []
    for (ticker, article_id), (seconds, sentiment) in unique.items():
        at = OPEN + timedelta(seconds=seconds, microseconds=article_id)
        rows.append({"ticker": ticker, "date": DAY if at.date() == DAY or at.hour >= 5 else DAY - timedelta(days=1),
                     "id": article_id, "datetime": at, "headline": "h", "summary": "", "source": "s", "url": "u",
                     "image": "", "category": "company", "related": ticker, "kafka_partition": 0, "kafka_offset": offset,
                     "sentiment": sentiment, "sentiment_model": "vader-3.3.2"})
    return rows


def post_rows(posts, offset: int) -> list[dict]:
    unique = {(uri, keyword): (tickers, seconds, sentiment) for uri, tickers, seconds, sentiment, keyword in posts}
    first = {}  # a post found by two keywords is the same post: the same text, time and score
    rows = []
    for (uri, keyword), (tickers, seconds, sentiment) in unique.items():
        seconds, sentiment = first.setdefault(uri, (seconds, sentiment))
        at = OPEN + timedelta(seconds=seconds)
        rows.append({"date": at.date(), "keyword": keyword, "uri": f"at://did:plc:a/app.bsky.feed.post/{uri}", "cid": "c",
                     "author_handle": "a", "author_did": "did:plc:a", "text": "t", "created_at": at, "indexed_at": at,
                     "like_count": 0, "repost_count": 0, "reply_count": 0, "language": "en", "kafka_partition": 0,
                     "kafka_offset": offset, "sentiment": sentiment, "sentiment_model": "vader-3.3.2", "tickers": tickers})
    return rows


def moved(rows: list[dict], day: date) -> list[dict]:
    """Rows made for DAY (bars, articles or posts) moved to `day`, times and dates alike."""
    shift = day - DAY
    return [{**row, **{name: row[name] + shift for name in ("date", "minute", "datetime", "created_at", "indexed_at")
                       if name in row}} for row in rows]


REFERENCE = """
WITH n AS (SELECT ticker, id, min(datetime) AS at, avg(sentiment) AS sentiment FROM news GROUP BY ticker, id),
     p AS (SELECT t.ticker, uri, min(created_at) AS at, avg(sentiment) AS sentiment
           FROM bluesky, unnest(tickers) AS t(ticker) GROUP BY t.ticker, uri)
SELECT b.ticker, b.date, b.minute, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades, {windows}
FROM bars b ORDER BY b.ticker, b.date, b.minute
"""


def reference_sql() -> str:
    windows = []
    for suffix, width in (("", 1), ("_15m", 15), ("_1h", 60)):
        for name, items in (("news", "n"), ("posts", "p")):
            where = (f"FROM {items} WHERE {items}.ticker = b.ticker AND epoch_us({items}.at) // 60000000 "
                     f"BETWEEN epoch_us(b.minute) // 60000000 - {width - 1} AND epoch_us(b.minute) // 60000000")
            windows.append(f"(SELECT count(*) {where}) AS {name}_count{suffix}")
            windows.append(f"(SELECT avg(sentiment) {where}) AS {name}_sentiment{suffix}")
    return REFERENCE.format(windows=", ".join(windows))


def reference_rows(table: SignalsTable, options, versions: dict[str, int] | None = None) -> list[dict]:
    """The SQL join of the source tables, as they are now or at `versions` (-1: no table yet)."""
    con = duckdb.connect()
    for name, uri in table.sources.items():
        version = (versions or {}).get(name)
        exists = DeltaTable.is_deltatable(uri, storage_options=options) and (version is None or version >= 0)
        con.register(name, DeltaTable(uri, storage_options=options, version=version).to_pyarrow_table() if exists
                     else {"bars": BARS, "news": NEWS, "bluesky": POSTS}[name].empty_table())
    return con.sql(reference_sql()).to_arrow_table().cast(TABLE_SCHEMA).to_pylist()


def check(table: SignalsTable, options) -> int:
    expected = reference_rows(table, options)
    stored = DeltaTable(table.uri, storage_options=options).to_pyarrow_table().select(TABLE_SCHEMA.names)
    got = stored.sort_by([("ticker", "ascending"), ("date", "ascending"), ("minute", "ascending")]).to_pylist()
    assert len(got) == len(expected)
    for row, want in zip(got, expected):
        for name, value in want.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, abs=1e-9), (name, row, want)
            else:
                assert row[name] == value, (name, row, want)
    return len(got)


@pytest.fixture
def lake(stack):
    settings = make_settings()
    name = f"it-sig-{uuid.uuid4().hex[:8]}"
    fs = lake_filesystem(settings)
    fs.mkdir(name)
    yield settings, name
    if fs.exists(name):
        fs.rm(name, recursive=True)


def _table(name: str) -> SignalsTable:
    return SignalsTable("signals", f"s3://{name}/signals", name, "signals",
                        {"bars": f"s3://{name}/bars", "news": f"s3://{name}/news", "bluesky": f"s3://{name}/bluesky"})


@hypothesis_settings(max_examples=int(os.environ.get("SIGNALS_EXAMPLES", "8")), deadline=None,
                     suppress_health_check=list(HealthCheck))
@given(first=st.tuples(st.lists(bar, min_size=1, max_size=30), st.lists(article, max_size=25), st.lists(post, max_size=25)),
       late=st.tuples(st.lists(bar, max_size=15), st.lists(article, max_size=15), st.lists(post, max_size=15)))
def test_every_signals_row_is_the_sql_join_of_the_source_tables_round_after_round(lake, first, late):
    settings, bucket = lake
    prefix = f"{bucket}/{uuid.uuid4().hex[:6]}"
    table = _table(prefix)
    options = settings.delta_storage_options()
    store = ObjectStore(settings.s3_storage_options())
    writer = SignalsWriter(table.uri, bucket, f"{prefix.split('/', 1)[1]}/signals", options, store)

    bars, articles, posts = first
    write_deltalake(table.sources["bars"], pa.Table.from_pylist(bar_rows(bars), BARS), partition_by=["ticker", "date"],
                    storage_options=options)
    write_deltalake(table.sources["news"], pa.Table.from_pylist(news_rows(articles, 0), NEWS), partition_by=["ticker", "date"],
                    storage_options=options)
    write_deltalake(table.sources["bluesky"], pa.Table.from_pylist(post_rows(posts, 0), POSTS),
                    partition_by=["date", "keyword"], storage_options=options)
    done = run_round(table, writer, options)
    assert check(table, options) == len(bar_rows(bars)) == done.rows

    # late: new minutes and corrections of stored bars (a partition rewritten), articles and posts in minutes
    # that have their signals already, items without a ticker
    late_bars, late_articles, late_posts = late
    if late_bars:
        merged = {(r["ticker"], r["minute"]): r for r in bar_rows(bars)}
        merged.update({(r["ticker"], r["minute"]): r for r in bar_rows(late_bars)})
        write_deltalake(table.sources["bars"], pa.Table.from_pylist(list(merged.values()), BARS), mode="overwrite",
                        partition_by=["ticker", "date"], storage_options=options)
    if late_articles:
        write_deltalake(table.sources["news"], pa.Table.from_pylist(news_rows(late_articles, 1), NEWS), mode="append",
                        partition_by=["ticker", "date"], storage_options=options)
    if late_posts:
        write_deltalake(table.sources["bluesky"], pa.Table.from_pylist(post_rows(late_posts, 1), POSTS), mode="append",
                        partition_by=["date", "keyword"], storage_options=options)
    run_round(table, writer, options)
    rows = check(table, options)
    version = DeltaTable(table.uri, storage_options=options).version()
    again = run_round(table, SignalsWriter(table.uri, bucket, f"{prefix.split('/', 1)[1]}/signals", options, store), options)
    assert again.ticker_days == 0 and DeltaTable(table.uri, storage_options=options).version() == version
    assert check(table, options) == rows


def test_the_dataflow_writes_signals_round_after_round(lake):
    settings, bucket = lake
    options = settings.delta_storage_options()
    table = _table(bucket)
    write_deltalake(table.sources["bars"], pa.Table.from_pylist(bar_rows([("AAPL", 0, 100.0, 3), ("MSFT", 2, 50.0, 1)]), BARS),
                    partition_by=["ticker", "date"], storage_options=options)
    write_deltalake(table.sources["news"], pa.Table.from_pylist(news_rows([("AAPL", 1, 30, 0.5)], 0), NEWS),
                    partition_by=["ticker", "date"], storage_options=options)
    flow = build_signals_flow(make_settings(produce_for_seconds=3, signals_interval_seconds=1), [table])
    run_main(flow)
    rows = DeltaTable(table.uri, storage_options=options).to_pyarrow_table().sort_by("ticker").to_pylist()
    assert [(r["ticker"], r["news_count"], r["news_sentiment"], r["posts_count"]) for r in rows] == \
        [("AAPL", 1, 0.5, 0), ("MSFT", 0, None, 0)]
    out = io.StringIO()
    assert sql(settings, "SELECT ticker, news_count FROM signals ORDER BY ticker", tables={"signals": table.uri}, out=out) == 0
    assert out.getvalue().split()[2:] == ["AAPL", "1", "MSFT", "0"]


def test_the_signals_tables_read_the_bars_of_real_and_synthetic_trades_and_are_views_of_marketstream_sql():
    settings = make_settings(signals_bucket="sig", bars_bucket="bars-x")
    assert [(t.name, t.uri, t.bucket, t.folder, t.sources["bars"]) for t in signals_tables(settings)] == [
        ("signals", "s3://sig", "sig", "", "s3://bars-x"),
        ("signals_synthetic", "s3://sig/_synthetic", "sig", "_synthetic", "s3://bars-x/_synthetic")]
    assert {"signals": "s3://sig", "signals_synthetic": "s3://sig/_synthetic"}.items() <= sql_tables(settings).items()


@pytest.mark.faults  # a process killed and restarted: `make test-faults`, not `make test`
def test_a_writer_killed_mid_round_does_the_round_again_and_leaves_every_row_equal_to_the_join(lake):
    """kill -9 of signals_consume after some of a round's date commits landed (the round's source versions
    not recorded yet); the restarted flow does the round again, whole: every row once, equal to the SQL join."""
    settings, bucket = lake
    options = settings.delta_storage_options()
    table = _table(bucket)
    days = [DAY + timedelta(days=i) for i in range(-30, 0)]
    bars = [row for day in days
            for row in moved(bar_rows([("AAPL", m, 100.0 + m, 2) for m in range(0, 30, 3)] + [("MSFT", 5, 50.0, 1)]), day)]
    news = [{**row, "id": row["id"] + 100 * i} for i, day in enumerate(days)
            for row in moved(news_rows([("AAPL", 1, 60, 0.5), ("AAPL", 2, 400, -0.25)], 0), day)]
    write_deltalake(table.sources["bars"], pa.Table.from_pylist(bars, BARS), partition_by=["ticker", "date"], storage_options=options)
    write_deltalake(table.sources["news"], pa.Table.from_pylist(news, NEWS), partition_by=["ticker", "date"], storage_options=options)
    command = [sys.executable, "-m", "bytewax.run", f"tests.integration.flows:signals_consume({bucket!r})"]
    env = {**os.environ, **STACK_ENV, "SIGNALS_INTERVAL_SECONDS": "1"}
    first = logged(command, env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    version = -1
    while time.monotonic() < deadline and first.poll() is None:
        if DeltaTable.is_deltatable(table.uri, storage_options=options):
            version = DeltaTable(table.uri, storage_options=options).version()
            if version >= 3:  # creation, then at least two of the round's 30 date commits
                break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed = DeltaTable(table.uri, storage_options=options)
    assert killed.version() >= 3, first.log.seek(0) or first.log.read()[-2000:]
    assert killed.transaction_version("marketstream:signals:source:bars") is None, "the round ended before the kill"

    again = logged(command, env={**env, "PRODUCE_FOR_SECONDS": "20"}, cwd=REPO)
    assert again.wait(120) == 0, again.log.seek(0) or again.log.read()[-2000:]
    assert check(table, options) == len(bars)
    restarted = DeltaTable(table.uri, storage_options=options)
    assert restarted.transaction_version("marketstream:signals:source:bars") == 0


def test_a_source_table_whose_bucket_does_not_exist_yet_is_no_table_not_a_failed_round(stack):
    """Found by the console's tests: a lake without Bluesky (no bucket) failed every round."""
    from pipelines.signals import _open

    assert _open(f"s3://never-made-{uuid.uuid4().hex[:8]}", make_settings().delta_storage_options()) is None


def _same_rows(got: list[dict] | None, want: list[dict] | None) -> bool:
    """The same rows, floats to 1e-9 (the code sums windows, SQL averages them)."""
    got, want = got or [], want or []
    return len(got) == len(want) and all(
        (a[name] == pytest.approx(b[name], abs=1e-9)) if isinstance(b[name], float) else a[name] == b[name]
        for a, b in zip(got, want) for name in TABLE_SCHEMA.names)


def _by_ticker_day(rows: list[dict]) -> dict[tuple, list[dict]]:
    days: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["ticker"], r["date"], r["minute"])):
        days.setdefault((row["ticker"], row["date"]), []).append(row)
    return days


def assert_recorded_versions_claim_no_more_than_the_rows_hold(table: SignalsTable, options) -> dict[str, int | None]:
    """The table between rounds, whoever committed last: no (ticker, minute) twice, and every ticker-day whose
    source rows did not change since the source versions the table records holds the SQL join at those versions:
    a round from the recorded versions computes again only what changed since them, so the rest must be right
    already. The sources only grow or get new values here, never go back, so a ticker-day whose join is the same
    at the recorded versions and now was the same at every version between. Returns the recorded versions."""
    if not DeltaTable.is_deltatable(table.uri, storage_options=options):
        return {name: None for name in table.sources}  # no writer got as far as creating it
    signals = DeltaTable(table.uri, storage_options=options)
    stored = signals.to_pyarrow_table().select(TABLE_SCHEMA.names).to_pylist()
    keys = [(row["ticker"], row["minute"]) for row in stored]
    assert len(keys) == len(set(keys)), "a (ticker, minute) stored twice"
    recorded = {name: signals.transaction_version(f"marketstream:signals:source:{name}") for name in table.sources}
    if None in recorded.values():
        return recorded  # no round ended yet: the table claims nothing
    now = {name: DeltaTable(uri, storage_options=options).version() if DeltaTable.is_deltatable(uri, storage_options=options)
           else -1 for name, uri in table.sources.items()}
    then, current = _by_ticker_day(reference_rows(table, options, recorded)), _by_ticker_day(reference_rows(table, options, now))
    held = _by_ticker_day(stored)
    for ticker_day in then.keys() | current.keys():
        if _same_rows(then.get(ticker_day), current.get(ticker_day)):
            assert _same_rows(held.get(ticker_day), then.get(ticker_day)), \
                f"{ticker_day} does not hold the join at the recorded versions {recorded} (sources now {now})"
    return recorded


class Killed(BaseException):
    """The end of a writer killed with SIGKILL: nothing more of it reaches the table."""


class HeldWriter(SignalsWriter):
    """A second deployment, slower than the first: each of its commits waits, its rows computed already, until
    the test lets it go (`released`); at its `killed_at`-th commit it is killed."""

    def __init__(self, *args, killed_at: int):
        super().__init__(*args)
        self.waiting, self.released = threading.Event(), threading.Event()
        self._commits, self._killed_at = 0, killed_at

    def replace(self, *args, **kwargs):
        self._commits += 1
        if self._commits == self._killed_at:
            raise Killed
        self.waiting.set()
        self.released.wait()
        return super().replace(*args, **kwargs)


def _write(uri: str, rows: list[dict], schema: pa.Schema, options, **how) -> None:
    partition_by = ["date", "keyword"] if schema is POSTS else ["ticker", "date"]
    write_deltalake(uri, pa.Table.from_pylist(rows, schema), partition_by=partition_by, storage_options=options,
                    **{"mode": "append", **how})


def test_a_stale_second_deployment_committing_after_a_newer_round_cannot_leave_rows_older_than_the_recorded_versions(lake):
    """Two writers of one table, the second one slow: it computes a round from the sources as they were, the
    sources change, the first writer's round reads them and ends (recording their versions), then the slow one
    commits its first date, computed from the older versions, and is killed before its round ends. The table
    must not claim the newer versions over rows of the older ones, or no later round would ever fix them."""
    settings, bucket = lake
    options = settings.delta_storage_options()
    table = _table(bucket)
    writer = (table.uri, bucket, "signals", options, ObjectStore(settings.s3_storage_options()))
    before = DAY - timedelta(days=1)
    bars = bar_rows([("AAPL", m, 100.0 + m, 2) for m in range(0, 40, 2)] + [("MSFT", 5, 50.0, 1)])
    _write(table.sources["bars"], moved(bars, before) + bars, BARS, options)
    _write(table.sources["news"], moved(news_rows([("AAPL", 1, 300, 0.25)], 0), before), NEWS, options)
    fast = SignalsWriter(*writer)
    run_round(table, fast, options)

    # the sources change: a late article on the day before, a corrected bar on the day
    _write(table.sources["news"], moved(news_rows([("AAPL", 2, 600, 0.5)], 1), before), NEWS, options)
    corrected = [{**row, "close": row["close"] + 1} if row["ticker"] == "AAPL" else row for row in bars]
    _write(table.sources["bars"], [row for row in corrected if row["ticker"] == "AAPL"], BARS, options,
           mode="overwrite", predicate=f"ticker = 'AAPL' AND date = '{DAY.isoformat()}'")
    slow = HeldWriter(*writer, killed_at=2)
    ended = []
    thread = threading.Thread(target=lambda: ended.append(run_round(table, slow, options)), daemon=True)
    thread.start()
    while not slow.waiting.is_set():  # its rows of the day before computed, about to commit them
        assert thread.is_alive(), "the slow writer's round ended before its first commit"
        time.sleep(0.02)

    # they change again; the fast writer's round reads them and ends first
    _write(table.sources["news"], moved(news_rows([("AAPL", 3, 660, -0.75)], 2), before), NEWS, options)
    run_round(table, fast, options)
    newer = assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options)
    slow.released.set()
    thread.join()
    assert ended and ended[0].superseded and ended[0].rows == 0, "the stale round was not given up"
    assert assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options) == newer

    run_round(table, SignalsWriter(*writer), options)  # a final round, by either
    assert check(table, options) == 2 * len(bars)


class ChangingSources:
    """The source tables of `table` as late data keeps changing them: articles, posts and corrected bars (a
    ticker-day's partition rewritten with new prices and a new minute), each change giving values never seen
    before, so no ticker-day's join ever goes back to an earlier one."""

    def __init__(self, table: SignalsTable, options, days: list[date], seed: int):
        self._table, self._options, self._days, self._rng = table, options, days, random.Random(seed)
        self._bars: dict[tuple, list[dict]] = {}
        for day in days:
            for row in moved(bar_rows([(t, m, 100.0 + m, 2) for t in ("AAPL", "MSFT", "NVDA") for m in range(0, 60, 4)]), day):
                self._bars.setdefault((row["ticker"], row["date"]), []).append(row)
        _write(table.sources["bars"], [row for rows in self._bars.values() for row in rows], BARS, options)
        self.changes = 0

    def change(self) -> None:
        """One change: a late article, a late post or a corrected bar, in turn."""
        self.changes += 1
        step, rng, day = self.changes, self._rng, self._rng.choice(self._days)
        seconds, sentiment = rng.randint(-80 * 60, 100 * 60), rng.choice([None, rng.uniform(-1, 1)])
        if step % 3 == 1:
            rows = news_rows([(rng.choice(["AAPL", "MSFT", "ZZZ"]), 1000 + step, seconds, sentiment)], step)
            _write(self._table.sources["news"], moved(rows, day), NEWS, self._options)
        elif step % 3 == 2:
            tickers = rng.choice([None, [], ["*MARKET*"], ["AAPL"], ["AAPL", "MSFT"], ["NVDA"]])
            rows = post_rows([(1000 + step, tickers, seconds, sentiment, rng.choice(["Apple", "earnings"]))], step)
            _write(self._table.sources["bluesky"], moved(rows, day), POSTS, self._options)
        else:
            ticker = rng.choice(["AAPL", "MSFT", "NVDA"])
            rows = [{**row, "close": row["close"] + step / 100} for row in self._bars[(ticker, day)]]
            rows += moved(bar_rows([(ticker, 60 + step, 90.0 + step, 1)]), day)
            self._bars[(ticker, day)] = rows
            _write(self._table.sources["bars"], rows, BARS, self._options, mode="overwrite",
                   predicate=f"ticker = '{ticker}' AND date = '{day.isoformat()}'")

    def correct_every_bar(self) -> None:
        """A correction of every ticker-day at once: a round of one commit per date."""
        self.changes += 1
        self._bars = {key: [{**row, "high": row["high"] + self.changes / 100} for row in rows] for key, rows in self._bars.items()}
        _write(self._table.sources["bars"], [row for rows in self._bars.values() for row in rows], BARS, self._options,
               mode="overwrite")

    @property
    def bars(self) -> int:
        return sum(len(rows) for rows in self._bars.values())


def _log(process) -> str:
    process.log.seek(0)
    return process.log.read().decode(errors="replace")


@pytest.mark.faults  # processes killed and restarted: `make test-faults`, not `make test`
def test_two_deployments_one_slow_one_killed_mid_round_while_late_data_arrives_leave_every_row_equal_to_the_join(lake):
    """A second signals_consume started by mistake, slower than the first (each commit half a second after its
    rows are computed, so its commits of older source versions come after the first one's of newer ones), both
    on one signals table while articles, posts and corrected bars keep arriving; the slow one is killed with
    SIGKILL after a date commit of a round that had more to commit, and started again. Throughout, and when
    both are killed at an arbitrary moment, the recorded source versions claim no more than the rows hold, and
    no (ticker, minute) is stored twice; a final round by one writer leaves every row equal to the SQL join."""
    settings, bucket = lake
    options = settings.delta_storage_options()
    table = _table(bucket)
    sources = ChangingSources(table, options, [DAY - timedelta(days=i) for i in range(8)], seed=26)
    env = {**os.environ, **STACK_ENV, "SIGNALS_INTERVAL_SECONDS": "1"}
    fast = [sys.executable, "-m", "bytewax.run", f"tests.integration.flows:signals_consume({bucket!r})"]
    slow = [sys.executable, "-m", "bytewax.run", f"tests.integration.flows:signals_consume_slow({bucket!r}, 0.5)"]
    writers = {"fast": logged(fast, env=env, cwd=REPO), "slow": logged(slow, env=env, cwd=REPO)}
    logs = []

    def burst(changes: int) -> None:
        for _ in range(changes):
            sources.change()
            time.sleep(0.3)
        time.sleep(1.5)
        assert all(process.poll() is None for process in writers.values()), [_log(p)[-2000:] for p in writers.values()]
        assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options)

    deadline = time.monotonic() + 120  # both started (slow on a loaded machine) and a round ended
    while "ROUND" not in _log(writers["slow"]) or \
            None in assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options).values():
        assert time.monotonic() < deadline, [_log(process)[-2000:] for process in writers.values()]
        time.sleep(0.5)
    for _ in range(4):
        burst(3)
    # every ticker-day corrected at once: a long round, which the slow writer (computing from these same
    # versions) can commit part of; killed right after one of its date commits, the round not ended (the
    # correction made again until it happens: the fast writer may end the round before the slow one starts it)
    deadline = time.monotonic() + 120
    while "last=False" not in _log(writers["slow"]):
        assert time.monotonic() < deadline, _log(writers["slow"])[-3000:]
        sources.correct_every_bar()
        corrected = time.monotonic()
        while "last=False" not in _log(writers["slow"]) and time.monotonic() < corrected + 15:
            time.sleep(0.02)
    writers["slow"].send_signal(signal.SIGKILL)
    writers["slow"].wait(10)
    logs.append(_log(writers["slow"]))
    assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options)
    writers["slow"] = logged(slow, env=env, cwd=REPO)
    for _ in range(4):
        burst(3)
    sources.change()
    for process in writers.values():  # no final round of theirs: the table as they left it
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    logs += [_log(process) for process in writers.values()]
    assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options)

    assert sum(log.count("round given up") for log in logs) > 0, "no commit ever met newer rows: nothing was tested"
    final = run_round(table, SignalsWriter(table.uri, bucket, "signals", options, ObjectStore(settings.s3_storage_options())),
                      options)
    assert not final.superseded
    assert check(table, options) == sources.bars
    assert_recorded_versions_claim_no_more_than_the_rows_hold(table, options)
