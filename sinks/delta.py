"""The Delta Lake sink: each flush of a Kafka partition becomes Parquet files committed to a Delta table.

Delivery guarantee: exactly-once in the table, for input that is delivered at least once. Each flush is
cut into files (`sinks.files.FileLayout`: one per destination) on an upload thread, and the files are
encoded and uploaded first (concurrently, `MAX_PENDING_WRITES` writes in flight); then one Delta commit
adds them together with a transaction identifier per Kafka partition it covers (`txn`: app id naming the
dataset, topic, topic incarnation and partition; version = the last offset of that partition the commit
stores). The commit is atomic: a reader sees all of its files or none, and a file uploaded but never
committed is invisible (vacuum removes it). Commits of one sink partition are made by one thread in the
order their writes arrived, and each Kafka partition is written by one sink partition, so a Kafka
partition's commits follow its offsets. A process's sink partitions writing to one table at the same time
share one commit (`DeltaCommitter.commit_together`): the table takes one commit per round, not one per Kafka
partition (datasets with a natural key excepted: their commits are made one by one). When a sink starts it
reads each table's transaction versions (from the log's last checkpoint and the commits after it) and drops
replayed rows at or below them: a crash, a restart with or without recovery, or another worker count
never stores a row twice, and a row is never counted as stored before its commit. A topic deleted and
created again is a new incarnation, with app ids of its own. Rows kept apart under a prefix (synthetic
trades under `_synthetic/`) form a table of their own in that folder of the bucket.

Any number of writers (workers, processes, hosts, independent deployments) store each row once: every
commit is prepared against the table as last loaded and leaves out the rows at or below their Kafka
partition's committed version there, whoever committed them (a file holding some of them is encoded and
uploaded again without them), and a commit that another writer's commit of the same partition beat is
refused by delta-rs and prepared again on the newer table (`sinks.delta_commits`). What such a commit finds
committed also moves this writer's early filter on, so it stops uploading rows the other stored. Commits
land through the object store's conditional writes (`If-None-Match`), which MinIO and S3 honour. While the
store is down a commit is retried with capped backoff and prepared again each time, so an attempt that
landed although its answer was lost finds its rows committed; every snapshot waits for the commits in
flight, so recovery never moves past rows that are not committed. Each file's log entry carries full
statistics (`sinks.delta_stats`), so readers' filters skip exactly the files that cannot match.

A dataset with a natural key (news, macro, Bluesky: records of at-least-once producers, which publish a
record again after a crash) is stored exactly once per key as well: each commit also leaves out the rows
whose key their partition holds, whoever stored it, or that repeat a key earlier in the commit
(`sinks.stored_keys`); they are counted (`marketstream_skipped_rows_total{reason="republished"}`) and
logged, and their offsets still move the transaction versions on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake.transaction import AddAction

from marketstream import metrics
from marketstream.memory import release_free_memory
from sinks.delta_commits import Commit, CommittedOffsets, DeltaCommitter, TableView, app_id_prefix
from sinks.delta_stats import files_stats
from sinks.files import FileLayout, FileRows, by_prefix, encode_parquet, offset_range
from sinks.layout import object_key
from sinks.object_store import ObjectStore
from sinks.pending import PendingWrites
from sinks.stored_keys import KeyCheck, StoredKeys

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 8
"""Writes in flight per sink partition (encoding, uploading, waiting for their commit)."""


@dataclass(frozen=True)
class Flush:
    """Every row one flush of one Kafka partition stores, not yet cut into files: the sink cuts them by
    `layout` on one of its upload threads, off the worker's."""

    kafka_partition: int
    rows: pa.Table
    layout: FileLayout

    def files(self) -> list[FileRows]:
        """The flush's rows, one `FileRows` per file."""
        return self.layout.files(self.kafka_partition, self.rows)


def split_prefix(prefix: str) -> tuple[str, str]:
    """`_synthetic/ticker=A/date=…` -> (`_synthetic`, `ticker=A/date=…`): the table folder a batch belongs to
    (empty for the bucket's own table) and its partition path inside that table."""
    first, _, rest = prefix.partition("/")
    if first.startswith("_") and "=" not in first:
        return first, rest
    return "", prefix


