"""Reading the lake back: one dataset (or its synthetic part) as an Arrow table, with its partition columns.

A Delta table (a `_delta_log/` folder) is read at its current version, so only committed files count;
a bucket of plain hive-partitioned Parquet files (`LAKE_FORMAT=parquet`) is read file by file. This is
how the demo reports what landed and how the tests check it; analysts use `marketstream sql`, deltalake,
DuckDB, polars or Spark (README).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds

from marketstream.settings import Settings

if TYPE_CHECKING:
    import s3fs


MAINTENANCE_COMMIT = "marketstream.maintenance"
"""The field of a commit's `commitInfo` that marks a maintenance commit the operation does not name (a table's
own writer rewriting partitions, `sinks.bars_table.BarsWriter.rewrite`), saying what it did: its readers
(the console's Tables page) list it with delta-rs's OPTIMIZE and VACUUM commits."""


def lake_filesystem(settings: Settings) -> s3fs.S3FileSystem:
    import s3fs  # here, not at the top: the dataflows that import this module for its constants never load it

    return s3fs.S3FileSystem(**settings.s3_storage_options(), skip_instance_cache=True)


def open_dataset(
    settings: Settings, bucket: str, partitioning: pa.Schema, prefix: str = "", schema: pa.Schema | None = None
) -> ds.Dataset:
    """The Parquet files under `bucket/prefix`; folders starting with `_` or `.` below it are not read."""
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


def delta_table_at(uri: str, storage_options: dict[str, str]):
    """The Delta table at `uri` loaded, None where `is_delta_table` says there is none, in one look at the store
    instead of two."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return None
    except OSError as exc:
        if _no_bucket(exc):
            return None
        raise


def _no_bucket(error: OSError) -> bool:
    return "NoSuchBucket" in str(error)
