"""Committing to a Delta table, and knowing what is committed.

Delivery guarantee: a commit is atomic (all its files and transaction ids, or none) and made once: while
the store is down it is retried with capped backoff, and before each retry the table is read again to
see whether the failed attempt landed after all (its answer lost), in which case it is not made again. A
commit that loses a race with another writer (delta-rs refuses it as a concurrent transaction) is retried
on the newer table; MinIO and S3 keep two writers from both landing the same version through conditional
writes (`If-None-Match`), so no lock service is needed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction

from marketstream import metrics

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30.0
T = TypeVar("T")
REFUSALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")


class DeltaLakeError(RuntimeError):
    """A failure retrying cannot cure (refused credentials)."""


class _LostRace(Exception):
    """Another writer's commit came first."""


def retrying(what: str, action: Callable[[], object], sleep: Callable[[float], None] = time.sleep) -> object:
    """`action()`, retried with capped exponential backoff until it succeeds; refused credentials raise
    `DeltaLakeError` at once."""
    delay, attempt = 0.5, 1
    while True:
        try:
            return action()
        except _LostRace:
            raise
        except Exception as exc:  # noqa: BLE001 - the store being down is retried; refusals are raised
            text = str(exc)
            if any(word in text for word in REFUSALS):
                raise DeltaLakeError(f"object store refused {what}: check S3_ACCESS_KEY / S3_SECRET_KEY") from None
            log.warning("delta: %s failed (attempt %d, %s: %s); retrying in %.1fs", what, attempt, type(exc).__name__,
                        text.splitlines()[0][:300] if text else "", delay)
            metrics.RETRIES.labels("delta").inc()
            sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
            attempt += 1


MAX_LOST_RACES = 20


def open_or_create(uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str]) -> DeltaTable:
    """The table at `uri`, created with `schema` and `partition_by` when there is none."""
    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return DeltaTable.create(uri, schema, mode="ignore", partition_by=partition_by, storage_options=storage_options)


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


class DeltaCommitter:
    """One Delta table as this process writes it: created if missing (with `schema`, partitioned by
    `partition_by`), loaded once (loading reads the last checkpoint, whose size grows with the table's
    files) and moved past each commit.

    delta-rs refuses a commit carrying transaction ids when another commit with transaction ids landed since
    the table was read, even for other app ids: the process's writers take turns (`commit` holds a lock), and
    only commits of other processes can race (and are retried)."""

    def __init__(self, uri: str, storage_options: dict[str, str], schema: pa.Schema, partition_by: list[str], *,
                 sleep: Callable[[float], None] = time.sleep):
        self.uri = uri
        self.schema = schema
        self.partition_by = partition_by
        self._storage_options = storage_options
        self._sleep = sleep
        self._lock = threading.Lock()

        self._current: DeltaTable | None = retrying(
            f"opening {uri}", lambda: open_or_create(uri, storage_options, schema, partition_by), sleep)
        """The table as this process's last commit left it (None: load it again); used under `_lock`."""

    def _load(self) -> DeltaTable:
        return retrying(f"loading {self.uri}", lambda: DeltaTable(self.uri, storage_options=self._storage_options),
                        self._sleep)

    def committed_version(self, app_id: str) -> int:
        """The last version committed for `app_id` (-1: none), as of this process's last commit or later,
        which is safe: a version in the log is committed, whoever wrote it."""
        with self._lock:
            if self._current is None:
                self._current = self._load()
            version = retrying(f"reading the committed offsets of {self.uri}",
                               lambda: self._current.transaction_version(app_id), self._sleep)
        return -1 if version is None else version

    def refresh(self) -> None:
        """Move past commits made through another table object of this process (a MERGE, say)."""
        with self._lock:
            try:
                if self._current is not None:
                    self._current.update_incremental()
            except Exception:  # noqa: BLE001 - loaded afresh before the next commit instead
                self._current = None

    def read(self, filters: list[tuple]) -> pa.Table:
        """The rows of the partitions `filters` selects (deltalake filters on partition columns), as this
        process's last commit left them."""
        with self._lock:
            if self._current is None:
                self._current = self._load()
            return retrying(f"reading {self.uri}", lambda: self._current.to_pyarrow_table(filters=filters), self._sleep)

    def commit(self, adds: list[AddAction], versions: dict[str, int], replacing: list[tuple] | None = None) -> None:
        """Add the files `adds` and set each app id of `versions` to its version, in one commit; with
        `replacing` (filters on partition columns), the files the partitions it selects held are removed
        by the same commit (the partitions' new content is among `adds`)."""
        properties = CommitProperties(app_transactions=[Transaction(app, version) for app, version in versions.items()])

        def attempt() -> None:
            if self._current is None:
                self._current = self._load()
            try:
                self._current.create_write_transaction(adds, mode="overwrite" if replacing else "append",
                                                       schema=self.schema, partition_by=self.partition_by,
                                                       partition_filters=replacing, commit_properties=properties)
            except Exception as exc:
                # the attempt may have landed although its answer was lost: never commit the same rows twice
                self._current = self._load()
                landed = {app: self._current.transaction_version(app) for app in versions}
                if all(landed[app] is not None and landed[app] >= version for app, version in versions.items()):
                    return
                if "Concurrent transaction" in str(exc):
                    raise _LostRace from None
                raise

        with self._lock:
            while True:
                try:
                    retrying(f"committing {len(adds)} files to {self.uri}", attempt, self._sleep)
                    break
                except _LostRace:  # another process committed first; the table is reloaded: try again
                    self._sleep(random.uniform(0.01, 0.1))
            # delta-rs does not move the table object past its own commit: without this, the next commit
            # would see this one as a concurrent transaction, fail, and load the whole table again
            try:
                self._current.update_incremental()
            except Exception:  # noqa: BLE001 - loaded afresh before the next commit instead
                self._current = None


