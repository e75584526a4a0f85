"""The one consumer dataflow: Kafka topic -> decode and validate -> dead-letter -> key -> batch -> the lake (a
Delta table; plain Parquet files with `LAKE_FORMAT=parquet`).

Each `dataflows/*_consume.py` hands a dataset of the registry (`marketstream.datasets`) to `build_consumer_flow`.

The hot path works on whole message batches: a poll of one Kafka partition is decoded into Arrow columns
at once and travels as Arrow tables to the batcher, whose flushes are cut into one file per hive partition
(`sinks.files.FileLayout`; by the Delta sink on its upload threads, off the worker's), so no step pays a
per-message cost in Bytewax.

Guarantees: every message read ends in exactly one place: a row in the lake, a dead-letter record carrying
its reason, or a counted and logged skip (a valid record the dataset declines to store, such as a real
trade outside the NYSE session; the counts are logged every 10 s while skips come, and when the flow
ends). A message that breaks the parser in an unforeseen way is dead-lettered too; the flow keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import bytewax.operators as op
import numpy.ma  # noqa: F401 - imported by pyarrow's first `pa.array` of a numpy array: at start, not in a batch
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from marketstream import metrics
from marketstream.batching import BufferBudget, TableBatcher
from marketstream.memory import allocate_large_blocks_apart, keep_pyarrow_from_loading_pandas, release_free_memory
from marketstream.datasets import Dataset
from marketstream.records import ROW_INDEX
from marketstream.schemas import dictionary_paths
from marketstream.settings import Settings, get_settings
from pipelines.connectors import shared_object_store, topic_source
from pipelines.runtime import build_or_exit, consumer_needs
from sinks.dead_letters import DeadLetter, DeadLetterSink
from sinks.delta import DeltaLakeSink, Flush
from sinks.files import PREFIX_COLUMN, FileLayout, FileRows
from sinks.parquet import ParquetSink
from sources.kafka_topic import InFlight, PolledMessages

log = logging.getLogger(__name__)


def dead_letter(batch: PolledMessages, index: int, reason: str, dataset: str) -> DeadLetter:
    """The original message, with why and where from."""
    return DeadLetter(dataset, batch.topic, batch.incarnation, batch.partition, batch.offsets[index],
                      batch.keys[index], batch.values[index], reason)


@dataclass
class SkipCounter:
    """Counts valid rows a dataset declines to store (one counter per process), logging the totals at most
    every `interval` s while rows are skipped, and once more when the flow ends (`SkipSummary`)."""

    dataset: str
    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, int] = field(default_factory=dict)
    _workers_running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._logged_at = self.clock()

    def add(self, reason: str, count: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count
        metrics.SKIPPED_ROWS.labels(self.dataset, metrics.reason_kind(reason)).inc(count)
        if self.clock() - self._logged_at >= self.interval:
            self.report()

    def report(self, when: str = "so far") -> None:
        for reason, count in self.counts.items():
            log.info("%s: not stored %s: %d rows %s", self.dataset, when, count, reason)
        self._logged_at = self.clock()

    def worker_started(self) -> None:
        with self._lock:
            self._workers_running += 1

    def worker_done(self) -> None:
        """Once the process's last worker is done, its counts are final: said, even if the run was short."""
        with self._lock:
            self._workers_running -= 1
            if self._workers_running == 0 and self.counts:
                self.report("in this run")


class SkipSummary(DynamicSink):
    """Takes the decoded stream of its worker and writes nothing: its partitions' `close`, when the flow
    ends, is what tells `counter` that the worker is done.

    Delivery guarantee: not applicable (it writes nothing; the summary is a log line)."""

    def __init__(self, counter: SkipCounter):
        self._counter = counter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> "_WorkerEnd":
        self._counter.worker_started()
        return _WorkerEnd(self._counter)


class _WorkerEnd(StatelessSinkPartition):
    def __init__(self, counter: SkipCounter):
        self._counter = counter

    def write_batch(self, items: list) -> None:
        pass

    def close(self) -> None:
        self._counter.worker_done()


@dataclass
class Decoded:
    """One message batch after validation: its rows to store (with their destination columns), if any,
    and the dead letters."""

    kafka_partition: int
    rows: pa.Table | None
    dead_letters: list[DeadLetter]
    incarnation: str = ""
    """The topic's incarnation (its topic id) the batch was read from."""


def decode(dataset: Dataset, settings: Settings, skipped: SkipCounter, in_flight: InFlight, batch: PolledMessages) -> Decoded:
    release_free_memory()  # what the batches decoded and written so far freed (at most every MIN_INTERVAL_SECONDS)
    table, rejects = dataset.decode(batch.values)
    in_flight.release(len(batch))
    dead = [dead_letter(batch, index, reason, dataset.name) for index, reason in rejects]
    if dataset.skip is not None and table.num_rows:
        mask, reason = dataset.skip(table)
        count = pc.sum(mask).as_py() or 0
        if count:
            skipped.add(reason, count)
            table = table.filter(pc.invert(mask))
    if not table.num_rows:
        return Decoded(batch.partition, None, dead, batch.incarnation)

    offsets = batch.offsets_at(table.column(ROW_INDEX))
    table = table.drop_columns([ROW_INDEX])
    table = table.append_column("kafka_partition", pa.repeat(pa.scalar(batch.partition, pa.int32()), table.num_rows))
    table = table.append_column("kafka_offset", offsets)
    if dataset.prefix is not None:
        table = table.append_column(PREFIX_COLUMN, dataset.prefix(table, settings))
    return Decoded(batch.partition, table, dead, batch.incarnation)


def start_preparing(dataset: Dataset) -> None:
    """`dataset.prepare`, if it has one, on a thread of its own, while the flow's other start-up work waits
    for the servers."""
    if dataset.prepare is not None:
        threading.Thread(target=_prepared, args=(dataset,), name=f"{dataset.name}-prepare", daemon=True).start()


