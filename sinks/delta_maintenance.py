"""Keeping a Delta table of the lake fast to read: compaction, vacuum and checkpoints.

- **Compaction** rewrites the small files of closed partitions (a date at least `closed_after_days` days
  before today, a year that ended that long ago) into files of about `target_file_bytes`. It commits with
  `dataChange=false`, so readers and streaming appends see the same rows before and after, and a commit
  is atomic: a reader sees the old files or the new ones, never both. A compaction that loses a race with
  a streaming commit is simply tried again on the next run; it never touches the open partitions that
  consumers are writing to.
- **Vacuum** deletes files no version younger than `retention_hours` refers to (the compacted small files,
  uploads of a crashed consumer that were never committed). The retention must outlast the longest
  reader and any upload waiting for its commit: at least one hour is enforced, a week is the default.
  Folders starting with `_` (`_delta_log`, `_synthetic`, `_dead_letters`) are not part of the table.
- **Checkpoints** keep the log short: loading a table reads its last checkpoint and the commits after it;
  log entries older than the table's log retention are removed.

Delivery guarantee: none needed; maintenance adds, removes and rewrites files without changing a row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta

from deltalake import DeltaTable

log = logging.getLogger(__name__)

MIN_RETENTION_HOURS = 1


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


def closed_partitions(partition_by: list[str], today: date, closed_after_days: int) -> list[tuple[str, str, str]] | None:
    """A filter of the partitions no consumer writes to any more; None if the table has no time column
    among its partitions (then nothing is closed)."""
    last_closed = today - timedelta(days=closed_after_days)
    if "date" in partition_by:
        return [("date", "<=", last_closed.isoformat())]
    if "year" in partition_by:
        return [("year", "<", str(last_closed.year))]
    return None


def maintain_table(uri: str, storage_options: dict[str, str], *, today: date, closed_after_days: int = 1,
                   target_file_bytes: int = 128 * 1024 * 1024, retention_hours: float = 168,
                   vacuum: bool = True) -> MaintenanceReport:
    """Compact the closed partitions of the table at `uri`, vacuum what no recent version needs, and
    checkpoint the log."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(f"a vacuum retention under {MIN_RETENTION_HOURS} h could delete uploads waiting for their commit")
    started = time.monotonic()
    table = DeltaTable(uri, storage_options=storage_options)
    version_before, files_before = table.version(), len(table.file_uris())
    compacted = written = 0
    closed = closed_partitions(table.metadata().partition_columns, today, closed_after_days)
    if closed is not None:
        metrics = table.optimize.compact(partition_filters=closed, target_size=target_file_bytes)
        compacted, written = metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0)
        if compacted:
            log.info("%s: compacted %d files into %d", uri, compacted, written)
    vacuumed = []
    if vacuum:
        table = DeltaTable(uri, storage_options=storage_options)
        vacuumed = table.vacuum(retention_hours=int(retention_hours), dry_run=False,
                                enforce_retention_duration=False)
        if vacuumed:
            log.info("%s: vacuumed %d files no version of the last %g h refers to", uri, len(vacuumed), retention_hours)
    table = DeltaTable(uri, storage_options=storage_options)
    table.create_checkpoint()
    table.cleanup_metadata()
    return MaintenanceReport(uri, version_before, table.version(), files_before, len(table.file_uris()), compacted,
                             written, len(vacuumed), time.monotonic() - started)