def app_id_prefix(dataset: str, topic: str, incarnation: str) -> str:
    """The Delta transaction id of Kafka partition `p` of one topic incarnation, as a dataset's tables
    record it, is this prefix followed by `:p`."""
    return f"marketstream:{dataset}:{topic}:{incarnation}"


class CommittedOffsets:
    """What one writer knows is stored: per (table, Kafka partition) the last offset committed, read once
    through `committed_version(table, app_id)` under the app id of each of `app_id_prefixes` (the current
    one first, then former ones) and then moved forward by the writer itself: the rows of a run arrive once,
    in order, so what the writer hands to a commit counts as stored for the rest of the run (a crash before
    the commit replays it from the last snapshot, and this is learned again)."""

    def __init__(self, app_id_prefixes: list[str], committed_version: Callable[[str, str], int]):
        self._app_id_prefixes = app_id_prefixes
        self._committed_version = committed_version
        self._through: dict[tuple[str, int], int] = {}

    def app_id(self, kafka_partition: int) -> str:
        """The app id this writer commits under."""
        return f"{self._app_id_prefixes[0]}:{kafka_partition}"

    def through(self, table: str, kafka_partition: int) -> int:
        """The last offset of `kafka_partition` stored in `table` (-1: none)."""
        key = (table, kafka_partition)
        if key not in self._through:
            self._through[key] = max(self._committed_version(table, f"{prefix}:{kafka_partition}")
                                     for prefix in self._app_id_prefixes)
        return self._through[key]

    def not_stored(self, table: str, kafka_partition: int, rows: pa.Table) -> pa.Table:
        """The `rows` (with a `kafka_offset` column) not stored yet."""
        through = self.through(table, kafka_partition)
        if through < 0:
            return rows
        return rows.filter(pc.greater(rows.column("kafka_offset"), through))

    def handed_over(self, table: str, kafka_partition: int, last_offset: int) -> None:
        """Rows through `last_offset` are on their way into a commit."""
        key = (table, kafka_partition)
        self._through[key] = max(self._through.get(key, -1), last_offset)
