"""The statistics a Delta log entry carries for each data file, computed from the file's Arrow rows.

Every reader's data skipping trusts them: delta-rs turns a file's `minValues`/`maxValues`/`nullCount` into
the guarantees of its Arrow dataset fragment (which DuckDB, pandas and polars filter through), and a column
with no bounds in a file that has stats at all reads as "no value matches" there. So a writer that adds
files to the log itself owes readers what delta-rs's own writer records, and `file_stats` computes exactly
that (`tests/sinks/test_delta_stats.py` compares the two on generated tables):
- `numRecords`; per indexed column `nullCount`, and `minValues`/`maxValues` when it has a non-null value;
- the indexed columns are the table's non-partition columns named by `delta.dataSkippingStatsColumns`, or
  else the first `delta.dataSkippingNumIndexedCols` (default 32) of them; lists and maps get none, a
  struct's fields get their own;
- strings longer than 64 bytes are cut as Parquet's Rust writer cuts them: the minimum to a prefix, the
  maximum to a prefix whose last character is incremented (kept whole when none can be);
- timestamps to the millisecond below (`2026-11-24T15:30:01.123Z`; a whole second without a fraction),
  which delta-rs's reader widens by a millisecond; dates as `2026-11-24`; NaN is ignored and an infinite
  bound is null, as delta-rs writes them.

Delivery guarantee: not applicable (no I/O).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

STRING_PREFIX_BYTES = 64
DEFAULT_INDEXED_COLUMNS = 32
_ABSENT = object()
"""A bound a file's stats leave out."""
NUM_INDEXED_COLUMNS = "delta.dataSkippingNumIndexedCols"
STATS_COLUMNS = "delta.dataSkippingStatsColumns"


def indexed_columns(schema: pa.Schema, partition_by: list[str], configuration: Mapping[str, str | None]) -> list[str]:
    """The columns of a table (`schema`, partitioned by `partition_by`, with table properties
    `configuration`) whose statistics every added file records."""
    data_columns = [name for name in schema.names if name not in partition_by]
    named = configuration.get(STATS_COLUMNS)
    if named:
        wanted = {name.strip().strip("`") for name in named.split(",")}
        return [name for name in data_columns if name in wanted]
    count = int(configuration.get(NUM_INDEXED_COLUMNS) or DEFAULT_INDEXED_COLUMNS)
    return data_columns if count < 0 else data_columns[:count]


def _cut_minimum(text: str) -> str:
    if len(text.encode()) <= STRING_PREFIX_BYTES:
        return text
    kept, size = [], 0
    for char in text:
        size += len(char.encode())
        if size > STRING_PREFIX_BYTES:
            break
        kept.append(char)
    return "".join(kept)


def _cut_maximum(text: str) -> str:
    """A string at least as large as `text` whose UTF-8 fits in 64 bytes where one exists, else `text`."""
    if len(text.encode()) <= STRING_PREFIX_BYTES:
        return text
    prefix = _cut_minimum(text)
    for index in range(len(prefix) - 1, -1, -1):
        char = prefix[index]
        following = ord(char) + 1
        # the next code point, if it is a character of the same UTF-8 width (not a surrogate)
        if following <= 0x10FFFF and not 0xD800 <= following <= 0xDFFF and len(chr(following).encode()) == len(char.encode()):
            return prefix[:index] + chr(following)
    return text


