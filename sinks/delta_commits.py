"""Committing to a Delta table, and knowing what is committed.

Delivery guarantee: a commit is atomic (all its files and transaction ids, or none) and made once, for any
number of writers in any number of processes. Each attempt is prepared against the table as last loaded
(`DeltaCommitter.commit(prepare)`): the writer drops there what the table already holds — for the lake
sinks, rows at or below their Kafka partition's committed transaction version, whoever committed it. When
an attempt fails, the table is loaded again and the commit prepared again: after a lost race (another
writer set the same transaction id first; delta-rs refuses the commit, and MinIO and S3 keep two writers
from both landing one version through conditional writes, `If-None-Match`, so no lock service is needed),
and after a failure of the store, with capped backoff — if that attempt landed although its answer was lost,
the new preparation finds its rows committed and commits nothing. A failing store is logged as one outage
(`marketstream.outages`, shared with the uploads): a line when it starts failing, one when it answers again.

Group commit: a process's writers of one table take turns, and those that only append
(`DeltaCommitter.commit_together`) and find the table busy are committed together by whichever of them
gets it next: one Delta commit holding every waiting writer's files and transaction versions, so a table
takes one commit per round however many writers feed it, instead of one per writer, each waiting for the one
before. The commit stays atomic for each writer, since it is atomic for all of them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction

from marketstream import metrics
from marketstream.outages import Backoff, retry
from sinks.delta_stats import indexed_columns

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30.0
T = TypeVar("T")
REFUSALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")


class DeltaLakeError(RuntimeError):
    """A failure retrying cannot cure (refused credentials)."""


def retrying(what: str, action: Callable[[], object], sleep: Callable[[float], None] = time.sleep) -> object:
    """`action()`, retried with capped exponential backoff until it succeeds; refused credentials raise
    `DeltaLakeError` at once."""
    return retry(f"delta: {what}", action, Backoff("object store", "delta", longest=RETRY_MAX_SECONDS, sleep=sleep),
                 lambda exc: _refused(f"object store refused {what}", exc))


def _refused(what: str, error: Exception) -> DeltaLakeError | None:
    """The error to end with when `error` is the store refusing the credentials; None: worth retrying."""
    if any(word in str(error) for word in REFUSALS):
        return DeltaLakeError(f"{what}: check S3_ACCESS_KEY / S3_SECRET_KEY")
    return None


MAX_LOST_RACES = 20

CHECKPOINT_INTERVAL = {"delta.checkpointInterval": "10"}
"""A checkpoint every 10 commits, Delta Lake's own default (delta-rs's is 100). Loading a table, and each
question about its transaction versions, read the last checkpoint and every commit after it: a consumer
commits about once a second, so with checkpoints 100 commits apart a restarted consumer read up to 100
files for each (6 Kafka partitions: 10 s before its first commit on the loaded chaos machine)."""


def open_or_create(uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str], *,
                   evolve_schema: bool = True) -> DeltaTable:
    """The table at `uri`, created with `schema` and `partition_by` (and `CHECKPOINT_INTERVAL`) when there is
    none, and given the columns of `schema` it lacks when it was created with an earlier one (`evolve`; not
    with `evolve_schema=False`, for a table whose upgrade needs more than new columns: the bars tables,
    `sinks.bars_table.upgrade`)."""
    try:
        table = DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return DeltaTable.create(uri, schema, mode="ignore", partition_by=partition_by, storage_options=storage_options,
                                 configuration=CHECKPOINT_INTERVAL)
    if evolve_schema and evolve(table, schema):
        table = DeltaTable(uri, storage_options=storage_options)
    return table


def evolve(table: DeltaTable, schema: pa.Schema) -> list[str]:
    """Delta schema evolution: add to `table` the columns of `schema` it lacks, in `schema`'s order, in one
    commit, and return their names. Rows written before read them as null. Only nullable columns can be added
    so; a missing column that is not nullable raises ValueError. Two writers evolving one table at once both
    succeed (delta-rs leaves a column already there as it is), so it is safe for every consumer to call it
    when it opens its table, before its first commit (a commit's files carrying columns the table's schema
    lacks would be invisible to every reader)."""
    present = set(table.schema().to_arrow().names)
    missing = [field for field in schema if field.name not in present]
    if not missing:
        return []
    required = [field.name for field in missing if not field.nullable]
    if required:
        raise ValueError(f"{table.table_uri} lacks columns that are not nullable, which schema evolution cannot "
                         f"add: {', '.join(required)}")
    table.alter.add_columns(DeltaSchema.from_arrow(pa.schema(missing)).fields)
    log.info("delta: %s: added the columns %s (rows written before read them as null)", table.table_uri,
             ", ".join(field.name for field in missing))
    return [field.name for field in missing]


def racing(what: str, attempt: Callable[[], T], *, again: Callable[[], None] = lambda: None,
           sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt()` (a MERGE, say) tried again, after `again()` (reload the table), each time another writer's
    commit came first (delta-rs's `CommitFailedError`), with growing pauses, at most `MAX_LOST_RACES` times."""
    for lost in range(MAX_LOST_RACES):
        try:
            return attempt()
        except CommitFailedError as exc:
            log.info("%s lost a race (%s); trying again", what, str(exc).splitlines()[0][:120])
            metrics.RETRIES.labels("delta").inc()
            sleep(min(0.1 * 2 ** lost, 5.0))
            again()
    raise RuntimeError(f"{what} lost {MAX_LOST_RACES} races in a row")


