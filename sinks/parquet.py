"""The plain Parquet lake sink (`LAKE_FORMAT=parquet`; the default lake is Delta tables, `sinks.delta`): writes
each batch of one dataset partition as one Parquet object, with no table log.

Delivery guarantee: exactly-once in the lake, for input that is delivered at least once. A batch holds
rows of one hive partition (`prefix`) read from one Kafka partition, and its object name records the
topic's incarnation (its Kafka topic id), the Kafka partition and the first and last offsets it holds
(`sinks.layout.batch_object_name`). An object holds every row of its prefix and Kafka partition whose
offset lies in its range that was not already stored by another object, so a row is stored exactly when
some stored object's range covers its offset. The sink learns those ranges from the object names, for a
small bucket (up to `FULL_LISTING_MAX_OBJECTS` objects) with one listing when it starts, otherwise by
listing each prefix once before its first write to it (many at a time, concurrently), and drops replayed
rows that a range covers. Ranges, not the highest offset stored: the objects of one prefix upload
concurrently and may complete out of order, so after a crash a later object can be stored while an
earlier one is not; its rows are written again. Re-reading a topic after a crash, a restart without
recovery, or with another worker count therefore adds no duplicates and loses nothing, whatever the batch
boundaries were. Objects of another incarnation of the topic (deleted and created again) cover nothing;
objects named before incarnations were recorded count for the incarnation the topic has now. Within one
run each (prefix, Kafka partition) has one writer and its rows arrive once, in order. Objects are written
with a single PUT, so readers never see a partial file. Encoding and uploads run in the background;
every snapshot waits for the uploads in flight, so recovery never moves past rows that are not stored.
While the store is down uploads are retried (`ObjectStore.put_many`) and, once the queue of pending
uploads is full, the dataflow waits, losing nothing.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from marketstream.memory import release_free_memory
from sinks.files import FileRows, encode_parquet, offset_range
from sinks.layout import batch_object_name, object_key, parse_batch_object_name
from sinks.object_store import ObjectStore
from sinks.pending import PendingWrites

log = logging.getLogger(__name__)

MAX_REMEMBERED_PREFIXES = 100_000
FULL_LISTING_MAX_OBJECTS = 10_000
MAX_PENDING_UPLOADS = 8  # per sink partition; 8 instead of 4: ~+6 % rows/s in the benchmark, same peak RSS


class StoredRanges:
    """The offsets of one (prefix, Kafka partition) already stored: the union of the ranges of the objects
    stored before this run, plus the one range this run has written (its rows arrive in order, once)."""

    def __init__(self, ranges: list[tuple[int, int]] = ()):
        merged: list[list[int]] = []
        for first, last in sorted(ranges):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self._firsts = np.array([first for first, _ in merged], dtype=np.int64)
        self._lasts = np.array([last for _, last in merged], dtype=np.int64)
        self._written: tuple[int, int] | None = None

    def covered(self, offsets: np.ndarray) -> np.ndarray:
        """Per offset, whether a stored range holds it."""
        mask = np.zeros(len(offsets), dtype=bool)
        if len(self._firsts):
            at = np.searchsorted(self._firsts, offsets, side="right") - 1
            mask = (at >= 0) & (offsets <= self._lasts[np.maximum(at, 0)])
        if self._written is not None:
            mask |= (offsets >= self._written[0]) & (offsets <= self._written[1])
        return mask

    def add_written(self, first: int, last: int) -> None:
        """Rows from `first` to `last` were handed to the store in this run (and every row between them
        was either among them or already covered)."""
        self._written = (first if self._written is None else min(self._written[0], first),
                         last if self._written is None else max(self._written[1], last))

    def __bool__(self) -> bool:
        return bool(len(self._firsts)) or self._written is not None


class _ParquetPartition(StatefulSinkPartition[FileRows, None]):
    def __init__(self, store: ObjectStore, bucket: str, topic: str, incarnation: str, compression: str,
                 dictionary_columns: list[str] | bool):
        self._store = store
        self._bucket = bucket
        self._topic = topic
        self._incarnation = incarnation
        self._compression = compression
        self._dictionary_columns = dictionary_columns
        self._stored: dict[tuple[str, int], StoredRanges] = {}
        # the ranges of every (prefix, Kafka partition) stored before this run, if the bucket was small
        # enough to list whole; then no prefix needs a listing of its own
        self._stored_before = self._learn_all_ranges()
        self._uploads = ThreadPoolExecutor(max_workers=MAX_PENDING_UPLOADS, thread_name_prefix="parquet-upload")
        self._pending = PendingWrites(MAX_PENDING_UPLOADS)

    def _ranges(self, keys: list[str]) -> dict[tuple[str, int], list[tuple[int, int]]]:
        """The stored offset ranges of each (prefix, Kafka partition) among the object `keys` of this
        topic's incarnation."""
        ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for key in keys:
            prefix, _, name = key.rpartition("/")
            stored = parse_batch_object_name(name, self._topic)
            if stored and stored.incarnation in (self._incarnation, None):
                ranges.setdefault((prefix, stored.kafka_partition), []).append((stored.first_offset, stored.last_offset))
        return ranges

    def _learn_all_ranges(self) -> dict[tuple[str, int], list[tuple[int, int]]] | None:
        keys = self._store.list_all_keys(self._bucket, FULL_LISTING_MAX_OBJECTS)
        return None if keys is None else self._ranges(keys)

    def _learn_ranges(self, keys: set[tuple[str, int]]) -> None:
        """Remember the stored ranges of the `keys` not seen yet, listing their prefixes (concurrently)
        unless the whole bucket was listed at start."""
        unknown = {key for key in keys if key not in self._stored}
        if not unknown:
            return
        excess = len(self._stored) + len(unknown) - MAX_REMEMBERED_PREFIXES
        if excess > 0:  # forget the oldest ranges not needed now; they are learned again if needed later
            for old in [k for k in self._stored if k not in keys][:excess]:
                del self._stored[old]
        if self._stored_before is not None:
            for key in unknown:
                self._stored[key] = StoredRanges(self._stored_before.get(key, []))
            return
        listed = self._store.list_names(self._bucket, sorted({prefix for prefix, _ in unknown}))
        ranges = self._ranges([f"{prefix}/{name}" for prefix, names in listed.items() for name in names])
        for key in unknown:
            self._stored[key] = StoredRanges(ranges.get(key, []))

    def write_batch(self, items: list[FileRows]) -> None:
        tables: dict[str, pa.Table] = {}
        self._learn_ranges({(batch.prefix, batch.kafka_partition) for batch in items})
        for batch in items:
            stored = self._stored[(batch.prefix, batch.kafka_partition)]
            table = batch.table
            if stored:
                covered = stored.covered(table.column("kafka_offset").to_numpy())
                if covered.any():
                    table = table.filter(pa.array(~covered))
                    log.info("s3://%s/%s: %d replayed rows of Kafka partition %d already stored, not written again",
                             self._bucket, batch.prefix, batch.table.num_rows - table.num_rows, batch.kafka_partition)
            if not table.num_rows:
                continue
            first, last = offset_range(table)
            name = batch_object_name(self._topic, self._incarnation, batch.kafka_partition, first, last)
            tables[object_key(batch.prefix, name)] = table
            # the upload below is retried until it succeeds, or the process dies and resumes from the last
            # snapshot, which waited for it
            stored.add_written(first, last)
        if tables:
            self._pending.make_room()
            self._pending.add(self._uploads.submit(self._encode_and_put, tables))

    def _encode_and_put(self, tables: dict[str, pa.Table]) -> None:
        # on an upload thread: Parquet encoding releases the GIL, so it overlaps with decoding
        release_free_memory()  # the rows and files of the writes done so far are the largest blocks freed
        objects = {key: encode_parquet(table, self._compression, self._dictionary_columns) for key, table in tables.items()}
        self._store.put_many(self._bucket, objects)

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every upload must be done."""
        self._pending.wait_all()

    def close(self) -> None:
        self._pending.wait_all()
        self._uploads.shutdown()


class ParquetSink(FixedPartitionedSink[FileRows, None]):
    """Writes `(key, FileRows)` items as Parquet objects under `bucket`; creates the bucket if missing.
    `dictionary_columns`: the Parquet column paths to dictionary-encode (True: all, Arrow's default).

    Encoding and uploading run in the background, at most `MAX_PENDING_UPLOADS` writes at a time per
    partition, so they overlap with reading and decoding; each partition waits for its uploads at every snapshot, so
    recovery never records input as done whose rows are not stored."""

    def __init__(self, *, bucket: str, topic: str, topic_incarnation: Callable[[], str],
                 store: Callable[[], ObjectStore], compression: str, partitions: int = 4,
                 dictionary_columns: list[str] | bool = True):
        self._store = store
        self._compression = compression
        self._bucket = bucket
        self._topic = topic
        self._topic_incarnation = topic_incarnation
        self._incarnation: str | None = None
        self._dictionary_columns = dictionary_columns
        self._partitions = partitions

    def list_parts(self) -> list[str]:
        # called once per worker at start-up: create the bucket now, so refused credentials stop the flow
        # at once rather than at its first write
        self._store().ensure_bucket(self._bucket)
        self._incarnation = self._topic_incarnation()
        return [str(i) for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ParquetPartition:
        if self._incarnation is None:
            self._incarnation = self._topic_incarnation()
        return _ParquetPartition(self._store(), self._bucket, self._topic, self._incarnation, self._compression,
                                 self._dictionary_columns)