def _prepared(dataset: Dataset) -> None:
    # a failure is only logged: what it would have loaded is loaded when needed, and the first batch meets
    # the same error where errors are handled
    try:
        dataset.prepare()
    except Exception as error:  # noqa: BLE001
        log.warning("%s: preparing ahead failed, done when needed: %s", dataset.name, error)


def into_files(layout: FileLayout, kafka_partition_rows: tuple[str, pa.Table]) -> list[tuple[str, FileRows]]:
    """A flushed batch of one Kafka partition -> one `FileRows` per destination (hive partition) and
    `layout.max_rows`, keyed `<object key prefix>|<Kafka partition>`."""
    kafka_partition, table = kafka_partition_rows
    return [(f"{file.prefix}|{kafka_partition}", file) for file in layout.files(int(kafka_partition), table)]


def file_layout(dataset: Dataset, settings: Settings) -> FileLayout:
    """How the consumer's flushes of `dataset` are cut into files."""
    return FileLayout(tuple(dataset.partitioning.names), dataset.schema, settings.batch_max_rows)


def each_let_go(into: Callable[[object], list]) -> Callable[[list], list]:
    """A `flat_map_batch` mapper applying `into` to one item of the batch after the other, letting go of
    each item once it is mapped. The batcher emits the flushes of several Kafka partitions in one batch
    (at end of input, or when their deadlines meet): held until all were split into files, every flush
    was in memory twice at the peak, as it came and sorted into its files."""
    def mapped(batch: list) -> list:
        batch.reverse()
        out = []
        while batch:
            out.extend(into(batch.pop()))
        return out
    return mapped


def build_consumer_flow(
    dataset: Dataset,
    settings: Settings | None = None,
    *,
    source: Source | None = None,
    lake_sink: Sink | None = None,
    dead_letter_sink: Sink | None = None,
) -> Dataflow:
    """The dataflow for `dataset`; tests may replace the Kafka source and either sink."""
    settings = settings or get_settings()
    if lake_sink is None:
        settings.require("s3_endpoint_url", "s3_access_key", "s3_secret_key")

    allocate_large_blocks_apart()
    keep_pyarrow_from_loading_pandas()
    start_preparing(dataset)
    flow = Dataflow(f"{dataset.name}_consume")
    in_flight = InFlight(settings.kafka_max_in_flight_messages)
    polls = op.input("kafka_in", flow, source or topic_source(settings, dataset.topic, in_flight))
    skipped = SkipCounter(dataset.name)
    decoded = op.map("decode", polls, partial(decode, dataset, settings, skipped, in_flight))
    op.output("skip_summary", decoded, SkipSummary(skipped))

    dead_letters = op.flat_map("dead_letters", decoded, lambda d: d.dead_letters)
    store = shared_object_store(settings)
    op.output("dead_letter", dead_letters, dead_letter_sink or DeadLetterSink(
        settings.kafka_cluster(), topic=dataset.dead_letter_topic, source_topic=dataset.topic, bucket=dataset.bucket, store=store))

    # batches are kept per Kafka partition and split per destination only when written: a poll holds
    # rows of many tickers, and a few large items cost far less than one per ticker and poll
    per_partition = op.filter_map("rows", decoded, lambda d: (str(d.kafka_partition), d.rows) if d.rows is not None else None)
    budget = BufferBudget(settings.batch_max_buffered_rows)
    metrics.BUFFERED_ROWS.labels(dataset.name).set_function(lambda: budget.rows)
    batch_rows, batch_age = metrics.BATCH_ROWS.labels(dataset.name), metrics.BATCH_AGE.labels(dataset.name)

    def flushed(rows: int, age: timedelta) -> None:
        batch_rows.observe(rows)
        batch_age.observe(age.total_seconds())

    batcher = partial(TableBatcher, timedelta(seconds=settings.batch_max_age_seconds), budget, on_flush=flushed)
    batched = op.stateful_batch("batch", per_partition, lambda state: batcher(state))
    incarnation = partial(settings.kafka_cluster().topic_incarnation, dataset.topic)
    dictionary_columns = dictionary_paths(dataset.schema, dataset.few_values)
    layout = file_layout(dataset, settings)
    if settings.lake_format == "delta":
        # one item per flush of a Kafka partition, cut into files by the sink: they are committed together
        flushes = op.map("flushes", batched, lambda flushed: (flushed[0], Flush(int(flushed[0]), flushed[1], layout)))
        op.output("lake", flushes, lake_sink or DeltaLakeSink(
            bucket=dataset.bucket, topic=dataset.topic, dataset=dataset.name, schema=dataset.schema,
            partitioning=dataset.partitioning, topic_incarnation=incarnation, store=store,
            storage_options=settings.delta_storage_options(), compression=settings.parquet_compression,
            dictionary_columns=dictionary_columns, former_datasets=dataset.former_names,
            natural_key=dataset.natural_key if dataset.published_twice else ()))
        return flow
    files = op.flat_map_batch("files", batched, each_let_go(partial(into_files, layout)))
    op.output("lake", files, lake_sink or ParquetSink(bucket=dataset.bucket, topic=dataset.topic,
                                                      topic_incarnation=incarnation, store=store,
                                                      compression=settings.parquet_compression,
                                                      dictionary_columns=dictionary_columns))
    return flow


def consumer_dataflow(dataset: Dataset) -> Dataflow:
    """What a `*_consume` module's `flow()` returns: the flow built from the environment's settings, once
    the servers it needs answer (`pipelines.runtime`)."""
    return build_or_exit(partial(build_consumer_flow, dataset), consumer_needs(dataset.bucket))
