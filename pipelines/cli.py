"""`marketstream` command line: run a dataflow with recovery, the bounded demo, a report of the lake, SQL
over the lake's Delta tables and their maintenance.

`sql` reads only the tables a query names, at their latest version unless `--version` pins one or `--as-of`
sets a time (`pipelines.time_travel`); DuckDB runs without file or network access (`--allow-files` lifts
that) within `--memory-limit`, and the result is streamed in Arrow batches (`pipelines.query`; the table
format shows 1 000 rows unless `--limit` says otherwise). `chart` draws a ticker-day of bars (`pipelines.chart`).
Exit codes of both: 0 done; 1 the query failed, or no bars to draw (no file written); 2 a request that
cannot be honoured (a bad --version, --as-of, ticker or output); 3 the object store is unreachable
(S3_ENDPOINT_URL).

    python -m pipelines.cli run stock_consume [-w 2 | -i 0 -a "hostA:2101;hostB:2101" ...]
    python -m pipelines.cli demo [--seconds 60] [--rate 5] [--workers 2]
    python -m pipelines.cli report
    python -m pipelines.cli sql "SELECT ticker, count(*) FROM stock GROUP BY ALL" [--version stock=12 ...]
                                [--as-of 2026-11-24T21:00:00Z] [--format table|csv|json|parquet] [--output FILE]
                                [--limit N] [--allow-files] [--memory-limit 2GB]
    python -m pipelines.cli maintain [--table stock] [--no-vacuum]
    python -m pipelines.cli backfill trades|news --start 2026-11-02 --end 2026-11-24 [--tickers AAPL,MSFT] [--again]
    python -m pipelines.cli chart AAPL [--date 2026-11-24] [--synthetic] [--out AAPL.html]
    python -m pipelines.cli rebuild-bars --start 2026-11-02 --end 2026-11-24 [--tickers AAPL,MSFT]
    python -m pipelines.cli status [--json] [--dataset stock] [--max-lag-messages N] [--max-lag-seconds S]
                                   [--max-commit-age S] [--max-dead-letters N]
    python -m pipelines.cli serve [--host 127.0.0.1] [--port 8080]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow.compute as pc

from marketstream import schemas
from marketstream.datasets import DATASETS, STOCK, lake_tables, signals_tables
from marketstream.lake import lake_filesystem, read_table
from marketstream.settings import ConfigError, Settings, get_settings
from pipelines.runtime import cluster_place
from sources.pacing import Clock

REPO = Path(__file__).resolve().parent.parent
STOCK_TOPIC = STOCK.topic
STOCK_BUCKET = STOCK.bucket


def _lake_tables(settings: Settings) -> dict[str, str]:
    return lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket)


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _topic_size(settings: Settings, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": "marketstream-cli"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(
            high - low
            for low, high in (
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in metadata.partitions
            )
        )
    finally:
        consumer.close()


def _bytewax(module: str, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bytewax.run", module, *args], cwd=REPO, env=env)


def demo_recovery_directory(environ: Mapping[str, str], flow: str = "stock_consume") -> Path:
    """The demo consumers' recovery state lives with the stack's data (`STACK_DIR`, as stack/stack.sh)."""
    return Path(environ.get("STACK_DIR") or REPO / ".stack") / "recovery" / flow


DEMO_CONSUMERS = ("stock_consume", "bars_consume", "news_consume", "bluesky_consume")
DEMO_PRODUCERS = ("stock_produce", "news_produce", "bluesky_produce")


def demo(settings: Settings, seconds: float, rate: float, workers: int) -> int:
    """Synthetic trades -> Kafka -> stock_consume -> the Delta table, the consumer streaming while the
    producer runs (a commit every BATCH_MAX_AGE_SECONDS), and bars_consume -> the bars table; news and posts
    from a local newsroom (`pipelines.newsroom`: no API keys, no real API) -> news_produce and
    bluesky_produce -> their consumers, scored for sentiment; then a report, a compaction, SQL queries, a
    round of signals_consume and a chart of the ticker-day with most to show."""
    from marketstream.companies import load_companies
    from pipelines.newsroom import Newsroom

    newsroom = Newsroom(load_companies(settings.postgres_connect_kwargs()))
    env = {**os.environ, "STOCK_SOURCE": "synthetic", "PRODUCE_FOR_SECONDS": str(seconds),
           "SYNTHETIC_TRADES_PER_SECOND": str(rate), **newsroom.producer_environment()}
    for flow in DEMO_CONSUMERS:
        directory = demo_recovery_directory(os.environ, flow)
        if not directory.exists():
            directory.mkdir(parents=True)
            subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), "1"], check=True)
    before = _topic_size(settings, STOCK_TOPIC)
    _say(f"producing synthetic trades into Kafka topic '{STOCK_TOPIC}' for {seconds:g} s ({rate:g}/s per ticker), "
         f"while stock_consume ({workers} workers) streams them into MinIO bucket '{STOCK_BUCKET}' and "
         f"bars_consume builds one-minute bars into '{settings.bars_bucket}'; a local newsroom writes about "
         f"{', '.join(c.ticker for c in newsroom.companies)} for news_produce and bluesky_produce")
    consumers = {flow: _bytewax(f"dataflows.{flow}", env, *(("-w", str(workers)) if flow == "stock_consume" else ()),
                                "-r", str(demo_recovery_directory(os.environ, flow)), "-s", "5", "-b", "0")
                 for flow in DEMO_CONSUMERS}
    from pipelines.progress import Progress

    with newsroom:
        producers = {flow: _bytewax(f"dataflows.{flow}", env) for flow in DEMO_PRODUCERS}
        started = time.monotonic()
        progress = Progress("demo: trades in Kafka", int(seconds), "s", counting="trades", out=sys.stdout, every=5.0)
        while any(process.poll() is None for process in producers.values()):
            time.sleep(min(5.0, max(seconds / 6, 1.0)))
            produced = _topic_size(settings, STOCK_TOPIC) - before
            progress.advance(units=min(int(time.monotonic() - started), progress.total) - progress.done,
                             rows=produced - progress.rows)
    failed = [f"{flow} (exit code {process.returncode})" for flow, process in producers.items() if process.returncode]
    if failed:
        for process in consumers.values():
            process.terminate()
        _say(f"producer failed: {', '.join(failed)}")
        return 1
    _say(f"the newsroom published {newsroom.published['articles']} articles and {newsroom.published['posts']} posts")
    time.sleep(min(settings.batch_max_age_seconds, 10.0) + 5)  # the last trades' batches come of age
    for process in consumers.values():
        process.send_signal(signal.SIGTERM)  # a graceful stop: open batches and minutes are written first
    for flow, process in consumers.items():
        if process.wait() != 0:
            _say(f"{flow} failed with exit code {process.returncode}")
            return 1
    if report(settings) != 0 or settings.lake_format != "delta":
        return 0
    synthetic = {STOCK.kept_apart_table: _lake_tables(settings)[STOCK.kept_apart_table]}
    _say("compacting the table (today's partitions too, for the demo: `marketstream maintain` leaves open ones)")
    maintain(settings, synthetic, vacuum=False, closed_after_days=0)
    query = ("SELECT ticker, count(*) AS trades, round(sum(price * size) / sum(size), 2) AS vwap, min(timestamp) AS first, "
             f"max(timestamp) AS last FROM {STOCK.kept_apart_table} GROUP BY ticker ORDER BY trades DESC LIMIT 5")
    _say(f'marketstream sql "{query}"')
    if sql(settings, query, synthetic) != 0:
        return 1
    bars_table = {"bars_synthetic": _lake_tables(settings)["bars_synthetic"]}
    query = ("SELECT ticker, date, count(*) AS minutes, sum(trades) AS trades, min(low) AS low, max(high) AS high "
             "FROM bars_synthetic GROUP BY ALL ORDER BY date DESC, trades DESC LIMIT 3")
    _say(f'marketstream sql "{query}"')
    if sql(settings, query, bars_table) != 0:
        return 1
    return demo_signals(settings, env)


def demo_signals(settings: Settings, env: dict[str, str]) -> int:
    """The demo's end: a bounded run of signals_consume (a round over the tables the demo wrote), a query of
    the signals of synthetic bars, and the chart of the ticker-day with the most news and posts."""
    _say("signals_consume: each one-minute bar joined with the count and sentiment of its ticker's news and posts")
    rounds = _bytewax("dataflows.signals_consume", {**env, "PRODUCE_FOR_SECONDS": "8", "SIGNALS_INTERVAL_SECONDS": "4"})
    if rounds.wait() != 0:
        _say(f"signals_consume failed with exit code {rounds.returncode}")
        return 1
    from pipelines.sql_command import sql_tables

    signals = {"signals_synthetic": sql_tables(settings)["signals_synthetic"]}
    query = ("SELECT ticker, date, count(*) AS minutes, sum(news_count) AS articles, sum(posts_count) AS posts, "
             "round(avg(news_sentiment), 2) AS news_sentiment, round(avg(posts_sentiment), 2) AS posts_sentiment "
             "FROM signals_synthetic GROUP BY ALL ORDER BY articles + posts DESC, date DESC LIMIT 3")
    if not _existing_tables(settings, signals):
        _say("no signals yet")
        return 1
    _say(f'marketstream sql "{query}"')
    if sql(settings, query, signals) != 0:
        return 1
    from deltalake import DeltaTable

    rows = DeltaTable(signals["signals_synthetic"], storage_options=settings.delta_storage_options()).to_pyarrow_table(
        columns=["ticker", "date", "trades", "news_count", "posts_count"]).group_by(["ticker", "date"]).aggregate(
        [("news_count", "sum"), ("posts_count", "sum"), ("trades", "sum")]).to_pylist()
    if not rows:
        _say("no signals yet")
        return 1
    most = max(rows, key=lambda row: (row["news_count_sum"] + row["posts_count_sum"], row["date"], row["trades_sum"]))
    return chart(settings, most["ticker"], most["date"], True, None)


DATAFLOWS = tuple(f"{name}_{role}" for name in DATASETS for role in ("produce", "consume")) + (
    "bars_consume", "lake_maintenance")


def init_recovery(recovery: Path, place: tuple[int, int] | None) -> None:
    """Create the recovery partitions of one process: the only one, or for process `i` of a cluster of `n`
    (each on its own host), partition `i` of `n` — Bytewax gathers every process's partitions on resume."""
    index, count = place or (0, 1)
    staging = recovery.with_name(recovery.name + ".creating")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(staging), str(count)], check=True)
    for part in staging.iterdir():
        if part.name != f"part-{index}.sqlite3":
            part.unlink()
    staging.rename(recovery)


