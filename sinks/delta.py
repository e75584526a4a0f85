"""The Delta Lake sink: each flush of a Kafka partition becomes Parquet files committed to a Delta table.

Delivery guarantee: exactly-once in the table, for input that is delivered at least once. Data files are
encoded and uploaded first (concurrently, `MAX_PENDING_UPLOADS` writes in flight); then one Delta commit
adds them together with a transaction identifier per Kafka partition it covers (`txn`: app id naming the
dataset, topic, topic incarnation and partition; version = the last offset of that partition the commit
stores). The commit is atomic: a reader sees all of its files or none, and a file uploaded but never
committed is invisible (vacuum removes it). Commits of one sink partition are made by one thread in the
order their writes arrived, and each Kafka partition is written by one sink partition, so a Kafka
partition's commits follow its offsets. When a sink starts it reads each table's transaction versions
(from the log's last checkpoint and the commits after it) and drops
replayed rows at or below them: a crash, a restart with or without recovery, or another worker count
never stores a row twice, and a row is never counted as stored before its commit. A topic deleted and
created again is a new incarnation, with app ids of its own. Rows kept apart under a prefix (synthetic
trades under `_synthetic/`) form a table of their own in that folder of the bucket.

Concurrent writers (workers, processes, hosts) commit safely through the object store's conditional
writes (`If-None-Match`), which MinIO and S3 honour; delta-rs retries a commit that lost a race. While
the store is down a commit is retried with capped backoff, after checking that the failed attempt did
not in fact land; every snapshot waits for the commits in flight, so recovery never moves past rows
that are not committed.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction

from marketstream.memory import release_free_memory
from sinks.layout import object_key
from sinks.object_store import ObjectStore
from sinks.parquet import MAX_PENDING_UPLOADS, Batch, encode_parquet, offset_range

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Flush:
    """Every row one flush of one Kafka partition stores, as one `Batch` per file."""

    kafka_partition: int
    batches: list[Batch]


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


class _LostRace(Exception):
    """Another writer's commit came first."""


class DeltaLakeError(RuntimeError):
    """A failure retrying cannot cure (refused credentials)."""


class _Table:
    """One Delta table of the bucket: created if missing, and the process's one committer. delta-rs
    refuses a commit carrying transaction ids when another commit with transaction ids landed since the
    table was read, even for other app ids: the process's sink partitions take turns, and only commits of
    other processes can race (and are retried). The table is loaded once per process (loading reads the
    last checkpoint, whose size grows with the table's files) and then moved past each commit."""

    def __init__(self, uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str]):
        self.uri = uri
        self.schema = schema
        self.partition_by = partition_by
        self._storage_options = storage_options

        def open_or_create() -> DeltaTable:
            try:
                return DeltaTable(uri, storage_options=storage_options)
            except TableNotFoundError:
                return DeltaTable.create(uri, schema, mode="ignore", partition_by=partition_by,
                                         storage_options=storage_options)

        self.commit_lock = threading.Lock()
        self.current: DeltaTable | None = _retrying(f"opening {uri}", open_or_create)
        """The table as the process's last commit left it (None: load it again); used under `commit_lock`."""

    def load(self) -> DeltaTable:
        """The table's newest version."""
        return _retrying(f"loading {self.uri}", lambda: DeltaTable(self.uri, storage_options=self._storage_options))

    def committed_version(self, app_id: str) -> int:
        """The last version committed for `app_id` (-1: none); as of this process's last commit or later,
        which is safe: a version in the log is committed, whoever wrote it."""
        with self.commit_lock:
            if self.current is None:
                self.current = self.load()
            version = _retrying(f"reading the committed offsets of {self.uri}",
                                lambda: self.current.transaction_version(app_id))
        return -1 if version is None else version