@dataclass(frozen=True)
class Commit:
    """What one Delta commit holds: files to add, transaction versions to set and, with `replacing`
    (filters on partition columns), the partitions whose files it removes (their new content is among
    `adds`); `info`: fields added to its `commitInfo` for readers of the log."""

    adds: list[AddAction]
    versions: dict[str, int]
    replacing: list[tuple] | None = None
    info: dict[str, str] | None = None


@dataclass(eq=False)
class _Waiting:
    """One `commit_together` call: its preparation and, once `done`, its part of the commit or its error."""

    prepare: Callable[["TableView"], Commit | None]
    done: bool = False
    result: Commit | None = None
    error: BaseException | None = None


def _appended_together(parts: list[Commit]) -> Commit | None:
    """One commit adding the files of all `parts` and setting each app id to the highest version they give it."""
    if not parts:
        return None
    if any(part.replacing is not None or part.info for part in parts):
        raise ValueError("only commits that append files and set versions can be made together")
    versions: dict[str, int] = {}
    for part in parts:
        for app, version in part.versions.items():
            versions[app] = max(versions.get(app, -1), version)
    return Commit([add for part in parts for add in part.adds], versions)


class TableView:
    """A Delta table as one commit attempt is prepared against it: the transaction versions it holds and the
    rows of its partitions, as of the snapshot the attempt is made on."""

    def __init__(self, table: DeltaTable, uri: str, sleep: Callable[[float], None], known: dict[str, int] | None = None):
        """`known`: transaction versions already read from this snapshot (each read goes through the table's
        log in the store), kept there as they are read."""
        self._table, self._uri, self._sleep = table, uri, sleep
        self._known = {} if known is None else known

    def version(self, app_id: str) -> int:
        """The last version committed for `app_id` (-1: none)."""
        if app_id not in self._known:
            found = retrying(f"reading the transaction versions of {self._uri}",
                             lambda: self._table.transaction_version(app_id), self._sleep)
            self._known[app_id] = -1 if found is None else found
        return self._known[app_id]

    def read(self, filters: list[tuple], columns: list[str] | None = None) -> pa.Table:
        """The rows of the partitions `filters` selects (deltalake filters on partition columns)."""
        return retrying(f"reading {self._uri}",
                        lambda: self._table.to_pyarrow_table(filters=filters, columns=columns), self._sleep)

    def files(self, filters: list[tuple]) -> list[str]:
        """The data files of the partitions `filters` selects, relative to the table."""
        prefix = self._table.table_uri.rstrip("/") + "/"
        return [uri.removeprefix(prefix) for uri in self._table.file_uris(partition_filters=filters)]

    @property
    def configuration(self) -> dict[str, str | None]:
        """The table's properties."""
        return self._table.metadata().configuration