STATELESS_DATAFLOWS = ("stock_produce",)
"""Dataflows without a stateful step: Bytewax 0.21 ends such a dataflow at once, with status 0, when it runs
with a recovery store (found by `make chaos`: stock_produce published a second of trades, then stopped,
every time it was started), and they have nothing to recover. They run without one."""


def bytewax_command(settings: Settings, dataflow: str, bytewax_args: list[str]) -> list[str]:
    """The `python -m bytewax.run dataflows.<dataflow>` command, with recovery when RECOVERY_DIRECTORY is set
    and the dataflow has state; the recovery partitions are created on first use."""
    args = [sys.executable, "-m", "bytewax.run", f"dataflows.{dataflow}"]
    if settings.recovery_directory and dataflow not in STATELESS_DATAFLOWS:
        recovery = Path(settings.recovery_directory) / dataflow
        if not recovery.exists():
            recovery.parent.mkdir(parents=True, exist_ok=True)
            init_recovery(recovery, cluster_place(bytewax_args))
        args += ["-r", str(recovery), "-s", f"{settings.snapshot_interval_seconds:g}", "-b", "0"]
    return args + bytewax_args


def run(settings: Settings, dataflow: str, bytewax_args: list[str]) -> int:
    """`python -m bytewax.run dataflows.<dataflow>`, with recovery when RECOVERY_DIRECTORY is set (except for
    `STATELESS_DATAFLOWS`).

    The recovery partitions are created on first use (`python -m bytewax.recovery <dir> 1`; for process `i`
    of a cluster of `n`, partition `i` of `n`); the snapshot interval is SNAPSHOT_INTERVAL_SECONDS, and
    backups are not kept (`-b 0`).
    """
    os.execv(sys.executable, bytewax_command(settings, dataflow, bytewax_args))