def partition_value(value: object) -> str | None:
    """A partition value as the Delta log writes it."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


@dataclass
class _FileToAdd:
    key: str
    """The object's key in the bucket."""
    path: str
    """Its path relative to the table, as the Delta log records it."""
    partition: tuple[tuple[str, object], ...]
    """The hive partition's values, as the rows hold them."""
    rows: pa.Table
    first_offset: int
    last_offset: int
    kafka_partition: int = -1

    @property
    def partition_values(self) -> dict[str, str | None]:
        """The hive partition's values as the Delta log writes them."""
        return {name: partition_value(value) for name, value in self.partition}


@dataclass
class _Uncut:
    """Rows of one flush bound for one table, to be cut into files."""

    kafka_partition: int
    layout: FileLayout
    rows: pa.Table


@dataclass
class _Pending:
    """The rows of one `write_batch` for one table and the versions their commit records; `uploaded` (per
    key the encoded size and statistics) completes once they are cut into `files` and all are uploaded."""

    table: DeltaCommitter
    table_name: str
    uncut: list[_Uncut]
    versions: dict[str, int]
    files: list[_FileToAdd] = field(default_factory=list)
    uploaded: Future | None = None
    keys: KeyCheck | None = None
    """The natural-key check of the last attempt to commit these files, if the dataset has a natural key."""
    republished: int = 0
    """Rows the last attempt left out because their natural key is stored."""


def add_action(file: _FileToAdd, size: int, stats: str) -> AddAction:
    """The log entry of an uploaded file: its path, size, partition values and statistics
    (`sinks.delta_stats.file_stats`)."""
    return AddAction(file.path, size, file.partition_values, int(time.time() * 1000), True, stats)


