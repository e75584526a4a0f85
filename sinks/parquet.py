"""The Parquet lake sink: writes each batch of one dataset partition as one Parquet object.

Delivery guarantee: exactly-once in the lake, for input that is delivered at least once. A batch holds
rows of one hive partition (`prefix`) read from one Kafka partition, and its object name records that
Kafka partition and the first and last offsets it holds (`sinks.layout.batch_object_name`). Rows of one
(prefix, Kafka partition) reach the sink in offset order, so the highest `last` offset among the objects
already stored under the prefix is a high-water mark: a row at or below it is already in the lake. The
sink learns the marks of a small bucket (up to `FULL_LISTING_MAX_OBJECTS` objects) with one listing when
it starts, and otherwise lists each prefix once before its first write to it (many at a time,
concurrently); it then drops replayed rows at or below the mark, so re-reading a topic after a crash, a
restart without recovery, or with another worker count adds no duplicates, whatever the batch boundaries
were. (Within one run each (prefix, Kafka partition) has one writer and its rows arrive once, in order,
so only what was stored before the run can be replayed.) Objects are written with a single PUT, so
readers never see a partial file. The objects of one `write_batch` are encoded and uploaded concurrently,
in the background; every snapshot waits for the uploads in flight, so recovery never moves past rows that are
not stored. While the store is down uploads are retried (`ObjectStore.put_many`) and, once the queue of
pending uploads is full, the dataflow waits, losing nothing.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from marketstream.memory import release_free_memory
from marketstream.settings import Settings
from sinks.layout import batch_object_name, object_key, parse_batch_object_name
from sinks.object_store import ObjectStore

log = logging.getLogger(__name__)

MAX_REMEMBERED_PREFIXES = 100_000
FULL_LISTING_MAX_OBJECTS = 10_000
MAX_PENDING_UPLOADS = 8  # per sink partition; 8 instead of 4: ~+6 % rows/s in the benchmark, same peak RSS


@dataclass(frozen=True)
class Batch:
    """Rows bound for one object: one hive partition (`prefix`), one Kafka partition."""

    prefix: str
    kafka_partition: int
    table: pa.Table


def offset_range(table: pa.Table) -> tuple[int, int]:
    """The first and last Kafka offset among `table`'s rows."""
    bounds = pc.min_max(table.column("kafka_offset"))
    return bounds["min"].as_py(), bounds["max"].as_py()


def encode_parquet(table: pa.Table, compression: str, dictionary_columns: list[str] | bool = True) -> bytes:
    """Rows (any order) -> Parquet bytes, sorted by Kafka offset."""
    sink = pa.BufferOutputStream()
    pq.write_table(table.sort_by("kafka_offset"), sink, compression=compression, use_dictionary=dictionary_columns)
    return sink.getvalue().to_pybytes()


