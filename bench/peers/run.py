"""`make bench-peers`: stock_consume against what users would deploy instead, on one prefilled topic.

    python -m bench.peers.run [--trades 500000] [--tickers 500] [--only stock_consume,floor,spark,quix]

The topic is prefilled with trades and each contender drains it into a bucket of its own on the same MinIO,
one after the other, each measured as `make bench` measures its own (bench/run.py: rows/s from the
contender's own clock, CPU seconds of its whole process tree, peak RSS: a Python contender's own high-water
mark, Spark's the sum of its process tree's (the JVM and its launcher; `bench.run.TreeHighWater`), and of
that peak the anonymous memory (RSS also counts the pages of the libraries' files); files):
- `stock_consume` and the `floor` contender of bench/flows.py, for the ratios;
- Spark Structured Streaming -> Delta (bench/peers/spark_job.py, `.venv-peers/spark`);
- Quix Streams -> Parquet on S3 (bench/peers/quix_app.py, `.venv-peers/quix`).
What each stored is read back and checked: every produced trade once (rows, distinct trade ids). A fast
wrong answer is reported as wrong, not as fast.

Results go to bench/results/<run>-peers.json and a bar chart to bench/results/peers.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from bench.peers.chart import draw
from bench.peers.spark import REPO, SPARK_VENV, s3a_uri, spark_submit
from bench.run import RESULTS, bytewax, drain, drop_topics, new_run, prefill, say, store_settings
from marketstream import trades
from marketstream.lake import lake_filesystem
from marketstream.settings import Settings
from sinks.object_store import ObjectStore

PEERS = Path(__file__).resolve().parent
QUIX_VENV = REPO / ".venv-peers" / "quix"
CONTENDERS = ("stock_consume", "floor", "spark", "quix")


def spark_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type):
        return "STRING"
    if pa.types.is_float64(arrow_type):
        return "DOUBLE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    if pa.types.is_list(arrow_type):
        return f"ARRAY<{spark_type(arrow_type.value_type)}>"
    raise ValueError(f"no Spark type for {arrow_type} in the trade message")


def trade_message_ddl() -> str:
    """The trade message's fields as Spark DDL, from the contract's columns: the ticker travels as
    `symbol`, the date is derived, not sent."""
    fields = [("symbol", pa.string()), *((f.name, f.type) for f in trades.COLUMNS if f.name not in ("ticker", "date"))]
    return ", ".join(f"`{name}` {spark_type(kind)}" for name, kind in fields)


def stored_trade_ids(settings: Settings, bucket: str) -> pa.ChunkedArray:
    """The `trade_id` of every row in `bucket`: of its Delta table's current version, else of every Parquet file."""
    fs = lake_filesystem(settings)
    if fs.exists(f"{bucket}/_delta_log"):
        table = DeltaTable(f"s3://{bucket}", storage_options=settings.delta_storage_options())
        return table.to_pyarrow_table(columns=["trade_id"]).column("trade_id")
    chunks = []
    for path in fs.find(bucket):
        if path.endswith(".parquet"):
            with fs.open(path, "rb") as handle:
                chunks.extend(pq.read_table(handle, columns=["trade_id"]).column("trade_id").chunks)
    return pa.chunked_array(chunks, pa.string())


def correctness(settings: Settings, produced: int):
    """A check for `drain`: what a contender stored against the `produced` trades (ids `b0` … `b<n-1>`)."""
    expected = pa.array([f"b{i}" for i in range(produced)])

    def check(bucket: str) -> dict:
        ids = stored_trade_ids(settings, bucket)
        distinct = pc.unique(ids)
        missing = produced - pc.sum(pc.is_in(expected, value_set=distinct)).as_py()
        verdict = ("every trade once" if len(ids) == produced == len(distinct) and not missing else
                   f"WRONG: {len(ids):,} rows, {len(distinct):,} distinct trades, {missing:,} of {produced:,} missing")
        return {"stored_rows": len(ids), "distinct_trades": len(distinct), "missing_trades": missing,
                "correct": verdict == "every trade once", "verdict": verdict}

    return check


def logged(command: list[str], log: Path) -> list[str]:
    """`command` with its standard error appended to `log` (exec: the measured process is the command)."""
    return ["bash", "-c", f'exec "$@" 2>>{log}', "bash", *command]


def installed_version(venv: Path, distribution: str) -> str | None:
    """The version of `distribution` (its name as its `.dist-info` folder spells it) in a peer's environment."""
    found = sorted(venv.glob(f"lib/python3*/site-packages/{distribution}-*.dist-info"))
    return found[0].name.removeprefix(f"{distribution}-").removesuffix(".dist-info") if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-peers")
    parser.add_argument("--trades", type=int, default=int(os.environ.get("BENCH_TRADES", 500_000)))
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    if set(only) - set(CONTENDERS):
        raise SystemExit(f"--only: the contenders are {', '.join(CONTENDERS)}")
    settings = store_settings("bench-peers")
    run = new_run()
    try:
        return measure(args, only, settings, run)
    finally:
        drop_topics(settings, run)


