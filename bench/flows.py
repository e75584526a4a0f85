"""The contenders of the benchmark, each run as its own process so its peak RSS can be measured.

Each prints `BENCH <seconds>` at exit: the time from the end of its imports to the end of its work, so
interpreter and library start-up, the same for everyone, is left out; and `PEAK_RSS_MB`, its own peak RSS.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from dataclasses import replace

_started = time.perf_counter()


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). The parent's `wait4` figure is no measure: a child's counts the
    benchmark's own peak at the fork (a child doing nothing reported 394 MB after the parent read a topic)."""
    with open("/proc/self/status") as status:
        kilobytes = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    return int(kilobytes) / 1024


def _started_as_deployed() -> float:
    """What `pipelines.runtime.build_or_exit` does last (the objects of start-up left out of the garbage
    collector's passes), then the start of the measured time. The floor and the raw limit get it too: a
    floor is the best any loop can do."""
    from marketstream.memory import exempt_startup_objects_from_collection

    exempt_startup_objects_from_collection()
    return time.perf_counter()


@atexit.register
def _report() -> None:
    print(f"BENCH {time.perf_counter() - _started:.3f}", flush=True)
    print(f"PEAK_RSS_MB {_peak_rss_mb():.1f}", flush=True)


def stock_consume(topic: str, bucket: str, **overrides):
    """The real `dataflows.stock_consume`, pointed at the benchmark's topic and bucket, with its start-up
    checks (`consumer_needs`)."""
    global _started
    from marketstream.datasets import STOCK
    from pipelines.consumer import build_consumer_flow
    from pipelines.runtime import consumer_needs
    from marketstream.settings import load_settings

    from marketstream import preflight, shutdown

    shutdown.install()
    settings = load_settings(**{"kafka_stop_at_end": True, **overrides})
    flow = build_consumer_flow(replace(STOCK, topic=topic, bucket=bucket), settings)
    preflight.wait_for(settings, consumer_needs(bucket))
    _started = _started_as_deployed()
    print(f"READY {time.time()}", flush=True)  # the streamed-day restart tells imports from start-up work
    return flow


def bars_consume(topic: str, bucket: str, **overrides):
    """The real `dataflows.bars_consume`, reading the benchmark's topic, writing its bars to `bucket`, with
    its start-up checks (`BARS_NEEDS`)."""
    global _started
    from marketstream import preflight, shutdown
    from marketstream.settings import load_settings
    from pipelines.bars import BARS_NEEDS, build_bars_flow

    shutdown.install()
    settings = load_settings(**{"kafka_stop_at_end": True, "bars_bucket": bucket, **overrides})
    flow = build_bars_flow(settings, topic=topic)
    preflight.wait_for(settings, BARS_NEEDS)
    _started = _started_as_deployed()
    return flow


def _consumer(settings, topic: str, **config):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": "bench", "enable.auto.commit": False,
                         "enable.partition.eof": True, **config})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    return consumer, len(partitions)