class _DeltaPartition(StatefulSinkPartition[Flush, None]):
    """Per write: drop rows already stored (`CommittedOffsets`), then for each table one background task
    cuts the rows into files, encodes and uploads them, and the partition's one committer thread commits
    them in the order the writes arrived, each commit fenced by the table's transaction versions
    (`_fenced`)."""

    def __init__(self, store: ObjectStore, bucket: str, committed: CommittedOffsets, name_prefix: str,
                 table: Callable[[str], DeltaCommitter], compression: str, dictionary_columns: list[str] | bool,
                 dataset: str = "", stored_keys: Callable[[str], StoredKeys | None] = lambda table: None,
                 cutting: threading.Lock | None = None):
        self._store = store
        self._cutting = cutting or threading.Lock()
        self._dataset = dataset
        self._stored_keys = stored_keys
        self._bucket = bucket
        self._committed = committed
        self._name_prefix = name_prefix
        self._table = table
        self._compression = compression
        self._dictionary_columns = dictionary_columns
        self._uploads = ThreadPoolExecutor(max_workers=MAX_PENDING_WRITES, thread_name_prefix="delta-upload")
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-commit")
        self._pending = PendingWrites(MAX_PENDING_WRITES)

    def _file(self, table_name: str, path: str, partition: tuple[tuple[str, object], ...], kafka_partition: int,
              rows: pa.Table, variant: str = "") -> _FileToAdd:
        first, last = offset_range(rows)
        name = f"{self._name_prefix}-p{kafka_partition:04d}-{first:020d}-{last:020d}{variant}.parquet"
        relative = object_key(path, name)
        return _FileToAdd(object_key(table_name, relative), relative, partition, rows, first, last, kafka_partition)

    def write_batch(self, items: list[Flush]) -> None:
        pending: dict[str, _Pending] = {}
        for flush in items:
            app_id = self._committed.app_id(flush.kafka_partition)
            for prefix, given in by_prefix(flush.rows):
                table_name, _ = split_prefix(prefix)
                rows = self._committed.not_stored(table_name, flush.kafka_partition, given)
                if rows.num_rows < given.num_rows:
                    log.info("s3://%s: %d replayed rows of Kafka partition %d already committed, not written again",
                             object_key(self._bucket, prefix), given.num_rows - rows.num_rows, flush.kafka_partition)
                if not rows.num_rows:
                    continue
                entry = pending.setdefault(table_name, _Pending(self._table(table_name), table_name, [], {}))
                entry.uncut.append(_Uncut(flush.kafka_partition, flush.layout, rows))
                entry.versions[app_id] = max(entry.versions.get(app_id, -1), offset_range(rows)[1])
            for table_name, entry in pending.items():
                if app_id in entry.versions:
                    self._committed.handed_over(table_name, flush.kafka_partition, entry.versions[app_id])
        if pending:
            self._pending.make_room()
            for entry in pending.values():
                entry.uploaded = self._uploads.submit(self._cut_encode_and_put, entry)
            self._pending.add(self._committer.submit(self._commit_all, list(pending.values())))

    def _cut_encode_and_put(self, entry: _Pending) -> dict[str, tuple[int, str]]:
        # on an upload thread: sorting a flush by destination and cutting it took a seventh of the worker's
        # time. One flush at a time per sink: cut at once, the copies of a batch of flushes (several
        # Kafka partitions' at the end of input) would all be held at the peak
        with self._cutting:
            entry.uncut.reverse()
            while entry.uncut:  # each flush let go once cut, or every flush would be held twice at the peak
                release_free_memory(before_copy=True)
                entry.files.extend(self._cut(entry.uncut.pop()))
        return self._encode_and_put(entry.files, entry.table.stats_columns)

    def _cut(self, uncut: _Uncut) -> list[_FileToAdd]:
        files = []
        for file in uncut.layout.files(uncut.kafka_partition, uncut.rows):
            table_name, path = split_prefix(file.prefix)
            files.append(self._file(table_name, path, file.partition_values, uncut.kafka_partition, file.table))
        return files

    def _encode_and_put(self, files: list[_FileToAdd], stats_columns: list[str]) -> dict[str, tuple[int, str]]:
        # on an upload thread: Parquet encoding releases the GIL, so it overlaps with decoding; one
        # concurrent put of all files of a write costs the event loop far less than one put per file
        release_free_memory()  # the rows and files of the writes done so far are the largest blocks freed
        objects = {file.key: encode_parquet(file.rows, self._compression, self._dictionary_columns) for file in files}
        stats = dict(zip((file.key for file in files), files_stats([file.rows for file in files], stats_columns)))
        with metrics.UPLOAD_SECONDS.time():
            self._store.put_many(self._bucket, objects)
        return {key: (len(data), stats[key]) for key, data in objects.items()}

    def _fenced(self, entry: _Pending, uploaded: dict[str, tuple[int, str]], table: TableView) -> Commit | None:
        """The commit of `entry` against `table` as it is: rows at or below their Kafka partition's version
        in the table (this writer's earlier commit, or another writer's) are left out, and so are rows
        whose natural key the table holds (`sinks.stored_keys`: records published twice) — a file holding
        some of them is written again without them — and each partition's version is that of its last
        offset handled."""
        adds, versions, dropped, republished = [], {}, 0, 0
        through = {}
        keys = self._stored_keys(entry.table_name)
        entry.keys = keys.check(table) if keys is not None else None
        for file in entry.files:
            if file.kafka_partition not in through:
                through[file.kafka_partition] = max(table.version(app) for app in self._committed.app_ids(file.kafka_partition))
                self._committed.handed_over(entry.table_name, file.kafka_partition, through[file.kafka_partition])
            stored = through[file.kafka_partition]
            if file.last_offset <= stored:
                dropped += file.rows.num_rows
                continue
            rows, variant = file.rows, ""
            if file.first_offset <= stored:
                rows = rows.filter(pc.greater(rows.column("kafka_offset"), stored))
                dropped += file.rows.num_rows - rows.num_rows
            if entry.keys is not None:
                new = entry.keys.new_rows(file.partition, rows)
                republished += rows.num_rows - new.num_rows
                rows, variant = new, (f"-n{new.num_rows}" if new.num_rows < rows.num_rows else "")
            app_id = self._committed.app_id(file.kafka_partition)
            versions[app_id] = max(versions.get(app_id, -1), file.last_offset)
            if not rows.num_rows:
                continue
            if rows.num_rows < file.rows.num_rows:
                folder = file.path.rpartition("/")[0]
                file = self._file(entry.table_name, folder, file.partition, file.kafka_partition, rows, variant)
                uploaded.update(self._encode_and_put([file], entry.table.stats_columns))
            if entry.keys is not None:
                entry.keys.adding(file.path, file.rows)
            adds.append(add_action(file, *uploaded[file.key]))
        if dropped:
            log.info("%s: %d rows another commit stored already left out of this one", entry.table.uri, dropped)
        if republished:
            log.info("%s: %d rows left out whose key (%s) the table holds already: records published again",
                     entry.table.uri, republished, ", ".join(keys.columns))
        entry.republished = republished
        return Commit(adds, versions) if versions else None

    def _commit_all(self, pending: list[_Pending]) -> None:
        for entry in pending:
            uploaded = entry.uploaded.result()
            # a natural key is checked against the table as each commit finds it, so such writes commit one
            # after the other; the rest join whatever the process's other sink partitions commit meanwhile
            commit = entry.table.commit if self._stored_keys(entry.table_name) is not None else entry.table.commit_together
            with metrics.COMMIT_SECONDS.labels(entry.table.uri).time():
                made = commit(lambda table: self._fenced(entry, uploaded, table))
            entry.files = []  # stored: free the rows
            if made is not None and entry.keys is not None:
                self._stored_keys(entry.table_name).committed(entry.keys, [add.path for add in made.adds])
                if entry.republished:
                    metrics.SKIPPED_ROWS.labels(self._dataset, "republished").inc(entry.republished)
            if made is not None:
                metrics.ROWS_COMMITTED.labels(entry.table.uri).inc(
                    sum(json.loads(add.stats)["numRecords"] for add in made.adds))
                metrics.FILES_COMMITTED.labels(entry.table.uri).inc(len(made.adds))

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every commit must be done."""
        self._pending.wait_all()

    def close(self) -> None:
        self._pending.wait_all()
        self._uploads.shutdown()
        self._committer.shutdown()


class DeltaLakeSink(FixedPartitionedSink[Flush, None]):
    """Writes `(key, Flush)` items, key = the Kafka partition, into the Delta table at `bucket` (and the
    tables of prefixes kept apart, such as `bucket/_synthetic`); creates bucket and tables if missing.

    `schema`: the file columns; `partitioning`: the partition columns, in path order; `former_datasets`:
    names the dataset had before, whose transaction ids in the table still count as committed;
    `natural_key`: file columns identifying a record within its partition — a row whose key the partition
    holds is not stored again (none: rows are identified by their Kafka offsets alone)."""

    def __init__(self, *, bucket: str, topic: str, dataset: str, schema: pa.Schema, partitioning: pa.Schema,
                 topic_incarnation: Callable[[], str], store: Callable[[], ObjectStore], storage_options: dict[str, str],
                 compression: str, partitions: int = 4, dictionary_columns: list[str] | bool = True,
                 former_datasets: tuple[str, ...] = (), natural_key: tuple[str, ...] = ()):
        self._bucket = bucket
        self._topic = topic
        self._datasets = [dataset, *former_datasets]
        self._table_schema = pa.schema([*partitioning, *schema])
        self._partition_by = list(partitioning.names)
        self._topic_incarnation = topic_incarnation
        self._store = store
        self._storage_options = storage_options
        self._compression = compression
        self._partitions = partitions
        self._dictionary_columns = dictionary_columns
        self._incarnation: str | None = None
        self._tables: dict[str, DeltaCommitter] = {}
        self._natural_key = natural_key
        self._keys: dict[str, StoredKeys] = {}
        self._lock = threading.Lock()
        self._cutting = threading.Lock()

    def _table(self, name: str) -> DeltaCommitter:
        """One committer per table folder and process: loading a table's log once is enough."""
        with self._lock:
            if name not in self._tables:
                uri = f"s3://{self._bucket}/{name}".rstrip("/")
                self._tables[name] = DeltaCommitter(uri, self._storage_options, self._table_schema, self._partition_by)
            return self._tables[name]

    def _stored_keys(self, name: str) -> StoredKeys | None:
        """What each partition of a table folder holds, shared by the process's writers (None: no natural key)."""
        if not self._natural_key:
            return None
        with self._lock:
            return self._keys.setdefault(name, StoredKeys(self._natural_key))

    def list_parts(self) -> list[str]:
        self._store().ensure_bucket(self._bucket)
        self._incarnation = self._topic_incarnation()
        self._table("")
        return [str(i) for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _DeltaPartition:
        if self._incarnation is None:
            self._incarnation = self._topic_incarnation()
        app_id_prefixes = [app_id_prefix(dataset, self._topic, self._incarnation) for dataset in self._datasets]
        committed = CommittedOffsets(app_id_prefixes, lambda table, app_id: self._table(table).committed_version(app_id))
        name_prefix = f"part-{self._topic}-i{self._incarnation}"
        return _DeltaPartition(self._store(), self._bucket, committed, name_prefix, self._table,
                               self._compression, self._dictionary_columns, self._datasets[0], self._stored_keys,
                               self._cutting)