def report(settings: Settings) -> int:
    """What is in `stock-data`: per table (real and synthetic trades) its version, files and rows."""
    from deltalake import DeltaTable

    fs = lake_filesystem(settings)
    if not fs.exists(STOCK_BUCKET):
        _say(f"bucket '{STOCK_BUCKET}' does not exist yet")
        return 1
    for label, prefix in (("real trades", ""), ("synthetic trades", settings.stock_synthetic_prefix)):
        base = f"{STOCK_BUCKET}/{prefix}".rstrip("/")
        if fs.exists(f"{base}/_delta_log"):
            delta = DeltaTable(f"s3://{base}", storage_options=settings.delta_storage_options())
            files = [uri.removeprefix("s3://") for uri in delta.file_uris()]
            _say(f"{label}: Delta table s3://{base}/, version {delta.version()}, {len(files)} data files")
        else:
            files = [f for f in fs.find(base) if f.endswith(".parquet") and (prefix or "/_" not in f)]
            _say(f"{label}: {len(files)} Parquet files under s3://{base}/")
        if not files:
            continue
        for path in files[:3]:
            print(f"    s3://{path}")
        if len(files) > 3:
            print(f"    ... and {len(files) - 3} more")
        table = read_table(settings, STOCK_BUCKET, schemas.STOCK_TRADES_PARTITIONING, prefix, schemas.STOCK_TRADES)
        counts = table.group_by("ticker").aggregate([("trade_id", "count")]).sort_by("ticker")
        _say(f"{label}: {table.num_rows:,} rows, per ticker:")
        pairs = list(zip(counts.column("ticker").to_pylist(), counts.column("trade_id_count").to_pylist()))
        for i in range(0, len(pairs), 6):
            print("    " + "  ".join(f"{ticker:<6}{count:>8,}" for ticker, count in pairs[i : i + 6]))
        latest = table.filter(pc.equal(table.column("timestamp"), pc.max(table.column("timestamp")))).slice(0, 1)
        _say(f"{label}: a sample row read back from MinIO:")
        for name, value in latest.to_pylist()[0].items():
            print(f"    {name:<16}{value}")
    return 0