_EPOCH = datetime(1970, 1, 1)
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def _timestamp(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    whole = (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")
    return f"{whole}Z" if fraction == 0 else f"{whole}.{fraction // 1000:03d}Z"


def _bound(value: object, kind: pa.DataType, minimum: bool) -> object:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _cut_minimum(value) if minimum else _cut_maximum(value)
    if pa.types.is_date(kind):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # as delta-rs writes it (JSON has no infinity); the datasets reject non-finite numbers
    return value


def _column_stats(column: pa.ChunkedArray, kind: pa.DataType) -> tuple[object, object, object] | None:
    """(min, max, null count) of one column, min and max `_ABSENT` when no value bounds them; None for a type
    without statistics (lists, maps)."""
    if pa.types.is_struct(kind):
        fields = [(field.name, _column_stats(pc.struct_field(column, field.name), field.type)) for field in kind]
        pick = [{name: stats[i] for name, stats in fields if stats is not None and stats[i] is not _ABSENT}
                for i in range(3)]
        return pick[0] or _ABSENT, pick[1] or _ABSENT, pick[2]
    if pa.types.is_nested(kind) or pa.types.is_dictionary(kind):
        return None
    bounds = pc.min_max(column)  # one pass; NaN is left out unless every value is NaN
    low, high = bounds["min"], bounds["max"]
    if not low.is_valid or (pa.types.is_floating(kind) and math.isnan(low.as_py())):  # all null or NaN
        return _ABSENT, _ABSENT, column.null_count
    if pa.types.is_timestamp(kind):
        factor = _MICROS[kind.unit]
        micros = [value.value * factor if factor else value.value // 1_000 for value in (low, high)]
        return _timestamp(micros[0]), _timestamp(micros[1]), column.null_count
    return _bound(low.as_py(), kind, True), _bound(high.as_py(), kind, False), column.null_count


def file_stats(rows: pa.Table, columns: list[str]) -> str:
    """The `stats` JSON of a Delta add action for a file holding `rows`, with bounds of `columns`."""
    minimum, maximum, nulls = {}, {}, {}
    for name in columns:
        if name not in rows.column_names:
            continue  # a column the file does not have: all null (a reader fills it in)
        found = _column_stats(rows.column(name), rows.schema.field(name).type)
        if found is None:
            continue
        low, high, count = found
        nulls[name] = count
        if low is not _ABSENT:
            minimum[name], maximum[name] = low, high
    return json.dumps({"numRecords": rows.num_rows, "minValues": minimum, "maxValues": maximum, "nullCount": nulls})


def files_stats(tables: list[pa.Table], columns: list[str]) -> list[str]:
    """`file_stats` of each of `tables` (the rows of several files), computed for all at once: one grouped
    aggregation instead of a few Arrow calls per file and column, which dominated writing small files."""
    if len(tables) < 2:
        return [file_stats(table, columns) for table in tables]
    present = [name for name in columns if all(name in table.column_names for table in tables)]
    flat = [name for name in present if not pa.types.is_nested(tables[0].schema.field(name).type)
            and not pa.types.is_dictionary(tables[0].schema.field(name).type)]
    combined = pa.concat_tables([table.select(flat).append_column("_file", pa.repeat(pa.scalar(i, pa.int32()), table.num_rows))
                                 for i, table in enumerate(tables)], promote_options="permissive")
    only_null = pc.CountOptions(mode="only_null")
    grouped = combined.group_by("_file", use_threads=False).aggregate(
        [aggregate for name in flat for aggregate in ((name, "min"), (name, "max"), (name, "count", only_null))])
    grouped = grouped.sort_by("_file")
    found = {}
    for name in flat:
        kind = tables[0].schema.field(name).type
        bounds = []
        for suffix in ("min", "max"):
            column = grouped.column(f"{name}_{suffix}")
            if pa.types.is_timestamp(kind):
                column = column.cast(pa.timestamp("us", kind.tz), safe=False).cast(pa.int64())
            bounds.append(column.to_pylist())
        found[name] = (kind, *bounds, grouped.column(f"{name}_count").to_pylist())
    answers = []
    for i, table in enumerate(tables):
        minimum, maximum, nulls = {}, {}, {}
        for name in present:
            if name not in found:  # a struct: its fields' own statistics, one file at a time
                stats = _column_stats(table.column(name), table.schema.field(name).type)
                if stats is None:
                    continue
                low, high, nulls[name] = stats
            else:
                kind, lows, highs, counts = found[name]
                low, high, nulls[name] = lows[i], highs[i], counts[i]
                if low is None or (isinstance(low, float) and math.isnan(low)):
                    low = high = _ABSENT
                elif pa.types.is_timestamp(kind):
                    low, high = _timestamp(low), _timestamp(high)
                else:
                    low, high = _bound(low, kind, True), _bound(high, kind, False)
            if low is not _ABSENT:
                minimum[name], maximum[name] = low, high
        answers.append(json.dumps({"numRecords": table.num_rows, "minValues": minimum, "maxValues": maximum,
                                   "nullCount": nulls}))
    return answers


def bounded_columns(schema: pa.Schema, columns: list[str]) -> list[str]:
    """Those of `columns` whose statistics are bounds (not lists, maps or structs)."""
    return [name for name in columns if not pa.types.is_nested(schema.field(name).type)]


def has_full_stats(stats: str | None, columns: list[str], row_count: int | None = None) -> bool:
    """Whether a file's `stats` JSON bounds every one of `columns` (`bounded_columns`) that holds a value (a
    column all null has a `nullCount` equal to the rows and no bounds): what data skipping needs to read the
    file right."""
    if not stats:
        return False
    try:
        found = json.loads(stats)
    except ValueError:
        return False
    if "numRecords" not in found:
        return False
    rows = found["numRecords"] if row_count is None else row_count
    nulls, low = found.get("nullCount") or {}, found.get("minValues") or {}
    return all(name in nulls and (name in low or nulls[name] == rows) for name in columns)