def _retrying(what: str, action: Callable[[], object], sleep: Callable[[float], None] = time.sleep) -> object:
    delay, attempt = 0.5, 1
    while True:
        try:
            return action()
        except _LostRace:
            raise
        except Exception as exc:  # noqa: BLE001 - the store being down is retried; refusals are raised
            text = str(exc)
            if any(word in text for word in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")):
                raise DeltaLakeError(f"object store refused {what}: check S3_ACCESS_KEY / S3_SECRET_KEY") from None
            log.warning("delta: %s failed (attempt %d, %s: %s); retrying in %.1fs", what, attempt, type(exc).__name__,
                        text.splitlines()[0][:300] if text else "", delay)
            sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            attempt += 1


@dataclass
class _FileToAdd:
    key: str
    """The object's key in the bucket."""
    path: str
    """Its path relative to the table, as the Delta log records it."""
    partition_values: dict[str, str | None]
    rows: pa.Table
    first_offset: int
    last_offset: int


@dataclass
class _Pending:
    """The files of one `write_batch` for one table and the versions their commit records; `sizes` (their
    encoded sizes by key) completes once all are uploaded."""

    table: _Table
    files: list[_FileToAdd]
    versions: dict[str, int]
    sizes: Future | None = None


class _DeltaPartition(StatefulSinkPartition[Flush, None]):
    def __init__(self, store: ObjectStore, bucket: str, app_id_prefixes: list[str], name_prefix: str,
                 table: Callable[[str], _Table], compression: str, dictionary_columns: list[str] | bool):
        self._store = store
        self._bucket = bucket
        self._app_id_prefix, *self._former_app_id_prefixes = app_id_prefixes
        self._name_prefix = name_prefix
        self._table = table
        self._compression = compression
        self._dictionary_columns = dictionary_columns
        self._committed: dict[tuple[str, int], int] = {}
        self._uploads = ThreadPoolExecutor(max_workers=MAX_PENDING_UPLOADS, thread_name_prefix="delta-upload")
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-commit")
        self._pending: deque[Future] = deque()

    def _app_id(self, kafka_partition: int) -> str:
        return f"{self._app_id_prefix}:{kafka_partition}"

    def _stored_through(self, table_name: str, kafka_partition: int) -> int:
        key = (table_name, kafka_partition)
        if key not in self._committed:
            table = self._table(table_name)
            self._committed[key] = max(table.committed_version(f"{prefix}:{kafka_partition}")
                                       for prefix in (self._app_id_prefix, *self._former_app_id_prefixes))
        return self._committed[key]

    def write_batch(self, items: list[Flush]) -> None:
        pending: dict[str, _Pending] = {}
        for flush in items:
            # one check per flush: its files hold interleaved offsets of one Kafka partition
            stored_through = {name: self._stored_through(name, flush.kafka_partition)
                              for name in {split_prefix(batch.prefix)[0] for batch in flush.batches}}
            for batch in flush.batches:
                table_name, path = split_prefix(batch.prefix)
                stored = stored_through[table_name]
                rows = batch.table
                if stored >= 0:
                    rows = rows.filter(pc.greater(rows.column("kafka_offset"), stored))
                    if rows.num_rows < batch.table.num_rows:
                        log.info("s3://%s/%s: %d replayed rows of Kafka partition %d already committed, not written "
                                 "again", self._bucket, batch.prefix, batch.table.num_rows - rows.num_rows,
                                 flush.kafka_partition)
                if not rows.num_rows:
                    continue
                first, last = offset_range(rows)
                name = f"{self._name_prefix}-p{flush.kafka_partition:04d}-{first:020d}-{last:020d}.parquet"
                relative = object_key(path, name)
                values = {field: partition_value(value) for field, value in batch.partition_values}
                entry = pending.setdefault(table_name, _Pending(self._table(table_name), [], {}))
                entry.files.append(_FileToAdd(object_key(table_name, relative), relative, values, rows, first, last))
                app_id = self._app_id(flush.kafka_partition)
                entry.versions[app_id] = max(entry.versions.get(app_id, -1), last)
            # rows of a run arrive once, in order: what is handed to the committer counts as stored for
            # the rest of the run (a crash before the commit replays it from the last snapshot)
            for table_name, entry in pending.items():
                version = entry.versions.get(self._app_id(flush.kafka_partition))
                if version is not None:
                    self._committed[(table_name, flush.kafka_partition)] = version
        if pending:
            while len(self._pending) >= MAX_PENDING_UPLOADS:
                self._pending.popleft().result()
            for entry in pending.values():
                entry.sizes = self._uploads.submit(self._encode_and_put, entry.files)
            self._pending.append(self._committer.submit(self._commit_all, list(pending.values())))

    def _encode_and_put(self, files: list[_FileToAdd]) -> dict[str, int]:
        # on an upload thread: Parquet encoding releases the GIL, so it overlaps with decoding; one
        # concurrent put of all files of a write costs the event loop far less than one put per file
        release_free_memory()  # the rows and files of the writes done so far are the largest blocks freed
        objects = {file.key: encode_parquet(file.rows, self._compression, self._dictionary_columns) for file in files}
        self._store.put_many(self._bucket, objects)
        return {key: len(data) for key, data in objects.items()}

    def _commit_all(self, pending: list[_Pending]) -> None:
        for entry in pending:
            sizes = entry.sizes.result()
            adds = []
            for file in entry.files:
                stats = {"numRecords": file.rows.num_rows, "minValues": {"kafka_offset": file.first_offset},
                         "maxValues": {"kafka_offset": file.last_offset}}
                adds.append(AddAction(file.path, sizes[file.key], file.partition_values, int(time.time() * 1000), True,
                                      json.dumps(stats)))
            entry.files = []  # the rows are stored: free them before the commit
            self._commit(entry.table, adds, entry.versions)

    def _commit(self, table: _Table, adds: list[AddAction], versions: dict[str, int]) -> None:
        properties = CommitProperties(app_transactions=[Transaction(app, version) for app, version in versions.items()])

        def attempt() -> None:
            if table.current is None:
                table.current = table.load()
            try:
                table.current.create_write_transaction(adds, mode="append", schema=table.schema,
                                                       partition_by=table.partition_by, commit_properties=properties)
            except Exception as exc:
                # the attempt may have landed although its answer was lost: never commit the same rows twice
                table.current = table.load()
                landed = {app: table.current.transaction_version(app) for app in versions}
                if all(landed[app] is not None and landed[app] >= version for app, version in versions.items()):
                    return
                if "Concurrent transaction" in str(exc):
                    raise _LostRace from None
                raise

        with table.commit_lock:
            while True:
                try:
                    _retrying(f"committing {len(adds)} files to {table.uri}", attempt)
                    break
                except _LostRace:  # another process committed first; the table is reloaded: try again
                    time.sleep(random.uniform(0.01, 0.1))
            # delta-rs does not move the table object past its own commit: without this, the next commit
            # would see this one as a concurrent transaction, fail, and load the whole table again
            try:
                table.current.update_incremental()
            except Exception:  # noqa: BLE001 - loaded afresh before the next commit instead
                table.current = None

    def _wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def snapshot(self) -> None:
        """Called at the end of every epoch, before its state is committed: every commit must be done."""
        self._wait()

    def close(self) -> None:
        self._wait()
        self._uploads.shutdown()
        self._committer.shutdown()


class DeltaLakeSink(FixedPartitionedSink[Flush, None]):
    """Writes `(key, Flush)` items, key = the Kafka partition, into the Delta table at `bucket` (and the
    tables of prefixes kept apart, such as `bucket/_synthetic`); creates bucket and tables if missing.

    `schema`: the file columns; `partitioning`: the partition columns, in path order; `former_datasets`:
    names the dataset had before, whose transaction ids in the table still count as committed."""

    def __init__(self, *, bucket: str, topic: str, dataset: str, schema: pa.Schema, partitioning: pa.Schema,
                 topic_incarnation: Callable[[], str], store: Callable[[], ObjectStore], storage_options: dict[str, str],
                 compression: str, partitions: int = 4, dictionary_columns: list[str] | bool = True,
                 former_datasets: tuple[str, ...] = ()):
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
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def _table(self, name: str) -> _Table:
        """One `_Table` per table folder and process: loading a table's log once is enough."""
        with self._lock:
            if name not in self._tables:
                uri = f"s3://{self._bucket}/{name}".rstrip("/")
                self._tables[name] = _Table(uri, self._storage_options, self._table_schema, self._partition_by)
            return self._tables[name]

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
        app_id_prefixes = [f"marketstream:{dataset}:{self._topic}:{self._incarnation}" for dataset in self._datasets]
        name_prefix = f"part-{self._topic}-i{self._incarnation}"
        return _DeltaPartition(self._store(), self._bucket, app_id_prefixes, name_prefix, self._table,
                               self._compression, self._dictionary_columns)