class DeltaCommitter:
    """One Delta table as this process writes it: created if missing (with `schema`, partitioned by
    `partition_by`) or given the columns of `schema` it lacks (`evolve`), loaded once (loading reads the last checkpoint, whose size grows with the table's
    files) and moved past each commit.

    `commit(prepare)` is optimistic concurrency: `prepare` decides what to commit against the table as this
    process knows it (dropping what the table already holds), and whenever an attempt fails — another
    writer committed the same transaction id first, or the store failed and the attempt may or may not
    have landed — the table is loaded again and `prepare` asked again, so what it decides always rests on
    what is committed, whoever committed it. The process's own writers take turns (`commit` holds a lock);
    those that only append may commit together (`commit_together`).
    delta-rs refuses a commit when a commit it has not seen set one of the same transaction ids; commits
    under other ids it lays on top without asking."""

    def __init__(self, uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str], *,
                 sleep: Callable[[float], None] = time.sleep, evolve_schema: bool = True):
        self.uri = uri
        self.schema = schema
        self.partition_by = partition_by
        self._storage_options = storage_options
        self._sleep = sleep
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        """The `commit_together` calls waiting for the table (under `_queue_lock`)."""
        self._queue_lock = threading.Lock()
        self._warned_of_other_writers = False

        self._known: dict[str, int] = {}
        """Transaction versions of `_current` as it is now: read from it, or set by this process's commit, when
        that commit is the only one since (a version of the log never changes, and each read costs a pass
        through the log in the store)."""
        self._current: DeltaTable | None = retrying(
            f"opening {uri}", lambda: open_or_create(uri, storage_options, schema, partition_by, evolve_schema=evolve_schema), sleep)
        """The table as this process's last commit left it (None: load it again); used under `_lock`."""
        self.stats_columns = self._stats_columns(self._current)
        """The columns whose statistics each added file records (the table's properties say which)."""

    def _stats_columns(self, table: DeltaTable) -> list[str]:
        return indexed_columns(self.schema, self.partition_by, table.metadata().configuration)

    def _load(self) -> DeltaTable:
        table = retrying(f"loading {self.uri}", lambda: DeltaTable(self.uri, storage_options=self._storage_options),
                         self._sleep)
        self.stats_columns = self._stats_columns(table)
        return table

    def _view(self) -> TableView:
        if self._current is None:
            self._known = {}
            self._current = self._load()
        return TableView(self._current, self.uri, self._sleep, self._known)

    def committed_version(self, app_id: str) -> int:
        """The last version committed for `app_id` (-1: none), as of this process's last commit or later,
        which is safe: a version in the log is committed, whoever wrote it."""
        with self._lock:
            return self._view().version(app_id)

    def refresh(self) -> None:
        """Move past commits made through another table object of this process (a MERGE, say)."""
        with self._lock:
            try:
                if self._current is not None:
                    before = self._current.version()
                    self._current.update_incremental()
                    if self._current.version() != before:
                        self._known = {}
            except Exception:  # noqa: BLE001 - loaded afresh before the next commit instead
                self._current = None

    def read(self, filters: list[tuple], columns: list[str] | None = None) -> pa.Table:
        """The rows of the partitions `filters` selects (deltalake filters on partition columns), as this
        process's last commit left them."""
        with self._lock:
            return self._view().read(filters, columns)

    def commit(self, prepare: Callable[[TableView], Commit | None]) -> Commit | None:
        """Make the commit `prepare` decides on against the table (None: nothing to commit), once: asked again
        on the newer table after every failed attempt. Returns the commit made, if any."""
        with self._lock:
            return self._commit_holding_lock(prepare)

    def commit_together(self, prepare: Callable[[TableView], Commit | None]) -> Commit | None:
        """`commit(prepare)`, made in one Delta commit with every other `commit_together` of this process
        waiting for the table at the time (group commit): whichever waiting caller gets the table prepares
        them all against it and commits them as one; each caller gets back its own part. `prepare` must
        only append: set no `replacing` and no `info`."""
        waiting = _Waiting(prepare)
        with self._queue_lock:
            self._queue.append(waiting)
        with self._lock:
            if not waiting.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit_group(group)
        if waiting.error is not None:
            raise waiting.error
        return waiting.result

    def _commit_group(self, group: list[_Waiting]) -> None:
        parts: list[Commit | None] = []

        def prepare_all(table: TableView) -> Commit | None:
            parts[:] = [waiting.prepare(table) for waiting in group]
            return _appended_together([part for part in parts if part is not None])

        try:
            landed = self._commit_holding_lock(prepare_all)
            for waiting, part in zip(group, parts):
                waiting.result = part if landed is not None else None
        except BaseException as exc:  # every caller of the group learns it, as each would have alone
            for waiting in group:
                waiting.error = exc
        finally:
            for waiting in group:
                waiting.done = True

    def _commit_holding_lock(self, prepare: Callable[[TableView], Commit | None]) -> Commit | None:
        backoff = Backoff("object store", "delta", longest=RETRY_MAX_SECONDS, sleep=self._sleep)
        while True:
            prepared = prepare(self._view())
            if prepared is None:
                return None
            prepared_on = self._current.version()
            properties = CommitProperties(app_transactions=[Transaction(app, version)
                                                            for app, version in prepared.versions.items()],
                                          custom_metadata=prepared.info)
            try:
                self._current.create_write_transaction(
                    prepared.adds, mode="overwrite" if prepared.replacing else "append", schema=self.schema,
                    partition_by=self.partition_by, partition_filters=prepared.replacing,
                    commit_properties=properties)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the next attempt rests on the table as it is
                self._current = None
                refused = _refused(f"object store refused committing to {self.uri}", exc)
                if refused is not None:
                    raise refused from None
                if isinstance(exc, CommitFailedError):  # another writer's commit came first
                    self._another_writer(str(exc))
                    self._sleep(random.uniform(0.01, 0.1))
                    continue
                backoff.failed(f"delta: committing {len(prepared.adds)} files to {self.uri}", exc)
                continue
            backoff.answered()
            metrics.DELTA_COMMITS.labels(self.uri).inc()
            # delta-rs does not move the table object past its own commit: without this, the next commit
            # would see this one as a concurrent transaction, fail, and load the whole table again
            try:
                self._current.update_incremental()
            except Exception:  # noqa: BLE001 - loaded afresh before the next commit instead
                self._current = None
            else:
                if self._current.version() == prepared_on + 1:  # this commit alone: what it set is all that changed
                    self._known.update(prepared.versions)
                else:
                    self._known = {}
            return prepared

    def _another_writer(self, error: str) -> None:
        metrics.RETRIES.labels("delta_concurrent_writer").inc()
        if not self._warned_of_other_writers:
            self._warned_of_other_writers = True
            log.warning("delta: another writer committed to %s first (%s): another deployment of this consumer, "
                        "`lake_maintenance`, or an earlier attempt of this commit whose answer was lost; each commit "
                        "is prepared again without what is stored already", self.uri, error.splitlines()[0][:120])
        else:
            log.info("delta: %s: lost a race with another writer (%s); preparing the commit again", self.uri,
                     error.splitlines()[0][:120])

    def commit_files(self, adds: list[AddAction], versions: dict[str, int], replacing: list[tuple] | None = None) -> None:
        """Add the files `adds` and set each app id of `versions` to its version, in one commit, unless every
        one of those versions is committed already (an earlier attempt of this commit landed)."""
        if not versions:
            raise ValueError("a commit of files must set transaction versions: they tell whether it landed")

        def unless_landed(table: TableView) -> Commit | None:
            if all(table.version(app) >= version for app, version in versions.items()):
                return None
            return Commit(adds, versions, replacing)

        self.commit(unless_landed)


