"""What the lake sinks write: `FileRows`, the rows bound for one file, how a flush of rows is cut into them
(`FileLayout`), and their Parquet encoding.

Delivery guarantee: not applicable (no I/O); the sinks that use it state theirs. Cutting keeps every row:
each lands in exactly one file, the file of its destination.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketstream.runs import key_runs, one_value
from sinks.layout import object_key, partition_path

PREFIX_COLUMN = "__prefix"
"""The column of a flush's rows naming, per row, an object-key prefix above the hive partitions (rows kept
apart: synthetic trades); rows without it have none."""


@dataclass(frozen=True)
class FileRows:
    """Rows bound for one object: one hive partition (`prefix`), one Kafka partition."""

    prefix: str
    kafka_partition: int
    table: pa.Table
    partition_values: tuple[tuple[str, object], ...] = ()
    """The hive partition's values (`prefix` holds them encoded), for table formats that record them."""


@dataclass(frozen=True)
class FileLayout:
    """How a flush of rows is cut into files: by the values of the hive partition columns `partitioning` (in
    path order) under each row's prefix (`PREFIX_COLUMN`, if the rows have it), at most `max_rows` rows per
    file, each holding the columns of `schema`."""

    partitioning: tuple[str, ...]
    schema: pa.Schema
    max_rows: int

    def files(self, kafka_partition: int, table: pa.Table) -> list[FileRows]:
        """The rows of one flush of `kafka_partition`, one `FileRows` per destination and `max_rows`."""
        names = list(self.partitioning)
        if PREFIX_COLUMN in table.column_names:
            names = [PREFIX_COLUMN, *names]
        # one sort, then zero-copy slices: each run of equal destination columns is one destination. A column
        # holding one value throughout (the usual prefix and date) is left out of the sort: string keys cost
        sort_keys = [(name, "ascending") for name in names if not one_value(table.column(name))]
        if sort_keys:
            table = table.sort_by(sort_keys)
        rows = table.select(self.schema.names).cast(self.schema)
        files = []
        for key, start, count in key_runs(table, names):
            run = dict(zip(names, key))
            values = tuple((name, run[name]) for name in self.partitioning)
            prefix = object_key(run.get(PREFIX_COLUMN, ""), partition_path(list(values)))
            for offset in range(0, count, self.max_rows):
                length = min(self.max_rows, count - offset)
                files.append(FileRows(prefix, kafka_partition, rows.slice(start + offset, length), values))
        return files


def by_prefix(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The rows of `table` per prefix (`PREFIX_COLUMN`; "" for rows without one, as for a null prefix),
    copied only if there are several."""
    if PREFIX_COLUMN not in table.column_names:
        return [("", table)]
    column = table.column(PREFIX_COLUMN)
    if one_value(column):
        return [(column[0].as_py(), table)] if table.num_rows else []
    return [(prefix or "", table.filter(pc.equal(column, prefix) if prefix is not None else pc.is_null(column)))
            for prefix in pc.unique(column).to_pylist()]


def offset_range(table: pa.Table) -> tuple[int, int]:
    """The first and last Kafka offset among `table`'s rows."""
    bounds = pc.min_max(table.column("kafka_offset"))
    return bounds["min"].as_py(), bounds["max"].as_py()


def encode_parquet(table: pa.Table, compression: str, dictionary_columns: list[str] | bool = True) -> bytes:
    """Rows (any order) -> Parquet bytes, sorted by Kafka offset. `dictionary_columns`: the column paths to
    dictionary-encode (True: all, Arrow's default)."""
    offsets = table.column("kafka_offset").to_numpy()
    if len(offsets) > 1 and (np.diff(offsets) < 0).any():  # rows usually come in order: sorting copies them all
        table = table.sort_by("kafka_offset")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, use_dictionary=dictionary_columns)
    return sink.getvalue().to_pybytes()