def _existing_tables(settings: Settings, tables: dict[str, str]) -> dict[str, str]:
    from marketstream.lake import is_delta_table

    options = settings.delta_storage_options()
    return {name: uri for name, uri in tables.items() if is_delta_table(uri, options)}


def sql(settings: Settings, query: str, tables: dict[str, str] | None = None, *, versions: list[str] = (),
        as_of: str | None = None, output_format: str = "table", output: Path | None = None, limit: int | None = None,
        allow_files: bool = False, memory_limit: str | None = None, out=None) -> int:
    """Answer `query` with DuckDB over the lake's Delta tables, each a view of its name (`pipelines.sql_command`).
    Exit 0; 1 when the query fails; 2 for a request that cannot be honoured; 3 when the store is unreachable."""
    from pipelines import sql_command
    from pipelines.query import BadRequest, QueryFailed, StoreUnreachable

    request = sql_command.Request(query, versions, as_of, output_format, output, limit, allow_files, memory_limit,
                                  tables or sql_command.sql_tables(settings))
    try:
        sql_command.answer(settings, request, out or sys.stdout,
                           say=lambda line: print(f"marketstream sql: {line}", file=sys.stderr))
    except BrokenPipeError:  # the reader stopped reading (`| head`): not an error
        if out is None:  # nor is Python's flush of standard output at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (BadRequest, StoreUnreachable, QueryFailed) as exc:
        print(f"marketstream sql: {exc}", file=sys.stderr)
        return {BadRequest: 2, StoreUnreachable: 3}.get(type(exc), 1)
    return 0


