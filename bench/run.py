"""`make bench`: end-to-end throughput, freshness and memory of stock_consume against the raw limit, what
sentiment scoring costs the news and Bluesky consumers (`bench.sentiment_cost`), and whether signals_consume
keeps up with stock_consume (`bench.signals_part`).

    python -m bench.run [--trades 2000000] [--tickers 500] [--naive-rows 100000]
                        [--freshness-seconds 30] [--freshness-rate 20000] [--producer-seconds 15]
                        [--sentiment-rows 20000] [--signals-articles 20000] [--signals-posts 100000]

Runs against the local stack (`make stack`), on topics and buckets of its own, and prints one table (a run
of some parts, `--only`, prints their figures instead); the results go to bench/results/<UTC time>.json. Every contender runs as its own process, so its peak
RSS is its own, and times its work from the end of its imports (see bench/flows.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from deltalake import DeltaTable

from bench import sentiment_cost, signals_part, streamed_day
from bench.cluster import figures
from marketstream.lake import lake_filesystem
from marketstream.settings import ConfigError, Settings, load_settings
from sinks.object_store import ObjectStore

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FRESHNESS_MARGIN_S = 1.5
"""How much later than its batch's age a row may become visible, at p99, at 20 000 trades/s (issue 25)."""


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def prefill(settings: Settings, topic: str, trades: int, tickers: int) -> None:
    """`trades` valid trades for `tickers` tickers, all inside the NYSE session of 24 Nov 2026."""
    settings.kafka_cluster().ensure_topics([topic])
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "zstd", "queue.buffering.max.messages": 1_000_000})
    symbols = [f"T{i:03d}" for i in range(tickers)]
    rng = random.Random(7)
    for i in range(trades):
        symbol = symbols[i % tickers]
        seconds = 54_000 + (i * 18_000) // trades  # 15:00 to 20:00 UTC
        value = (f'{{"symbol":"{symbol}","price":{100 + rng.random() * 50:.4f},"size":{1 + i % 500},'
                 f'"timestamp":"2026-11-24T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{i % 1_000_000:06d}Z",'
                 f'"exchange":"V","conditions":["@"],"trade_id":"b{i}","tape":"C","source":"alpaca"}}').encode()
        while True:
            try:
                producer.produce(topic, key=symbol.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 100_000 == 0:
            producer.poll(0)
            if i:
                print(f"    {i:>10,} trades", flush=True)
    producer.flush()


def drop_topics(settings: Settings, run: str) -> None:
    """The benchmark's topics of this run (and their dead-letter topics) are not kept."""
    admin = AdminClient(settings.kafka_client_config())
    mine = [name for name in admin.list_topics(timeout=10).topics if name.endswith((run, f"{run}.dlq"))]
    for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else ():
        future.result()


def topic_size(settings: Settings, topic: str) -> int:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "bench-size"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:  # gone
        return []


def _status_mb(pid: int, fields: tuple[str, ...]) -> dict[str, float]:
    """The named sizes of `/proc/<pid>/status` in MB, read at once; none if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return {name: int(rest.split()[0]) / 1024 for name, _, rest in (line.partition(":") for line in status)
                    if name in fields and rest.split()}
    except OSError:  # gone
        return {}


class TreeHighWater:
    """The peak RSS of a process tree that does not report its own (a JVM and its launcher): each process's
    high-water mark (`VmHWM`, which only grows) read every `every` s while it lives, summed over the processes
    seen. An upper bound of the tree's peak at any one moment, short of at most the last `every` s of each
    process. Not `wait4`'s `ru_maxrss`: for a child it counts the benchmark's own memory at the fork.

    Beside it, `anonymous_mb`: the most anonymous memory (`RssAnon`: the heaps, what the rows are held in,
    without the pages of the libraries' files that RSS also counts) each process held when read, summed over
    the processes. The kernel keeps no high-water mark of it, so a peak shorter than `every` s can be missed."""

    def __init__(self, root: int, every: float = 0.1):
        self.root, self.every = root, every
        self.peaks: dict[int, float] = {}
        self.anonymous: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pending = [self.root]
            while pending:
                pid = pending.pop()
                sizes = _status_mb(pid, ("VmHWM", "RssAnon"))  # a zombie has neither: no memory left to tell of
                for seen, field in ((self.peaks, "VmHWM"), (self.anonymous, "RssAnon")):
                    if field in sizes:
                        seen[pid] = max(sizes[field], seen.get(pid, 0.0))
                pending.extend(_children(pid))
            time.sleep(self.every)  # not a timed `Event.wait`: under libfaketime one never returns

    def stop(self) -> float:
        """The sum of the high-water marks seen, once the watching has ended."""
        self._stop.set()
        self._thread.join()
        return sum(self.peaks.values())

    @property
    def anonymous_mb(self) -> float:
        return sum(self.anonymous.values())


def run_contender(command: list[str], env: dict | None = None) -> dict:
    """Run one contender process; its own timing (BENCH), files (FILES) and peak RSS (its own where it prints
    it, else its process tree's high-water marks, `TreeHighWater`), and its tree's most anonymous memory."""
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    tree = TreeHighWater(process.pid)
    output = process.stdout.read().decode()
    tree_peak_mb = tree.stop()  # before the wait: the root's figures are gone once it is reaped
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed with exit code {process.returncode}")
    printed = figures(output, ("BENCH", "FILES", "ROWS", "STARTUP", "PEAK_RSS_MB"))
    peak_rss_mb = printed.get("PEAK_RSS_MB", tree_peak_mb)
    result = {"seconds": printed["BENCH"], "peak_rss_mb": peak_rss_mb, "peak_anonymous_mb": tree.anonymous_mb,
              "cpu_s": usage.ru_utime + usage.ru_stime,
              "files": int(printed["FILES"]) if "FILES" in printed else None,
              "rows": int(printed["ROWS"]) if "ROWS" in printed else None}
    if "STARTUP" in printed:  # a contender whose start-up is its own (a JVM's), not the interpreter's
        result["startup_s"] = printed["STARTUP"]
    return result


def lake_rows(settings: Settings, bucket: str) -> tuple[int, int]:
    """Data files and rows in `bucket`: the committed ones of its Delta tables, else every Parquet file."""
    fs = lake_filesystem(settings)
    logs = [key.rsplit("/_delta_log/", 1)[0] for key in fs.find(bucket) if key.endswith("/_delta_log/00000000000000000000.json")]
    if logs:
        files = [uri.removeprefix("s3://") for base in logs
                 for uri in DeltaTable(f"s3://{base}", storage_options=settings.delta_storage_options()).file_uris()]
    else:
        files = [f for f in fs.find(bucket) if f.endswith(".parquet")]
    rows = 0
    for path in files:
        with fs.open(path, "rb") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return len(files), rows


def drain(settings: Settings, name: str, command: list[str], bucket: str, env: dict | None = None,
          check=None) -> dict:
    """One contender drains the topic into `bucket`: its figures, and what `check(bucket)` says of what it
    stored; the bucket is removed after."""
    say(f"draining with {name}")
    # made before, as a deployment's bucket is after its first start: creating it costs a process s3fs
    ObjectStore(settings.s3_storage_options()).ensure_bucket(bucket)
    result = run_contender(command, env)
    files, rows = lake_rows(settings, bucket)
    result.update(files=files, rows=rows, rows_per_s=rows / result["seconds"],
                  rows_per_file=rows / files if files else 0,
                  cpu_s_per_million_rows=result["cpu_s"] / rows * 1e6 if rows else None)
    if check is not None:
        result.update(check(bucket))
    lake_filesystem(settings).rm(bucket, recursive=True)
    print(f"    {rows:,} rows in {result['seconds']:.2f} s: {result['rows_per_s']:,.0f} rows/s, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB ({result['peak_anonymous_mb']:.0f} anonymous), {files} files",
          flush=True)
    return result


def bytewax(factory: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "bytewax.run", factory, *args]


def visible_files(fs, seen: dict[str, float]) -> dict[str, float]:
    """When each data file became visible to readers: for a Delta table when the commit adding it appeared
    (its upload alone shows nothing), for plain Parquet when the file appeared."""
    commits = {path: moment for path, moment in seen.items() if "/_delta_log/" in path and path.endswith(".json")}
    if not commits:
        return {path: moment for path, moment in seen.items() if path.endswith(".parquet")}
    visible = {}
    for path, moment in commits.items():
        table = path.rsplit("/_delta_log/", 1)[0]
        for line in fs.cat(path).decode().splitlines():
            add = json.loads(line).get("add")
            if add and add.get("dataChange", True):
                visible[f"{table}/{unquote(add['path'])}"] = moment
    return visible


def measure_freshness(settings: Settings, run: str, seconds: float, rate: float, max_age: float) -> dict:
    """At a steady `rate` trades/s from the synthetic producer: event produced -> object visible, per row."""
    topic, bucket = f"bench_fresh_{run}", f"bench-fresh-{run}"
    settings.kafka_cluster().ensure_topics([topic])
    fs = lake_filesystem(settings)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                for path in fs.find(bucket, refresh=True) if fs.exists(bucket) else []:
                    seen.setdefault(path, time.time())
            except FileNotFoundError:
                pass
            fs.invalidate_cache()
            time.sleep(0.1)

    from marketstream.companies import load_companies

    per_ticker = rate / len(load_companies(settings.postgres_connect_kwargs()))
    consumer = subprocess.Popen(bytewax(f"bench.flows:stock_consume({topic!r}, {bucket!r}, kafka_stop_at_end=False, "
                                        f"batch_max_age_seconds={max_age}, kafka_starting_offset='latest')"),
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(8)  # let it start and assign its partitions before trades flow
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    subprocess.run(bytewax(f"bench.flows:stock_produce({topic!r}, synthetic_trades_per_second={per_ticker}, "
                           f"produce_for_seconds={seconds})"), cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    produced = topic_size(settings, topic)
    time.sleep(max_age + 4)
    consumer.send_signal(signal.SIGTERM)
    consumer.wait(60)
    stop.set()
    watcher.join()
    latencies = []
    for path, visible in visible_files(fs, seen).items():
        with fs.open(path, "rb") as handle:
            stamps = pq.read_table(handle, columns=["timestamp"]).column("timestamp").cast("int64").to_numpy()
        latencies.append(visible - stamps / 1e6)
    values = np.concatenate(latencies) if latencies else np.array([np.nan])
    fs.rm(bucket, recursive=True)
    return {"rate_target": rate, "produced": produced, "achieved_rate": produced / seconds,
            "stored_rows": int(len(values)), "p50_s": float(np.percentile(values, 50)),
            "p99_s": float(np.percentile(values, 99)), "batch_max_age_s": max_age}


def measure_two_deployments(settings: Settings, run: str, topic: str, trades: int) -> dict:
    """What a second deployment started by mistake costs: two stock_consume processes (different batch sizes)
    drain the same topic into one table at once; each row must be stored once."""
    bucket = f"bench-two-{run}"
    commands = [bytewax(f"bench.flows:stock_consume({topic!r}, {bucket!r})"),
                bytewax(f"bench.flows:stock_consume({topic!r}, {bucket!r}, batch_max_buffered_rows=100000)")]
    started = time.perf_counter()
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for command in commands]
    logs = [process.communicate()[1].decode(errors="replace") for process in processes]
    seconds = time.perf_counter() - started
    if any(process.returncode for process in processes):
        raise SystemExit(f"a deployment failed: {[process.returncode for process in processes]}")
    table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options()).to_pyarrow_table(
        columns=["trade_id"])
    distinct = pc.count_distinct(table.column("trade_id")).as_py()
    lake_filesystem(settings).rm(bucket, recursive=True)
    if table.num_rows != trades or distinct != trades:
        raise SystemExit(f"two deployments stored {table.num_rows} rows ({distinct} distinct) of {trades} trades")
    return {"seconds": seconds, "rows": table.num_rows, "lost_races": sum(log.count("lost a race") for log in logs)
            + sum(log.count("another writer committed") for log in logs),
            "rows_left_out": sum(int(count) for log in logs
                                 for count in re.findall(r"(\d+) rows another commit stored already left out", log))}


def measure_producer(settings: Settings, run: str, seconds: float) -> dict:
    topic = f"bench_produce_{run}"
    settings.kafka_cluster().ensure_topics([topic])
    result = run_contender(bytewax(f"bench.flows:stock_produce({topic!r}, synthetic_trades_per_second=1e6, "
                                   f"produce_for_seconds={seconds})"))
    messages = topic_size(settings, topic)
    return {"messages": messages, "seconds": result["seconds"], "rate": messages / result["seconds"],
            "peak_rss_mb": result["peak_rss_mb"]}


def store_settings(command: str) -> Settings:
    """The settings, with what a benchmark needs of them (the object store's address and keys)."""
    settings = load_settings()
    try:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")
    except ConfigError as exc:
        raise SystemExit(f"{command}: configuration error: {exc}") from None
    return settings


def new_run() -> str:
    """A run's name: its UTC start and a random suffix; its topics, buckets and results file carry it."""
    return datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S") + uuid.uuid4().hex[:4]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--trades", type=int, default=int(os.environ.get("BENCH_TRADES", 2_000_000)))
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--naive-rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1, help="Bytewax workers of the one stock_consume process")
    parser.add_argument("--processes", type=int, default=1,
                        help="stock_consume as a Bytewax cluster of this many processes of one worker (bench.cluster)")
    parser.add_argument("--freshness-seconds", type=float, default=30)
    parser.add_argument("--freshness-rate", type=float, default=20_000)
    parser.add_argument("--freshness-max-age", type=float, default=5)
    parser.add_argument("--producer-seconds", type=float, default=15)
    parser.add_argument("--day-tickers", type=int, default=50,
                        help="tickers of the streamed day (2 340 ten-second flushes: one file per ticker and flush)")
    parser.add_argument("--sentiment-rows", type=int, default=20_000,
                        help="news messages and posts decoded with and without sentiment scoring")
    parser.add_argument("--day-flushes", type=int, default=None, help="only the first flushes of the streamed day")
    parser.add_argument("--signals-articles", type=int, default=20_000, help="news articles beside the trades' bars")
    parser.add_argument("--signals-posts", type=int, default=100_000, help="Bluesky posts beside the trades' bars")
    parser.add_argument("--only", default=",".join(DEFAULT_PARTS),
                        help="comma-separated parts to run (the table needs all of them)")
    args = parser.parse_args(argv)
    settings = store_settings("bench")
    run = new_run()
    topic = f"bench_trades_{run}"
    try:
        return measure(args, settings, run, topic)
    finally:
        drop_topics(settings, run)


PARTS = ("stock_consume", "floor", "raw_limit", "naive", "bars", "freshness", "producer", "streamed_day", "two_deployments",
         "sentiment", "signals")
DEFAULT_PARTS = PARTS


def measure(args: argparse.Namespace, settings: Settings, run: str, topic: str) -> int:
    only = set(args.only.split(","))
    if only - set(PARTS):
        raise SystemExit(f"--only: unknown parts {sorted(only - set(PARTS))}; the parts are {', '.join(PARTS)}")
    if "signals" in only and "stock_consume" not in only:
        say("signals is measured against stock_consume: running stock_consume too")
        only.add("stock_consume")
    if args.processes > 1 and args.workers > 1:
        raise SystemExit("--processes and --workers: a cluster's processes have one worker each here; give one of them")
    stock_consume = f"bench.flows:stock_consume({topic!r}, 'bench-consume-{run}')"
    results: dict = {"run": run, "trades": args.trades, "tickers": args.tickers, "workers": args.workers,
                     "processes": args.processes, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    contenders = {
        "stock_consume": ([sys.executable, "-m", "bench.cluster", str(args.processes), stock_consume]
                          if args.processes > 1 else bytewax(stock_consume, "-w", str(args.workers)),
                          f"bench-consume-{run}"),
        "floor": ([sys.executable, "-m", "bench.flows", "floor", topic, f"bench-floor-{run}"], f"bench-floor-{run}"),
        "raw_limit": ([sys.executable, "-m", "bench.flows", "raw_limit", topic, f"bench-raw-{run}"], f"bench-raw-{run}"),
        "naive": ([sys.executable, "-m", "bench.flows", "naive", topic, f"bench-naive-{run}", str(args.naive_rows)],
                  f"bench-naive-{run}"),
        "bars": (bytewax(f"bench.flows:bars_consume({topic!r}, 'bench-bars-{run}')"), f"bench-bars-{run}"),
    }
    if only & {*contenders, "two_deployments", "signals"}:
        say(f"pre-filling topic {topic} with {args.trades:,} trades for {args.tickers} tickers")
        started = time.perf_counter()
        prefill(settings, topic, args.trades, args.tickers)
        say(f"pre-filled in {time.perf_counter() - started:.1f} s")
    for name, (command, bucket) in contenders.items():
        if name in only:
            results[name] = drain(settings, name, command, bucket)
    if "bars" in results:  # its rows are bars; what it keeps up with is trades
        results["bars"]["trades_per_s"] = args.trades / results["bars"]["seconds"]
    if "stock_consume" in results and results["stock_consume"]["rows"] != args.trades:
        raise SystemExit(f"stock_consume stored {results['stock_consume']['rows']} of {args.trades} trades")
    if "two_deployments" in only:
        say("draining with two stock_consume deployments at once, into one table")
        results["two_deployments"] = measure_two_deployments(settings, run, topic, args.trades)
        two = results["two_deployments"]
        print(f"    {two['rows']:,} rows, each once, in {two['seconds']:.2f} s; {two['lost_races']} lost races, "
              f"{two['rows_left_out']:,} rows uploaded again without what the other stored", flush=True)
    if "signals" in only:
        say(f"signals_consume: the bars of the {args.trades:,} trades with {args.signals_articles:,} articles and "
            f"{args.signals_posts:,} posts")
        results["signals"] = signals_part.run(
            settings, run, args.trades, args.signals_articles, args.signals_posts,
            bars_command=lambda bucket: bytewax(f"bench.flows:bars_consume({topic!r}, {bucket!r})"),
            signals_command=lambda bars_uri, prefix: bytewax(f"bench.flows:signals_consume({bars_uri!r}, {prefix!r})"),
            run_contender=run_contender)
    if "freshness" in only:
        say(f"freshness at {args.freshness_rate:,.0f} trades/s for {args.freshness_seconds:g} s")
        results["freshness"] = measure_freshness(settings, run, args.freshness_seconds, args.freshness_rate,
                                                 args.freshness_max_age)
    if "producer" in only:
        say(f"synthetic producer at full speed for {args.producer_seconds:g} s")
        results["producer"] = measure_producer(settings, run, args.producer_seconds)
    if "sentiment" in only:
        say(f"sentiment scoring: {args.sentiment_rows:,} news messages and posts decoded with and without it")
        results["sentiment"] = sentiment_cost.run(args.sentiment_rows)
    if "streamed_day" in only:
        results["streamed_day"] = streamed_day.run(
            settings, run, args.day_tickers,
            restart_command=lambda restart_topic, bucket: bytewax(f"bench.flows:stock_consume({restart_topic!r}, {bucket!r})"),
            prefill_restart_topic=lambda restart_topic: prefill(settings, restart_topic, 5_000, args.day_tickers),
            flushes=args.day_flushes)
    results["ratios"] = ratios(results)
    if not set(DEFAULT_PARTS) <= only:  # a partial run: no table, but its figures are kept
        print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
        write_results(run, results)
        return 0

    ours, floor, raw, naive = results["stock_consume"], results["floor"], results["raw_limit"], results["naive"]
    fresh, producer, day = results["freshness"], results["producer"], results["streamed_day"]
    restart = day["restart"]
    table = [
        ("stock_consume rows/s", f"{ours['rows_per_s']:,.0f}", "≥ 150,000"),
        ("floor rows/s (vectorised, partitioned, no guarantees)", f"{floor['rows_per_s']:,.0f}", ""),
        ("raw limit rows/s", f"{raw['rows_per_s']:,.0f}", ""),
        ("naive consumer rows/s", f"{naive['rows_per_s']:,.0f}", ""),
        ("stock_consume / floor", f"{results['ratios']['stock_consume/floor']:.2f}", "≥ 0.80"),
        ("stock_consume / raw", f"{results['ratios']['stock_consume/raw']:.2f}", ""),
        ("stock_consume / naive", f"{results['ratios']['stock_consume/naive']:.1f}", "≥ 10"),
        ("stock_consume peak RSS MB (of it anonymous)", f"{ours['peak_rss_mb']:.0f} ({ours['peak_anonymous_mb']:.0f})", "≤ 400"),
        ("CPU s per million rows: stock_consume / floor",
         f"{ours['cpu_s_per_million_rows']:.1f} / {floor['cpu_s_per_million_rows']:.1f}", ""),
        ("stock_consume files / rows per file", f"{ours['files']} / {ours['rows_per_file']:,.0f}", ""),
        ("raw files / rows per file", f"{raw['files']} / {raw['rows_per_file']:,.0f}", ""),
        (f"freshness p50 / p99 s (at {fresh['achieved_rate']:,.0f}/s)", f"{fresh['p50_s']:.2f} / {fresh['p99_s']:.2f}",
         f"p99 ≤ {fresh['batch_max_age_s'] + FRESHNESS_MARGIN_S:g}"),
        ("synthetic producer msgs/s", f"{producer['rate']:,.0f}", "≥ 300,000"),
        (f"streamed day: files / commits/s ({day['written']['tickers']} tickers)",
         f"{day['written']['files']:,} / {day['written']['commits_per_s']:.1f}", ""),
        ("  restart: first commit after launch s", f"{restart['to_first_commit_s']:.2f}", "≤ 5"),
        ("  restart: of which imports s", f"{restart['imports_s']:.2f}", ""),
        ("  ticker-day query s: small files / compacted", f"{day['query_before_s']:.2f} / {day['query_after_s']:.3f}", ""),
        ("  one hour of it: files read / of the day's (data skipping)",
         f"{day['data_skipping']['hour_files']:,} / {day['data_skipping']['ticker_day_files']:,}", "< all"),
        ("  compacted / one Parquet file: right after", f"{day['after_vs_one_file']:.1f}", ""),
        ("  compacted / one Parquet file: tombstones expired", f"{day['expired_vs_one_file']:.1f}", "≤ 3"),
        ("  compaction rows/s", f"{day['compaction']['rows_per_s']:,.0f}", ""),
    ]
    if "bars" in results:
        table += [("bars_consume trades/s / stock_consume rows/s", f"{results['ratios']['bars/stock_consume']:.2f}", "≥ 1"),
                  ("bars_consume peak RSS MB / bars written",
                   f"{results['bars']['peak_rss_mb']:.0f} / {results['bars']['rows']:,}", "")]
    if "signals" in results:
        signals = results["signals"]
        table += [("signals_consume trades/s / stock_consume rows/s", f"{results['ratios']['signals/stock_consume']:.2f}", "≥ 1"),
                  ("  the same by CPU seconds", f"{results['ratios']['signals/stock_consume_cpu']:.2f}", ""),
                  (f"  signals rows/s ({signals['articles']:,} articles, {signals['posts']:,} posts) / peak RSS MB",
                   f"{signals['rows_per_s']:,.0f} / {signals['peak_rss_mb']:.0f}", "")]
    for name in ("news", "bluesky"):
        cost = results["sentiment"][name]
        table.append((f"{name} decode rows/s with sentiment / without",
                      f"{cost['decode_rows_per_s_with_sentiment']:,.0f} / {cost['decode_rows_per_s_without_sentiment']:,.0f}", ""))
        table.append((f"  / {name}_produce peak rows/s ({cost['producer_peak_rows_per_s']:,.1f})", f"{cost['headroom']:.1f}×", "≥ 1"))
    if "two_deployments" in results and "stock_consume" in results:
        two = results["two_deployments"]
        table += [("two deployments into one table: time / one deployment's",
                   f"{two['seconds'] / results['stock_consume']['seconds']:.2f}", ""),
                  ("  lost races / rows left out", f"{two['lost_races']} / {two['rows_left_out']:,}", "")]
    width = max(len(row[0]) for row in table)
    print()
    print(f"| {'measure':<{width}} | {'value':>18} | {'target':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 20}|{'-' * 12}|")
    for name, value, target in table:
        print(f"| {name:<{width}} | {value:>18} | {target:>10} |")
    write_results(run, results)
    return 0


def ratios(results: dict) -> dict[str, float]:
    """stock_consume's rows/s against each reference that ran, and the bars' and the signals' trades/s against it."""
    if "stock_consume" not in results:
        return {}
    ours = results["stock_consume"]["rows_per_s"]
    found = {f"stock_consume/{short}": ours / results[name]["rows_per_s"]
             for name, short in (("floor", "floor"), ("raw_limit", "raw"), ("naive", "naive")) if name in results}
    if "bars" in results:
        found["bars/stock_consume"] = results["bars"]["trades_per_s"] / ours
    if "signals" in results:  # by CPU seconds too: on a loaded machine wall times say more of the others' work
        found["signals/stock_consume"] = results["signals"]["trades_per_s"] / ours
        found["signals/stock_consume_cpu"] = results["stock_consume"]["cpu_s"] / results["signals"]["cpu_s"]
    return found


def write_results(run: str, results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{run}.json").write_text(json.dumps(results, indent=2))
    say(f"results written to bench/results/{run}.json")


if __name__ == "__main__":
    sys.exit(main())