def raw_limit(topic: str, bucket: str, rows_per_file: int = 100_000) -> None:
    """The floor: consume -> orjson -> pyarrow table -> Parquet to MinIO; no Bytewax, no validation."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq
    from confluent_kafka import KafkaError

    from marketstream.settings import load_settings
    from sinks.object_store import ObjectStore

    global _started
    settings = load_settings()
    store = ObjectStore(settings.s3_storage_options())
    store.ensure_bucket(bucket)
    consumer, open_partitions = _consumer(settings, topic)
    _started = _started_as_deployed()
    columns: dict[str, list] = {}
    count, files = 0, 0

    def write() -> None:
        nonlocal columns, count, files
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), sink, compression="zstd")
        store.put(bucket, f"raw/part-{files:05d}.parquet", sink.getvalue().to_pybytes())
        columns, count, files = {}, 0, files + 1

    while open_partitions:
        for message in consumer.consume(5000, 0.5):
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions -= 1
                continue
            for name, value in orjson.loads(message.value()).items():
                columns.setdefault(name, []).append(value)
            count += 1
            if count >= rows_per_file:
                write()
    if count:
        write()
    print(f"FILES {files}", flush=True)


def floor(topic: str, bucket: str, batch: int = 10_000, rows_per_write: int = 500_000) -> None:
    """The true floor of Kafka -> a partitioned lake: batches of `batch` messages, each one Arrow JSON read
    of their joined values with an explicit schema; every `rows_per_write` rows (stock_consume buffers as
    many: BATCH_MAX_BUFFERED_ROWS) get their New York date in one Arrow call, are sorted once by ticker and
    date and cut into one zstd Parquet file per ticker-date, encoded and uploaded on a thread pool while the
    next rows are read, one write in flight (bounded memory). No Bytewax, no validation, no dead letters,
    no commits: what any pipeline with those must come close to."""
    from concurrent.futures import ThreadPoolExecutor

    from marketstream.calendar import exchange_dates  # first: marketstream picks Arrow's memory pool
    from marketstream.memory import release_free_memory
    from marketstream.runs import key_runs
    from marketstream.settings import load_settings
    from sinks.object_store import ObjectStore
    from sources.kafka_topic import BOUNDED_FETCHES

    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq
    from confluent_kafka import KafkaError

    global _started
    settings = load_settings()
    store = ObjectStore(settings.s3_storage_options())
    store.ensure_bucket(bucket)
    consumer, open_partitions = _consumer(settings, topic, **BOUNDED_FETCHES)  # as stock_consume's
    schema = pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("size", pa.int64()),
                        ("timestamp", pa.timestamp("us", tz="UTC")), ("exchange", pa.string()),
                        ("conditions", pa.list_(pa.string())), ("trade_id", pa.string()), ("tape", pa.string()),
                        ("source", pa.string())])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    threads = 4
    uploads = ThreadPoolExecutor(threads)
    pending: list = []
    files = 0
    _started = _started_as_deployed()

    def encode(rows: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink, compression="zstd")
        return sink.getvalue().to_pybytes()

    def put(parts: dict[str, pa.Table]) -> None:
        release_free_memory()
        store.put_many(bucket, {key: encode(rows) for key, rows in parts.items()})

    def write() -> None:
        nonlocal files, tables, held
        table, tables, held = pa.concat_tables(tables), [], 0
        table = table.append_column("date", exchange_dates(table.column("timestamp")))
        table = table.sort_by([("symbol", "ascending"), ("date", "ascending")])
        rows = table.drop_columns(["symbol", "date"])
        parts = {}
        for (ticker, day), start, count in key_runs(table, ["symbol", "date"]):
            parts[f"ticker={ticker}/date={day}/part-{files:06d}.parquet"] = rows.slice(start, count)
            files += 1
        del table
        keys = list(parts)
        while pending:  # bounded memory: one write in flight while the next is read
            pending.pop(0).result()
        for i in range(threads):
            pending.append(uploads.submit(put, {key: parts[key] for key in keys[i::threads]}))

    values: list[bytes] = []
    tables: list[pa.Table] = []
    held = 0
    while open_partitions:
        for message in consumer.consume(batch, 0.5):
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions -= 1
                continue
            values.append(message.value())
        if len(values) >= batch or (values and not open_partitions):
            tables.append(pj.read_json(pa.BufferReader(b"\n".join(values)), parse_options=options))
            held, values = held + len(values), []
        if held >= rows_per_write or (tables and not open_partitions):
            write()
    for upload in pending:
        upload.result()
    uploads.shutdown()
    print(f"FILES {files}", flush=True)


def naive(topic: str, bucket: str, limit: int) -> None:
    """A typical first version: json.loads per message, a pandas DataFrame per 1000 rows, written with
    to_parquet through s3fs into the same ticker/date layout as stock_consume."""
    import pandas as pd
    from confluent_kafka import KafkaError

    from marketstream.lake import lake_filesystem
    from marketstream.settings import load_settings

    global _started
    settings = load_settings()
    fs = lake_filesystem(settings)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    consumer, open_partitions = _consumer(settings, topic)
    _started = time.perf_counter()
    rows, seen, files = [], 0, 0
    while open_partitions and seen < limit:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            if message.error().code() == KafkaError._PARTITION_EOF:
                open_partitions -= 1
            continue
        rows.append(json.loads(message.value()))
        seen += 1
        if len(rows) == 1000:
            frame = pd.DataFrame(rows)
            frame["timestamp"] = pd.to_datetime(frame["timestamp"])
            frame["date"] = frame["timestamp"].dt.tz_convert("America/New_York").dt.date
            for (ticker, day), group in frame.groupby(["symbol", "date"]):
                with fs.open(f"{bucket}/ticker={ticker}/date={day}/part-{files:06d}.parquet", "wb") as out:
                    group.drop(columns=["symbol", "date"]).to_parquet(out)
                files += 1
            rows = []
    print(f"FILES {files}", flush=True)
    print(f"ROWS {seen}", flush=True)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:4], *map(int, sys.argv[4:]))


def stock_produce(topic: str, **overrides):
    """The real `dataflows.stock_produce` (synthetic source), publishing to the benchmark's topic."""
    global _started
    from dataflows.stock_produce import build_flow
    from marketstream import shutdown
    from marketstream.settings import load_settings

    shutdown.install()
    flow = build_flow(load_settings(**{"stock_source": "synthetic", **overrides}), topic=topic)
    _started = _started_as_deployed()
    return flow


def signals_consume(bars_uri: str, prefix: str, **overrides):
    """The real `dataflows.signals_consume` over the benchmark's bars table (`bars_uri`) and the news and
    Bluesky tables under `s3://<prefix>/`, writing `s3://<prefix>/signals`; it stops once its first round has
    ended (the round's line makes the process send itself SIGTERM, as an operator stopping it would)."""
    global _started
    import os
    import signal

    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    from marketstream import shutdown
    from marketstream.settings import load_settings
    from pipelines.signals import SignalsTable, build_signals_flow

    class StopAfterTheFirstRound(StatelessSinkPartition):
        def write_batch(self, items):
            print(*items, sep="\n", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

    class FirstRound(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            return StopAfterTheFirstRound()

    shutdown.install()
    bucket = prefix.partition("/")[0]
    table = SignalsTable("signals", f"s3://{prefix}/signals", bucket, f"{prefix.partition('/')[2]}/signals".strip("/"),
                         {"bars": bars_uri, "news": f"s3://{prefix}/news", "bluesky": f"s3://{prefix}/bluesky"})
    flow = build_signals_flow(load_settings(**{"signals_interval_seconds": 0.05, **overrides}), [table], sink=FirstRound())
    _started = _started_as_deployed()
    return flow