def maintain(settings: Settings, tables: dict[str, str] | None = None, *, vacuum: bool = True,
             today: date | None = None, closed_after_days: int | None = None) -> int:
    """Compact, vacuum and checkpoint every Delta table of the lake (`sinks.delta_maintenance`)."""
    from marketstream.calendar import exchange_date
    from pipelines.maintenance import maintain as maintain_one
    from pipelines.progress import Progress

    today = today or exchange_date(datetime.now(timezone.utc))
    existing = _existing_tables(settings, tables or _lake_tables(settings))
    progress = Progress("maintain", len(existing), "tables", counting="files compacted")
    for name, uri in existing.items():
        done = maintain_one(settings, name, uri, today=today, closed_after_days=closed_after_days, vacuum=vacuum)
        _say(f"{name}: version {done.version_before} -> {done.version_after}, files {done.files_before} -> "
             f"{done.files_after} ({done.files_compacted} compacted into {done.files_written}, "
             f"{done.files_repaired} written again with full statistics, {done.files_vacuumed} vacuumed) "
             f"in {done.seconds:.1f} s")
        progress.advance(rows=done.files_compacted)
    return 0


def status(settings: Settings, as_json: bool, thresholds, datasets: list[str] | None = None,
           now: datetime | None = None, out=sys.stdout, patience_seconds: float | None = None) -> int:
    """Lag, tables and dead letters of every dataset, and the bars tables (`pipelines.status`); 1 when a
    threshold is passed, 3 when Kafka or the object store cannot be read (what Kafka did not give within
    `patience_seconds` is shown as unknown)."""
    from marketstream.calendar import exchange_date
    from marketstream.lake import arrow_filesystem
    from pipelines import status as lake

    from confluent_kafka import KafkaException

    now = now or datetime.now(timezone.utc)
    patience_seconds = lake.PATIENCE_SECONDS if patience_seconds is None else patience_seconds
    cluster = settings.kafka_cluster()
    # librdkafka's own log lines (a refused connection, once per retry) would bury the one line that matters
    quiet = replace(cluster, client_config={**cluster.client_config, "log_level": 0})
    kafka = f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    try:
        found = lake.lake_status(quiet, settings.delta_storage_options(), arrow_filesystem(settings),
                                 settings.stock_synthetic_prefix, settings.bars_bucket, now=now,
                                 today=exchange_date(now), closed_after_days=settings.lake_compact_closed_after_days,
                                 datasets=datasets,
                                 patience_seconds=patience_seconds)
    except KafkaException as exc:
        error = exc.args[0]
        print(f"marketstream status: cannot read {kafka}: {error.str() if hasattr(error, 'str') else error}",
              file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - one line for a monitor, whatever the object store's client raised
        print(f"marketstream status: cannot read the object store at {settings.s3_endpoint_url} (S3_ENDPOINT_URL): "
              f"{lake.one_line(exc)}", file=sys.stderr)
        return 3
    passed = lake.alerts(found.datasets, thresholds)
    print(lake.to_json(found.datasets, passed, now, found.derived) if as_json else lake.render(found.datasets, found.derived),
          file=out)
    for line in passed if not as_json else ():
        print(f"ALERT {line}", file=out)
    if found.unread:
        print(f"marketstream status: cannot read {kafka}: {'; '.join(found.unread)} (waited {patience_seconds:g} s; "
              f"what was not read is shown as unknown)", file=sys.stderr)
        return 3
    return 1 if passed else 0


def backfill(settings: Settings, what: str, start: date, end: date, tickers: list[str] | None, again: bool,
             today: date | None = None, clock: Clock | None = None) -> int:
    """Historical trades (Alpaca) or company news (Finnhub) for closed days into their tables
    (`pipelines.backfill`); tickers default to `companies_info`. Each retry of a failing API request is a
    warning line; an API that keeps failing or refuses ends the run with one line (exit 1)."""
    from marketstream.calendar import exchange_date
    from pipelines import api_sources
    from pipelines import backfill as history
    from pipelines.connectors import shared_object_store
    from pipelines.runtime import configure_logging

    configure_logging(settings)
    today = today or exchange_date(datetime.now(timezone.utc))
    clock = clock or Clock()
    try:
        history.check_range(start, end, today)
        source = (api_sources.alpaca_history(settings, clock) if what == "trades"
                  else api_sources.news_history(settings, clock))
        tickers = tickers or api_sources.company_directory(settings).tickers()
        run = history.backfill_trades if what == "trades" else history.backfill_news
        report = run(source, tickers, start, end, store=shared_object_store(settings)(),
                     storage_options=settings.delta_storage_options(), today=today, again=again)
    except history.BackfillError as exc:
        print(f"marketstream backfill: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the API refused, or kept failing: one line, no traceback
        print(f"marketstream backfill: {exc}; the days done so far are kept: run it again to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("marketstream backfill: interrupted; the days done so far are kept: run it again to resume",
              file=sys.stderr)
        return 130
    _say(report.summary(f"backfill {what} {start}..{end}"))
    return 0


def chart(settings: Settings, ticker: str, day: date | None, synthetic: bool, out: Path | None) -> int:
    """One ticker-day of the bars table as a candlestick chart, with its news and signals' sentiment, in a
    self-contained HTML file (`pipelines.chart`).
    Exit 0; 1 when there are no bars (no file written); 2 for a text that is no ticker or an output that cannot
    be written; 3 when the store is unreachable."""
    from marketstream.calendar import exchange_date
    from pipelines import chart as candles
    from pipelines.files import UnwritablePath
    from pipelines.query import QueryFailed, StoreUnreachable
    from pipelines.sql_command import lake_of, sql_tables

    day = day or exchange_date(datetime.now(timezone.utc))
    table = "bars_synthetic" if synthetic else "bars"
    tables = {name: uri for name, uri in sql_tables(settings).items() if name in (table, *candles.SAID_TABLES)}
    try:
        path, drawn, articles = candles.draw(lake_of(settings, tables), table, ticker, day, out)
    except (candles.NotATicker, UnwritablePath, StoreUnreachable, candles.NoBars, QueryFailed) as exc:
        print(f"marketstream chart: {'--out ' if isinstance(exc, UnwritablePath) else ''}{exc}", file=sys.stderr)
        return {candles.NotATicker: 2, UnwritablePath: 2, StoreUnreachable: 3}.get(type(exc), 1)
    _say(f"{drawn} one-minute bars and {articles} news articles of {ticker} on {day} drawn into {path}")
    return 0


def rebuild_bars(settings: Settings, start: date, end: date, tickers: list[str] | None) -> int:
    """The bars of the dates `start`..`end` computed again from the trades tables (`pipelines.bars_rebuild`).
    Exit 0; 1 when some ticker-days were left as they were (the trades consumer is behind); 3 when Kafka or the
    store cannot be read."""
    from confluent_kafka import KafkaException

    from pipelines import bars_rebuild
    from pipelines.status import one_line

    if end < start:
        print("marketstream rebuild-bars: --end is before --start", file=sys.stderr)
        return 2
    try:
        done = bars_rebuild.rebuild_bars(settings, start, end, tickers)
    except KafkaException as exc:
        print(f"marketstream rebuild-bars: cannot read Kafka at {settings.kafka_bootstrap_servers} "
              f"(KAFKA_BOOTSTRAP_SERVERS): {one_line(exc)}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - one line, whatever the object store's client raised
        print(f"marketstream rebuild-bars: cannot read or write the lake at {settings.s3_endpoint_url} "
              f"(S3_ENDPOINT_URL): {one_line(exc)}", file=sys.stderr)
        return 3
    _say(done.summary())
    return 1 if done.ahead else 0


def serve(settings: Settings, host: str, port: int) -> int:
    """The web console (`pipelines.console`) until stopped. Exit 2 when `host` is off loopback and CONSOLE_TOKEN
    is unset, or the port cannot be bound."""
    import socket

    import uvicorn

    from pipelines.console.access import check_bind
    from pipelines.console.app import create_app

    token = settings.console_token.get_secret_value() if settings.console_token else None
    check_bind(host, token)
    try:  # a taken port is one line, not uvicorn's traceback
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        print(f"marketstream serve: cannot listen on {host}:{port} (--host, --port): {exc.strerror}", file=sys.stderr)
        return 2
    shown = f"[{host}]" if ":" in host else host
    _say(f"console at http://{shown}:{port}/" + (" (every request needs CONSOLE_TOKEN)" if token else ""))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    return 0


class OneLineArgumentParser(argparse.ArgumentParser):
    """A wrong argument ends in one line naming it (argparse's own error prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> int:
    """`clock`: how `backfill` waits between retries (tests drive it)."""
    parser = OneLineArgumentParser(prog="marketstream")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="bounded end-to-end demo: synthetic trades -> Kafka -> MinIO")
    demo_cmd.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS", 60)))
    demo_cmd.add_argument("--rate", type=float, default=5.0, help="synthetic trades per second per ticker")
    demo_cmd.add_argument("--workers", type=int, default=2)
    commands.add_parser("report", help="what is in the stock-data bucket")
    sql_cmd = commands.add_parser("sql", help="SQL (DuckDB) over the lake's Delta tables: " + ", ".join([*lake_tables("_"), *signals_tables("_")]))
    sql_cmd.add_argument("query")
    sql_cmd.add_argument("--version", action="append", default=[], metavar="TABLE=N",
                         help="read TABLE as of its Delta version N (repeatable, one per table; others: latest)")
    sql_cmd.add_argument("--as-of", metavar="TIME", help="read every table as of this time, ISO 8601 with its offset")
    sql_cmd.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"],
                         help="table (default), csv, json (one object per line) or parquet (needs --output)")
    sql_cmd.add_argument("--output", type=Path, metavar="FILE", help="write the result here (default: standard output)")
    sql_cmd.add_argument("--limit", type=int, metavar="N", help="rows at most; 0 for all (default: 1000 for table, else all)")
    sql_cmd.add_argument("--allow-files", action="store_true", help="let the query read and write files and load extensions")
    sql_cmd.add_argument("--memory-limit", metavar="SIZE", help="DuckDB's memory limit, e.g. 2GB (default: SQL_MEMORY_LIMIT)")
    maintain_cmd = commands.add_parser("maintain", help="compact, vacuum and checkpoint the lake's Delta tables")
    maintain_cmd.add_argument("--table", action="append", help="only this table (repeatable)")
    maintain_cmd.add_argument("--no-vacuum", action="store_true")
    backfill_cmd = commands.add_parser("backfill", help="historical trades (Alpaca) or news (Finnhub) for closed days")
    backfill_cmd.add_argument("what", choices=["trades", "news"])
    backfill_cmd.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD (New York)")
    backfill_cmd.add_argument("--end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD, before today")
    backfill_cmd.add_argument("--tickers", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                              help="comma-separated; default: every ticker of companies_info")
    backfill_cmd.add_argument("--again", action="store_true", help="fetch days done before again (still no duplicates)")
    chart_cmd = commands.add_parser("chart", help="one ticker-day of one-minute bars as a candlestick chart (HTML)")
    chart_cmd.add_argument("ticker")
    chart_cmd.add_argument("--date", type=date.fromisoformat, help="YYYY-MM-DD (New York); default: today")
    chart_cmd.add_argument("--synthetic", action="store_true", help="the bars of synthetic trades")
    chart_cmd.add_argument("--out", type=Path, help="the HTML file (default: <ticker>-<date>[-synthetic].html here)")
    rebuild_cmd = commands.add_parser("rebuild-bars", help="compute the bars of some dates again from the trades tables")
    rebuild_cmd.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD (New York)")
    rebuild_cmd.add_argument("--end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD (New York)")
    rebuild_cmd.add_argument("--tickers", type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
                             help="comma-separated; default: every ticker")
    status_cmd = commands.add_parser("status", help="lag, tables and dead letters of every dataset; exit 1 past a threshold")
    status_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    status_cmd.add_argument("--dataset", action="append", choices=[*DATASETS, "bars"],
                            help="only this dataset, or the bars tables (repeatable)")
    status_cmd.add_argument("--max-lag-messages", type=int, help="alert when a dataset's lag passes this many messages")
    status_cmd.add_argument("--max-lag-seconds", type=float, help="alert when a dataset's lag passes this many seconds")
    status_cmd.add_argument("--max-commit-age", type=float,
                            help="alert when a dataset whose topic holds messages has committed nothing for this many seconds")
    status_cmd.add_argument("--max-dead-letters", type=int, help="alert when a dead-letter topic holds more")
    serve_cmd = commands.add_parser("serve", help="the web console: overview, ticker charts, tables, dead letters, SQL")
    serve_cmd.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; any other needs CONSOLE_TOKEN)")
    serve_cmd.add_argument("--port", type=int, default=8080)
    run_cmd = commands.add_parser("run", help="run a dataflow, with recovery when RECOVERY_DIRECTORY is set")
    run_cmd.add_argument("dataflow", choices=DATAFLOWS)
    run_cmd.add_argument("bytewax_args", nargs=argparse.REMAINDER, help="passed to bytewax.run (-w, -i, -a)")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        if args.command == "demo":
            return demo(settings, args.seconds, args.rate, args.workers)
        if args.command == "run":
            return run(settings, args.dataflow, args.bytewax_args)
        if args.command == "sql":
            return sql(settings, args.query, versions=args.version, as_of=args.as_of, output_format=args.format,
                       output=args.output, limit=args.limit, allow_files=args.allow_files, memory_limit=args.memory_limit)
        if args.command == "backfill":
            return backfill(settings, args.what, args.start, args.end, args.tickers, args.again, clock=clock)
        if args.command == "chart":
            return chart(settings, args.ticker, args.date, args.synthetic, args.out)
        if args.command == "status":
            from pipelines.status import Thresholds

            limits = Thresholds(args.max_lag_messages, args.max_lag_seconds, args.max_commit_age, args.max_dead_letters)
            if limits.problem():
                print(f"marketstream status: {limits.problem()}", file=sys.stderr)
                return 2
            return status(settings, args.json, limits, args.dataset)
        if args.command == "serve":
            return serve(settings, args.host, args.port)
        if args.command == "rebuild-bars":
            return rebuild_bars(settings, args.start, args.end, args.tickers)
        if args.command == "maintain":
            tables = _lake_tables(settings)
            chosen = {name: uri for name, uri in tables.items() if not args.table or name in args.table}
            return maintain(settings, chosen, vacuum=not args.no_vacuum)
        return report(settings)
    except ConfigError as exc:
        print(f"marketstream: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
