"""The Parquet lake sink: writes each batch of one dataset partition as one Parquet object.

Delivery guarantee: exactly-once in the lake, for input that is delivered at least once. A batch holds
rows of one hive partition (`prefix`) read from one Kafka partition, and its object name records that
Kafka partition and the first and last offsets it holds (`sinks.layout.batch_object_name`). Rows of one
(prefix, Kafka partition) reach the sink in offset order, so the highest `last` offset among the objects
already stored under the prefix is a high-water mark: a row at or below it is already in the lake. Before
its first write to a prefix the sink lists that prefix once to learn the mark, then drops replayed rows at
or below it, so re-reading a topic after a crash, a restart without recovery, or with another worker
count adds no duplicates, whatever the batch boundaries were. Objects are written with a single PUT, so
readers never see a partial file and the mark never runs ahead of what is stored; while the store is down
the write is retried (`ObjectStore.put`) and the dataflow waits, losing nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from marketstream.settings import Settings
from sinks.layout import batch_object_name, object_key, parse_batch_object_name
from sinks.object_store import ObjectStore

log = logging.getLogger(__name__)

MAX_REMEMBERED_PREFIXES = 100_000


@dataclass(frozen=True)
class Batch:
    """Rows bound for one object: one hive partition (`prefix`), one Kafka partition."""

    prefix: str
    kafka_partition: int
    table: pa.Table


def encode_parquet(table: pa.Table, compression: str) -> tuple[bytes, int, int]:
    """Rows (any order) -> Parquet bytes sorted by Kafka offset, with the first and last offset."""
    table = table.sort_by("kafka_offset")
    offsets = table.column("kafka_offset")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue().to_pybytes(), offsets[0].as_py(), offsets[-1].as_py()


class _ParquetPartition(StatelessSinkPartition[Batch]):
    def __init__(self, store: ObjectStore, bucket: str, topic: str, compression: str):
        self._store = store
        self._bucket = bucket
        self._topic = topic
        self._compression = compression
        self._high_water: dict[tuple[str, int], int] = {}

    def _stored_up_to(self, prefix: str, kafka_partition: int) -> int:
        """The highest offset of `kafka_partition` already stored under `prefix` (-1 if none)."""
        key = (prefix, kafka_partition)
        if key not in self._high_water:
            if len(self._high_water) >= MAX_REMEMBERED_PREFIXES:
                del self._high_water[next(iter(self._high_water))]  # forget the oldest; it is re-listed if needed
            mark = -1
            for name in self._store.list_names(self._bucket, prefix):
                stored = parse_batch_object_name(name)
                if stored and stored.topic == self._topic and stored.kafka_partition == kafka_partition:
                    mark = max(mark, stored.last_offset)
            self._high_water[key] = mark
        return self._high_water[key]

    def write_batch(self, items: list[Batch]) -> None:
        for batch in items:
            mark = self._stored_up_to(batch.prefix, batch.kafka_partition)
            table = batch.table
            if mark >= 0:
                table = table.filter(pc.greater(table.column("kafka_offset"), mark))
                if table.num_rows < batch.table.num_rows:
                    log.info("s3://%s/%s: %d replayed rows of Kafka partition %d already stored, not written again",
                             self._bucket, batch.prefix, batch.table.num_rows - table.num_rows, batch.kafka_partition)
            if not table.num_rows:
                continue
            data, first, last = encode_parquet(table, self._compression)
            key = object_key(batch.prefix, batch_object_name(self._topic, batch.kafka_partition, first, last))
            self._store.put(self._bucket, key, data)
            self._high_water[(batch.prefix, batch.kafka_partition)] = last
            log.debug("wrote s3://%s/%s (%d rows)", self._bucket, key, table.num_rows)

    def close(self) -> None:
        pass


class ParquetSink(DynamicSink[Batch]):
    """Writes `Batch` items as Parquet objects under `bucket`; creates the bucket if it is missing."""

    def __init__(self, settings: Settings, *, bucket: str, topic: str):
        self._settings = settings
        self._bucket = bucket
        self._topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ParquetPartition:
        store = ObjectStore(self._settings)
        store.ensure_bucket(self._bucket)
        return _ParquetPartition(store, self._bucket, self._topic, self._settings.parquet_compression)
