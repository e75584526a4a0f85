"""Keeping a Delta table of the lake fast to read: compaction, vacuum and checkpoints.

- **Compaction** rewrites the small files of closed partitions (a date at least `closed_after_days` days
  before today, a year that ended that long ago) into files of about `target_file_bytes`, one partition
  per commit. It commits with
  `dataChange=false`, so readers and streaming appends see the same rows before and after, and a commit
  is atomic: a reader sees the old files or the new ones, never both. A compaction that loses a race with
  a streaming commit is simply tried again on the next run; it never touches the open partitions that
  consumers are writing to.
- **Vacuum** deletes the files replaced more than `retention_hours` ago and the files no version refers to
  that are older than that (uploads of a crashed consumer that were never committed). The retention must
  outlast the longest reader and any upload waiting for its commit: at least one hour is enforced.
  Folders starting with `_` (`_delta_log`, `_synthetic`, `_dead_letters`) are not part of the table.
- **Tombstones.** A replaced file stays in the log as a tombstone for the table's
  `delta.deletedFileRetentionDuration`, and every reader loading the table reads them all from the
  checkpoint: a day of 10-second files for 50 tickers leaves 117 000 of them, which made loading the table
  20 times slower than the rows it reads. The retention is set on each table to `retention_hours`, so
  tombstones last exactly as long as the files they protect, for delta-rs, Spark and every other engine.
- **Checkpoints** keep the log short: loading a table reads its last checkpoint and the commits after it;
  log entries older than the table's log retention are removed. A table made before its writers asked for a
  checkpoint every 10 commits (`sinks.delta_commits.CHECKPOINT_INTERVAL`) is given that interval.
- **Statistics**: a file whose log entry lacks what data skipping needs (bounds or null counts of an indexed
  column: files written by versions before 2026-12) makes every reader's filter skip it, so its partition
  is written again first, with full statistics (`partitions_lacking_stats`).
- **Rewriters**: by default delta-rs's optimize rewrites files (`compact`; `z_order` on `kafka_offset` for a
  partition lacking statistics, which rewrites it even when it holds one file). A table whose own writer
  rewrites partitions (the bars tables) passes `rewrite`, which maintenance calls instead, for each partition
  to compact or repair: delta-rs's optimize commits are invisible to a concurrent partition rewrite, which
  would then leave both the optimized and its own files.

Delivery guarantee: none needed; maintenance adds, removes and rewrites files without changing a row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from sinks.delta_commits import CHECKPOINT_INTERVAL
from sinks.delta_stats import bounded_columns, indexed_columns

log = logging.getLogger(__name__)

MIN_RETENTION_HOURS = 1
TOMBSTONE_RETENTION = "delta.deletedFileRetentionDuration"


def tombstone_retention(hours: float) -> str:
    """`hours` as a Delta interval (`interval 21600 seconds`)."""
    return f"interval {round(hours * 3600)} seconds"


@dataclass(frozen=True)
class MaintenanceReport:
    uri: str
    version_before: int
    version_after: int
    files_before: int
    files_after: int
    files_compacted: int
    files_written: int
    files_vacuumed: int
    seconds: float
    files_repaired: int = 0
    """Files written again because their statistics were incomplete."""


def is_closed(partition: dict[str, object], today: date, closed_after_days: int) -> bool:
    """Whether no consumer writes to `partition` any more: its date is at least `closed_after_days` days
    before today, or its year ended that long ago. A table with neither column has no closed partition."""
    last_closed = today - timedelta(days=closed_after_days)
    if partition.get("date") is not None:
        return partition["date"] <= last_closed
    if partition.get("year") is not None:
        return int(partition["year"]) < last_closed.year
    return False


def partitions_to_compact(table: DeltaTable, today: date, closed_after_days: int) -> list[list[tuple[str, str, str]]]:
    """A filter for each closed partition holding more than one file, read from the table's file list."""
    partition_by = table.metadata().partition_columns
    if not partition_by:
        return []
    columns = [f"partition.{name}" for name in partition_by]
    files = pa.table(table.get_add_actions(flatten=True)).select(columns)
    counts = files.group_by(columns, use_threads=False).aggregate([([], "count_all")])
    filters = []
    for row in counts.to_pylist():
        values = {name: row[f"partition.{name}"] for name in partition_by}
        if row["count_all"] > 1 and is_closed(values, today, closed_after_days):
            filters.append([(name, "=", value.isoformat() if isinstance(value, date) else str(value))
                            for name, value in values.items() if value is not None])
    return filters


