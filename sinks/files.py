"""What the lake sinks write: `FileRows`, the rows bound for one file, and their Parquet encoding.

Delivery guarantee: not applicable (no I/O); the sinks that use it state theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class FileRows:
    """Rows bound for one object: one hive partition (`prefix`), one Kafka partition."""

    prefix: str
    kafka_partition: int
    table: pa.Table
    partition_values: tuple[tuple[str, object], ...] = ()
    """The hive partition's values (`prefix` holds them encoded), for table formats that record them."""


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