class _ParquetPartition(StatefulSinkPartition[Batch, None]):
    def __init__(self, store: ObjectStore, bucket: str, topic: str, compression: str, dictionary_columns: list[str] | bool):
        self._store = store
        self._bucket = bucket
        self._topic = topic
        self._compression = compression
        self._dictionary_columns = dictionary_columns
        self._high_water: dict[tuple[str, int], int] = {}
        # the marks of every (prefix, Kafka partition) stored before this run, if the bucket was small
        # enough to list whole; then no prefix needs a listing of its own
        self._stored_before = self._learn_all_marks()
        self._uploads = ThreadPoolExecutor(max_workers=MAX_PENDING_UPLOADS, thread_name_prefix="parquet-upload")
        self._pending: deque[Future] = deque()

    def _marks(self, keys: list[str]) -> dict[tuple[str, int], int]:
        """The high-water mark of each (prefix, Kafka partition) among the object `keys` of this topic."""
        marks: dict[tuple[str, int], int] = {}
        for key in keys:
            prefix, _, name = key.rpartition("/")
            stored = parse_batch_object_name(name)
            if stored and stored.topic == self._topic:
                mark = (prefix, stored.kafka_partition)
                marks[mark] = max(marks.get(mark, -1), stored.last_offset)
        return marks

    def _learn_all_marks(self) -> dict[tuple[str, int], int] | None:
        keys = self._store.list_all_keys(self._bucket, FULL_LISTING_MAX_OBJECTS)
        return None if keys is None else self._marks(keys)

    def _learn_marks(self, keys: set[tuple[str, int]]) -> None:
        """Remember the stored offsets of the `keys` not seen yet, listing their prefixes (concurrently)
        unless the whole bucket was listed at start."""
        unknown = {key for key in keys if key not in self._high_water}
        if not unknown:
            return
        excess = len(self._high_water) + len(unknown) - MAX_REMEMBERED_PREFIXES
        if excess > 0:  # forget the oldest marks not needed now; they are learned again if needed later
            for old in [k for k in self._high_water if k not in keys][:excess]:
                del self._high_water[old]
        if self._stored_before is not None:
            for key in unknown:
                self._high_water[key] = self._stored_before.get(key, -1)
            return
        listed = self._store.list_names(self._bucket, sorted({prefix for prefix, _ in unknown}))
        marks = self._marks([f"{prefix}/{name}" for prefix, names in listed.items() for name in names])
        for key in unknown:
            self._high_water[key] = marks.get(key, -1)

    def write_batch(self, items: list[Batch]) -> None:
        tables: dict[str, pa.Table] = {}
        self._learn_marks({(batch.prefix, batch.kafka_partition) for batch in items})
        for batch in items:
            key = (batch.prefix, batch.kafka_partition)
            table = batch.table
            if self._high_water[key] >= 0:
                table = table.filter(pc.greater(table.column("kafka_offset"), self._high_water[key]))
                if table.num_rows < batch.table.num_rows:
                    log.info("s3://%s/%s: %d replayed rows of Kafka partition %d already stored, not written again",
                             self._bucket, batch.prefix, batch.table.num_rows - table.num_rows, batch.kafka_partition)
            if not table.num_rows:
                continue
            first, last = offset_range(table)
            tables[object_key(batch.prefix, batch_object_name(self._topic, batch.kafka_partition, first, last))] = table
            # the upload below is retried until it succeeds, or the process dies and resumes from the last
            # snapshot, which waited for it: the mark may move now
            self._high_water[key] = last
        if tables:
            while len(self._pending) >= MAX_PENDING_UPLOADS:
                self._pending.popleft().result()
            self._pending.append(self._uploads.submit(self._encode_and_put, tables))

    def _encode_and_put(self, tables: dict[str, pa.Table]) -> None:
        # on an upload thread: Parquet encoding releases the GIL, so it overlaps with decoding
        release_free_memory()  # the rows and files of the writes done so far are the largest blocks freed
        objects = {key: encode_parquet(table, self._compression, self._dictionary_columns) for key, table in tables.items()}
        self._store.put_many(self._bucket, objects)

    def _wait_for_uploads(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every upload must be done."""
        self._wait_for_uploads()

    def close(self) -> None:
        self._wait_for_uploads()
        self._uploads.shutdown()


class ParquetSink(FixedPartitionedSink[Batch, None]):
    """Writes `(key, Batch)` items as Parquet objects under `bucket`; creates the bucket if missing.
    `dictionary_columns`: the Parquet column paths to dictionary-encode (True: all, Arrow's default).

    Encoding and uploading run in the background, at most `MAX_PENDING_UPLOADS` writes at a time per
    partition, so they overlap with reading and decoding; each partition waits for its uploads at every snapshot, so
    recovery never records input as done whose rows are not stored."""

    def __init__(self, settings: Settings, *, bucket: str, topic: str, partitions: int = 4,
                 dictionary_columns: list[str] | bool = True):
        self._settings = settings
        self._bucket = bucket
        self._topic = topic
        self._dictionary_columns = dictionary_columns
        self._partitions = partitions
        self._store: ObjectStore | None = None

    def _shared_store(self) -> ObjectStore:
        """One client per process: each loads botocore's S3 model (tens of MB)."""
        if self._store is None:
            self._store = ObjectStore(self._settings)
        return self._store

    def list_parts(self) -> list[str]:
        # called once per worker at start-up: create the bucket now, so refused credentials stop the flow
        # at once rather than at its first write
        self._shared_store().ensure_bucket(self._bucket)
        return [str(i) for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ParquetPartition:
        return _ParquetPartition(self._shared_store(), self._bucket, self._topic, self._settings.parquet_compression,
                                 self._dictionary_columns)
