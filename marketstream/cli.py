"""`marketstream` command line: run a dataflow with recovery, the bounded demo, a report of the lake.

    python -m marketstream.cli run stock_consume [-w 2 | -i 0 -a "hostA:2101;hostB:2101" ...]
    python -m marketstream.cli demo [--seconds 60] [--rate 5] [--workers 2]
    python -m marketstream.cli report
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pyarrow.compute as pc

from marketstream import schemas
from marketstream.lake import lake_filesystem, open_dataset
from marketstream.settings import ConfigError, Settings, get_settings

REPO = Path(__file__).resolve().parent.parent
STOCK_TOPIC = "stock_trades"
STOCK_BUCKET = "stock-data"


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


def demo_recovery_directory(environ: Mapping[str, str]) -> Path:
    """The demo consumer's recovery state lives with the stack's data (`STACK_DIR`, as stack/stack.sh)."""
    return Path(environ.get("STACK_DIR") or REPO / ".stack") / "recovery" / "stock_consume"


def demo(settings: Settings, seconds: float, rate: float, workers: int) -> int:
    env = {**os.environ, "STOCK_SOURCE": "synthetic", "PRODUCE_FOR_SECONDS": str(seconds),
           "SYNTHETIC_TRADES_PER_SECOND": str(rate)}
    before = _topic_size(settings, STOCK_TOPIC)
    _say(f"producing synthetic trades into Kafka topic '{STOCK_TOPIC}' for {seconds:g} s ({rate:g}/s per ticker)")
    producer = _bytewax("dataflows.stock_produce", env)
    started = time.monotonic()
    while producer.poll() is None:
        time.sleep(min(5.0, max(seconds / 6, 1.0)))
        produced = _topic_size(settings, STOCK_TOPIC) - before
        print(f"    {time.monotonic() - started:5.0f} s  {produced:>9,} trades in Kafka", flush=True)
    if producer.returncode != 0:
        _say(f"producer failed with exit code {producer.returncode}")
        return 1

    recovery = demo_recovery_directory(os.environ)
    if not recovery.exists():
        recovery.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    _say(f"draining '{STOCK_TOPIC}' into MinIO bucket '{STOCK_BUCKET}' with stock_consume ({workers} workers)")
    consumer = _bytewax("dataflows.stock_consume", {**env, "KAFKA_STOP_AT_END": "true"},
                        "-w", str(workers), "-r", str(recovery), "-s", "5", "-b", "0")
    if consumer.wait() != 0:
        _say(f"stock_consume failed with exit code {consumer.returncode}")
        return 1
    return report(settings)


DATAFLOWS = ("stock_produce", "stock_consume", "macro_produce", "macro_consume", "news_produce", "news_consume",
             "bluesky_produce", "bluesky_consume")


def run(settings: Settings, dataflow: str, bytewax_args: list[str]) -> int:
    """`python -m bytewax.run dataflows.<dataflow>`, with recovery when RECOVERY_DIRECTORY is set.

    The recovery partitions are created on first use (`python -m bytewax.recovery <dir> 1`); the snapshot
    interval is SNAPSHOT_INTERVAL_SECONDS, and backups are not kept (`-b 0`).
    """
    args = [sys.executable, "-m", "bytewax.run", f"dataflows.{dataflow}"]
    if settings.recovery_directory:
        recovery = Path(settings.recovery_directory) / dataflow
        if not recovery.exists():
            recovery.mkdir(parents=True)
            subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
        args += ["-r", str(recovery), "-s", f"{settings.snapshot_interval_seconds:g}", "-b", "0"]
    os.execv(sys.executable, args + bytewax_args)


def report(settings: Settings) -> int:
    fs = lake_filesystem(settings)
    if not fs.exists(STOCK_BUCKET):
        _say(f"bucket '{STOCK_BUCKET}' does not exist yet")
        return 1
    for label, prefix in (("real trades", ""), ("synthetic trades", settings.stock_synthetic_prefix)):
        base = f"{STOCK_BUCKET}/{prefix}".rstrip("/")
        files = [f for f in fs.find(base) if f.endswith(".parquet") and (prefix or "/_" not in f)]
        _say(f"{label}: {len(files)} Parquet files under s3://{base}/")
        if not files:
            continue
        for path in files[:3]:
            print(f"    s3://{path}")
        if len(files) > 3:
            print(f"    ... and {len(files) - 3} more")
        table = open_dataset(settings, STOCK_BUCKET, schemas.STOCK_TRADES_PARTITIONING, prefix, schemas.STOCK_TRADES).to_table()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="marketstream")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser("demo", help="bounded end-to-end demo: synthetic trades -> Kafka -> MinIO")
    demo_cmd.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS", 60)))
    demo_cmd.add_argument("--rate", type=float, default=5.0, help="synthetic trades per second per ticker")
    demo_cmd.add_argument("--workers", type=int, default=2)
    commands.add_parser("report", help="what is in the stock-data bucket")
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
        return report(settings)
    except ConfigError as exc:
        print(f"marketstream: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
