"""The Parquet lake sink: writes each batch of one dataset partition as one Parquet object.

Delivery guarantee: at-least-once, with idempotent rewrites. A batch holds rows of one hive partition
read from one Kafka partition, and its object name is fixed by that Kafka partition and the first and
last offsets it holds (`sinks.layout.batch_object_name`), so writing the same batch again after a
restart replaces the object rather than adding a duplicate. Objects are written with a single PUT, so
readers never see a partial file; while the store is down the write is retried (`ObjectStore.put`) and
the dataflow waits, losing nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from marketstream.settings import Settings
from sinks.layout import batch_object_name, object_key
from sinks.object_store import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Rows bound for one object: one hive partition (`prefix`), one Kafka partition."""

    prefix: str
    kafka_partition: int
    rows: list[dict]


def encode_parquet(rows: list[dict], schema: pa.Schema, compression: str) -> tuple[bytes, int, int]:
    """Rows (any order) -> Parquet bytes sorted by Kafka offset, with the first and last offset."""
    table = pa.Table.from_pylist(rows, schema=schema).sort_by("kafka_offset")
    offsets = table.column("kafka_offset")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue().to_pybytes(), offsets[0].as_py(), offsets[-1].as_py()


class _ParquetPartition(StatelessSinkPartition[Batch]):
    def __init__(self, store: ObjectStore, bucket: str, topic: str, schema: pa.Schema, compression: str):
        self._store = store
        self._bucket = bucket
        self._topic = topic
        self._schema = schema
        self._compression = compression

    def write_batch(self, items: list[Batch]) -> None:
        for batch in items:
            if not batch.rows:
                continue
            data, first, last = encode_parquet(batch.rows, self._schema, self._compression)
            key = object_key(batch.prefix, batch_object_name(self._topic, batch.kafka_partition, first, last))
            self._store.put(self._bucket, key, data)
            log.debug("wrote s3://%s/%s (%d rows)", self._bucket, key, len(batch.rows))

    def close(self) -> None:
        pass


class ParquetSink(DynamicSink[Batch]):
    """Writes `Batch` items as Parquet objects under `bucket`; creates the bucket if it is missing."""

    def __init__(self, settings: Settings, *, bucket: str, topic: str, schema: pa.Schema):
        self._settings = settings
        self._bucket = bucket
        self._topic = topic
        self._schema = schema

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ParquetPartition:
        store = ObjectStore(self._settings)
        store.ensure_bucket(self._bucket)
        return _ParquetPartition(store, self._bucket, self._topic, self._schema, self._settings.parquet_compression)