def app_id_prefix(dataset: str, topic: str, incarnation: str) -> str:
    """The Delta transaction id of Kafka partition `p` of one topic incarnation, as a dataset's tables
    record it, is this prefix followed by `:p`."""
    return f"marketstream:{dataset}:{topic}:{incarnation}"


class CommittedOffsets:
    """What one writer knows is stored: per (table, Kafka partition) the last offset committed, read once
    through `committed_version(table, app_id)` under the app id of each of `app_id_prefixes` (the current
    one first, then former ones) and then moved forward by the writer itself: the rows of a run arrive once,
    in order, so what the writer hands to a commit counts as stored for the rest of the run (a crash before
    the commit replays it from the last snapshot, and this is learned again), and so does what its commits
    find another writer committed (`handed_over` with that writer's version). This is the early filter that
    saves uploading rows twice; what a commit may add is decided against the table itself."""

    def __init__(self, app_id_prefixes: list[str], committed_version: Callable[[str, str], int]):
        self._app_id_prefixes = app_id_prefixes
        self._committed_version = committed_version
        self._through: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def app_id(self, kafka_partition: int) -> str:
        """The app id this writer commits under."""
        return f"{self._app_id_prefixes[0]}:{kafka_partition}"

    def app_ids(self, kafka_partition: int) -> list[str]:
        """Every app id a table may record this partition's offsets under: the current one, then former ones."""
        return [f"{prefix}:{kafka_partition}" for prefix in self._app_id_prefixes]

    def through(self, table: str, kafka_partition: int) -> int:
        """The last offset of `kafka_partition` stored in `table` (-1: none)."""
        key = (table, kafka_partition)
        if key not in self._through:
            found = max(self._committed_version(table, app_id) for app_id in self.app_ids(kafka_partition))
            with self._lock:
                self._through[key] = max(self._through.get(key, -1), found)
        return self._through[key]

    def not_stored(self, table: str, kafka_partition: int, rows: pa.Table) -> pa.Table:
        """The `rows` (with a `kafka_offset` column) not stored yet."""
        through = self.through(table, kafka_partition)
        offsets = rows.column("kafka_offset")
        if through < 0 or not len(offsets) or pc.min(offsets).as_py() > through:  # the usual case: nothing replayed, nothing copied
            return rows
        return rows.filter(pc.greater(offsets, through))

    def handed_over(self, table: str, kafka_partition: int, last_offset: int) -> None:
        """Rows through `last_offset` are on their way into a commit, or committed."""
        key = (table, kafka_partition)
        with self._lock:
            self._through[key] = max(self._through.get(key, -1), last_offset)
