"""Reading the lake back: one dataset (or its synthetic part) as an Arrow table, with its partition columns.

A Delta table (a `_delta_log/` folder) is read at its current version, so only committed files count;
a bucket of plain hive-partitioned Parquet files (`LAKE_FORMAT=parquet`) is read file by file. This is
how the demo reports what landed and how the tests check it; analysts use `marketstream sql`, deltalake,
DuckDB, polars or Spark (README).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from marketstream.settings import Settings

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    import s3fs


MAINTENANCE_COMMIT = "marketstream.maintenance"
"""The field of a commit's `commitInfo` that marks a maintenance commit the operation does not name (a table's
own writer rewriting partitions, `sinks.bars_table.BarsWriter.rewrite`), saying what it did: its readers
(the console's Tables page) list it with delta-rs's OPTIMIZE and VACUUM commits."""


def lake_filesystem(settings: Settings) -> s3fs.S3FileSystem:
    import s3fs  # here, not at the top: the dataflows that import this module for its constants never load it

    return s3fs.S3FileSystem(**settings.s3_storage_options(), skip_instance_cache=True)


def arrow_filesystem(settings: Settings):
    """pyarrow's S3 client on the store of the settings: it waits for the store without holding the GIL."""
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(**settings.arrow_s3_options())


def dataset_of(table, uri: str, arrow_filesystem) -> ds.Dataset:
    """`table` (a deltalake `DeltaTable` at `uri` on the store of `arrow_filesystem`) as a pyarrow dataset
    whose files pyarrow's own S3 client reads. deltalake's default, a Python handler over delta-rs, needs the
    GIL on the scan's threads: a scan left unfinished (a LIMIT) crashed the process at exit, and DuckDB
    scanning one deadlocked (a scan thread held an Arrow mutex while waiting for the GIL, held by another
    waiting for that mutex)."""
    import pyarrow.fs as pafs

    return table.to_pyarrow_dataset(filesystem=pafs.SubTreeFileSystem(uri.removeprefix("s3://"), arrow_filesystem))


def log_actions(entry: str) -> list[dict]:
    """The actions of one Delta log entry (`_delta_log/<version>.json`: one JSON object per line)."""
    return [json.loads(line) for line in entry.splitlines() if line.strip()]


def open_dataset(
    settings: Settings, bucket: str, partitioning: pa.Schema, prefix: str = "", schema: pa.Schema | None = None
) -> ds.Dataset:
    """The Parquet files under `bucket/prefix`; folders starting with `_` or `.` below it are not read."""
    import pyarrow.dataset as ds  # here: importing it makes pyarrow look for pandas, which consumers are spared

    fs = lake_filesystem(settings)
    base = f"{bucket}/{prefix}".rstrip("/")
    full_schema = pa.unify_schemas([schema, partitioning]) if schema is not None else None
    return ds.dataset(
        base, filesystem=fs, format="parquet", schema=full_schema,
        partitioning=ds.partitioning(partitioning, flavor="hive"),
    )


def read_table(settings: Settings, bucket: str, partitioning: pa.Schema, prefix: str = "", schema=None) -> pa.Table:
    """The rows under `bucket/prefix`: its Delta table if it is one, else its hive-partitioned files."""
    base = f"{bucket}/{prefix}".rstrip("/")
    if lake_filesystem(settings).exists(f"{base}/_delta_log"):
        return read_delta(settings, bucket, prefix)
    return open_dataset(settings, bucket, partitioning, prefix, schema).to_table()


def read_delta(settings: Settings, bucket: str, table: str = "") -> pa.Table:
    """The current version of the Delta table at `bucket` (or its sub-table `bucket/table`), partition
    columns included."""
    from deltalake import DeltaTable

    uri = f"s3://{bucket}/{table}".rstrip("/")
    return DeltaTable(uri, storage_options=settings.delta_storage_options()).to_pyarrow_table()


def is_delta_table(uri: str, storage_options: dict[str, str]) -> bool:
    """Whether a Delta table is at `uri`: false too while its bucket does not exist (a source not deployed yet)."""
    from deltalake import DeltaTable

    try:
        return DeltaTable.is_deltatable(uri, storage_options=storage_options)
    except OSError as exc:
        if _no_bucket(exc):
            return False
        raise


def delta_table_at(uri: str, storage_options: dict[str, str], kind: type | None = None):
    """The Delta table at `uri` loaded (as a `kind`, a subclass of `DeltaTable`), None where `is_delta_table`
    says there is none, in one look at the store instead of two."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return (kind or DeltaTable)(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None
    except OSError as exc:
        if _no_bucket(exc):
            return None
        raise


class LoadedTables:
    """`delta_table_at` for a reader that looks at the same tables again and again (the console's overview,
    refreshed every second; the chaos run's samples): each table is kept loaded, and a look reads only the
    commits made since the last one (`update_incremental`) instead of the last checkpoint and every commit
    after it; a table that has not changed since answers `transaction_version` from what it read before
    (delta-rs reads the log again for each). A table deleted and made anew under the same URI does not show
    in its newer commits, so each is loaded afresh at least every `reload_seconds`: what a look says is at
    most that old where that happened, and current otherwise."""

    def __init__(self, reload_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self._reload_seconds = reload_seconds
        self._clock = clock
        self._tables: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, uri: str, storage_options: dict[str, str]):
        with self._lock:
            kept = self._tables.pop(uri, None)
        if kept is not None and self._clock() - kept[1] < self._reload_seconds:
            table, loaded_at = kept
            try:
                table.update_incremental()
            except Exception:  # noqa: BLE001 - whatever it was, the table is loaded afresh instead
                table = None
            if table is not None:
                with self._lock:
                    self._tables[uri] = (table, loaded_at)
                return table
        table = delta_table_at(uri, storage_options, _table_remembering_transactions())
        if table is not None:
            with self._lock:
                self._tables[uri] = (table, self._clock())
        return table


@functools.cache
def _table_remembering_transactions() -> type:
    from deltalake import DeltaTable

    class TableRememberingTransactions(DeltaTable):
        """A `DeltaTable` that keeps the transaction versions read at its present version."""

        _versions: dict[str, int | None]
        _versions_at = -1

        def transaction_version(self, app_id: str) -> int | None:
            version = self.version()
            if self._versions_at != version:
                self._versions, self._versions_at = {}, version
            if app_id not in self._versions:
                self._versions[app_id] = super().transaction_version(app_id)
            return self._versions[app_id]

    return TableRememberingTransactions


def _no_bucket(error: OSError) -> bool:
    return "NoSuchBucket" in str(error)