def partitions_lacking_stats(table: DeltaTable) -> tuple[list[list[tuple[str, str, str]]], int]:
    """A filter for each partition holding a file whose statistics miss a bound or null count of an indexed
    column, and the number of such files."""
    schema = pa.schema(table.schema().to_arrow())
    partition_by = table.metadata().partition_columns
    columns = bounded_columns(schema, indexed_columns(schema, partition_by, table.metadata().configuration))
    actions = pa.table(table.get_add_actions(flatten=False))
    if not actions.num_rows:
        return [], 0
    lacking = pc.is_null(actions.column("num_records"))
    for name in columns:
        nulls, low = _field(actions, "null_count", name), _field(actions, "min", name)
        complete = pc.and_(pc.is_valid(nulls), pc.or_(pc.is_valid(low), pc.equal(nulls, actions.column("num_records"))))
        lacking = pc.or_(lacking, pc.invert(pc.fill_null(complete, False)))
    found = actions.filter(lacking)
    if not partition_by:
        return ([[]] if found.num_rows else []), found.num_rows
    values = found.column("partition").to_pylist()
    distinct = {tuple(sorted(value.items())) for value in values}
    return [[(name, "=", _text(value)) for name, value in partition if value is not None]
            for partition in sorted(distinct)], found.num_rows


def _field(actions: pa.Table, struct: str, name: str) -> pa.ChunkedArray:
    column = actions.column(struct) if struct in actions.column_names else None
    if column is None or column.type.get_field_index(name) < 0:
        return pa.chunked_array([pa.nulls(actions.num_rows, pa.int64())])
    return pc.struct_field(column, name)


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def maintain_table(uri: str, storage_options: dict[str, str], *, today: date, closed_after_days: int = 1,
                   target_file_bytes: int = 128 * 1024 * 1024, retention_hours: float = 6,
                   vacuum: bool = True, rewrite: Callable[[list[tuple[str, str, str]]], int] | None = None
                   ) -> MaintenanceReport:
    """Write again the partitions whose files lack statistics, compact the closed partitions of the table at
    `uri`, vacuum what no recent version needs, and checkpoint the log. `rewrite(partition filter)` (the files
    it replaced) does the rewriting for a table whose own writer must (see the module's docstring)."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(f"a vacuum retention under {MIN_RETENTION_HOURS} h could delete uploads waiting for their commit")
    started = time.monotonic()
    table = DeltaTable(uri, storage_options=storage_options)
    version_before, files_before = table.version(), len(table.file_uris())
    wanted = {**CHECKPOINT_INTERVAL, **({TOMBSTONE_RETENTION: tombstone_retention(retention_hours)} if vacuum else {})}
    configuration = table.metadata().configuration
    changed = {name: value for name, value in wanted.items() if configuration.get(name) != value}
    if changed:
        try:
            table.alter.set_table_properties(changed)
        except CommitFailedError as exc:
            log.warning("%s: setting %s lost a race (%s); it is tried again on the next run",
                        uri, ", ".join(changed), str(exc).splitlines()[0][:200])
        table = DeltaTable(uri, storage_options=storage_options)
    repaired = 0
    lacking, count = partitions_lacking_stats(table)
    if lacking:
        log.info("%s: %d files lack statistics, in %d partitions: writing them again", uri, count, len(lacking))
    for partition in lacking:
        try:
            if rewrite is not None:
                repaired += rewrite(partition)
            else:
                repaired += table.optimize.z_order(["kafka_offset"], partition_filters=partition or None,
                                                   target_size=target_file_bytes).get("numFilesRemoved", 0)
        except CommitFailedError as exc:
            log.warning("%s: rewriting %s lost a race (%s); it is tried again on the next run", uri, partition,
                        str(exc).splitlines()[0][:200])
        table = DeltaTable(uri, storage_options=storage_options)
    compacted = written = 0
    # one partition at a time, each its own commit: delta-rs compacting a whole day of 10-second files
    # (117 000) in one call held 6.4 GB and ran for over 20 minutes; one partition of 2 340 files takes a
    # second and ~200 MB, and a commit that loses a race with a streaming append costs one partition
    for partition in partitions_to_compact(table, today, closed_after_days):
        if rewrite is not None:
            replaced = rewrite(partition)
            compacted, written = compacted + replaced, written + (1 if replaced else 0)
            continue
        try:
            metrics = table.optimize.compact(partition_filters=partition, target_size=target_file_bytes)
        except CommitFailedError as exc:
            log.warning("%s: compacting %s lost a race (%s); it is tried again on the next run", uri, partition,
                        str(exc).splitlines()[0][:200])
            table = DeltaTable(uri, storage_options=storage_options)
            continue
        compacted += metrics.get("numFilesRemoved", 0)
        written += metrics.get("numFilesAdded", 0)
    if compacted:
        log.info("%s: compacted %d files into %d", uri, compacted, written)
    vacuumed = []
    if vacuum:
        table = DeltaTable(uri, storage_options=storage_options)
        # full: also the uploads no version refers to; a file is kept while it is younger than the
        # retention or its tombstone is
        vacuumed = table.vacuum(retention_hours=int(retention_hours), dry_run=False,
                                enforce_retention_duration=False, full=True)
        if vacuumed:
            log.info("%s: vacuumed %d files no version of the last %g h refers to", uri, len(vacuumed), retention_hours)
    table = DeltaTable(uri, storage_options=storage_options)
    table.create_checkpoint()
    table.cleanup_metadata()
    return MaintenanceReport(uri, version_before, table.version(), files_before, len(table.file_uris()), compacted,
                             written, len(vacuumed), time.monotonic() - started, repaired)