def measure(args: argparse.Namespace, only: list[str], settings: Settings, run: str) -> int:
    topic = f"bench_trades_{run}"
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-peers-{run}-"))
    log = scratch / "peers.log"
    say(f"pre-filling topic {topic} with {args.trades:,} trades for {args.tickers} tickers")
    prefill(settings, topic, args.trades, args.tickers)
    store = ObjectStore(settings.s3_storage_options())
    check = correctness(settings, args.trades)
    quix_env = {"AWS_ACCESS_KEY_ID": settings.s3_access_key.get_secret_value(),
                "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
                "AWS_REGION": settings.s3_region, "AWS_ENDPOINT_URL_S3": settings.s3_endpoint_url}
    spark_command, spark_env = spark_submit(
        settings, PEERS / "spark_job.py", settings.kafka_bootstrap_servers, topic, s3a_uri(f"s3://bench-spark-{run}"),
        str(scratch / "spark-checkpoint"), trade_message_ddl())
    contenders = {
        "stock_consume": (bytewax(f"bench.flows:stock_consume({topic!r}, 'bench-consume-{run}')"), {}),
        "floor": ([sys.executable, "-m", "bench.flows", "floor", topic, f"bench-floor-{run}"], {}),
        "spark": (logged(spark_command, log), spark_env),
        "quix": (logged([str(QUIX_VENV / "bin" / "python"), str(PEERS / "quix_app.py"), settings.kafka_bootstrap_servers, topic,
                         f"bench-quix-{run}", f"bench-quix-{run}"], log), quix_env),
    }
    buckets = {"stock_consume": f"bench-consume-{run}", "floor": f"bench-floor-{run}",
               "spark": f"bench-spark-{run}", "quix": f"bench-quix-{run}"}
    results: dict = {"run": run, "trades": args.trades, "tickers": args.tickers, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"bytewax": metadata.version("bytewax"),
                     "pyspark": installed_version(SPARK_VENV, "pyspark"),
                     "delta_spark": installed_version(SPARK_VENV, "delta_spark"),
                     "quixstreams": installed_version(QUIX_VENV, "quixstreams")}}
    try:
        for name in only:
            command, env = contenders[name]
            store.ensure_bucket(buckets[name])  # S3A and Quix's sink write into a bucket that exists
            results[name] = drain(settings, name, command, buckets[name], env, check)
            print(f"    {results[name]['verdict']}", flush=True)
    except SystemExit:
        print(log.read_text()[-4000:] if log.exists() else "", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["ratios"] = ratios(results)
    print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{run}-peers.json").write_text(json.dumps(results, indent=2))
    draw(results, RESULTS / "peers.png")
    say(f"results written to bench/results/{run}-peers.json, chart to bench/results/peers.png")
    return 0


def ratios(results: dict) -> dict:
    ours = results.get("stock_consume")
    if not ours:
        return {}
    found = {}
    if "floor" in results:
        found["stock_consume/floor rows/s"] = ours["rows_per_s"] / results["floor"]["rows_per_s"]
    if "spark" in results:
        spark = results["spark"]
        found["stock_consume/spark rows/s"] = ours["rows_per_s"] / spark["rows_per_s"]
        found["stock_consume/spark CPU s per Mrow"] = ours["cpu_s_per_million_rows"] / spark["cpu_s_per_million_rows"]
        found["stock_consume/spark peak RSS"] = ours["peak_rss_mb"] / spark["peak_rss_mb"]
        found["stock_consume/spark peak anonymous memory"] = ours["peak_anonymous_mb"] / spark["peak_anonymous_mb"]
    if "quix" in results:
        found["stock_consume/quix rows/s"] = ours["rows_per_s"] / results["quix"]["rows_per_s"]
    return found


TARGETS = {"stock_consume/floor rows/s": "≥ 0.80", "stock_consume/spark rows/s": "≥ 2",
           "stock_consume/spark CPU s per Mrow": "≤ 0.25", "stock_consume/spark peak RSS": "≤ 0.25",
           "stock_consume/quix rows/s": "≥ 1"}


def print_table(results: dict) -> None:
    print()
    print("| contender | rows/s | CPU s / M rows | peak RSS MB | of it anonymous MB | files | stored |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in CONTENDERS:
        if name in results:
            row = results[name]
            print(f"| {name} | {row['rows_per_s']:,.0f} | {row['cpu_s_per_million_rows']:.1f} | "
                  f"{row['peak_rss_mb']:.0f} | {row['peak_anonymous_mb']:.0f} | {row['files']:,} | {row['verdict']} |")
    print()
    for name, value in results["ratios"].items():
        print(f"| {name} | {value:.2f} | {TARGETS.get(name, '')} |")


if __name__ == "__main__":
    sys.exit(main())
