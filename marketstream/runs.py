"""Runs of equal keys in an Arrow table sorted by them: where each destination's rows start and end.

Arrow's `group_by` does not keep the order of its input, even single-threaded (pyarrow 26 returns the
groups of a sorted table out of order), so counts from it cannot be laid over the sorted rows. `key_runs`
compares each row with the next instead; `sorted_runs` does the same for columns as integers (`sort_codes`),
sorting them too, where a fold over the runs (`numpy.ufunc.reduceat`) takes the place of a `group_by`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def one_value(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether `column` holds one value throughout, and no null (a sort by it would move nothing)."""
    bounds = pc.min_max(column)
    return column.null_count == 0 and bounds["min"] == bounds["max"]


def key_changes(table: pa.Table, keys: list[str]) -> pa.ChunkedArray:
    """For each row but the last: whether the next row's `keys` differ from its own (nulls equal nulls)."""
    rows = table.num_rows
    differs = pa.chunked_array([pa.array([False] * max(rows - 1, 0), pa.bool_())])
    for name in keys:
        column = table.column(name)
        before, after = column.slice(0, max(rows - 1, 0)), column.slice(1)
        both_null = pc.and_(pc.is_null(before), pc.is_null(after))
        differs = pc.or_(differs, pc.if_else(both_null, False, pc.fill_null(pc.not_equal(before, after), True)))
    return differs


def key_runs(table: pa.Table, keys: list[str]) -> list[tuple[tuple, int, int]]:
    """For `table` sorted by `keys` (any direction, nulls together): each run of rows with equal `keys`, in
    table order, as (the key values, first row, row count)."""
    rows = table.num_rows
    if rows == 0:
        return []
    starts = [0, *(pc.indices_nonzero(key_changes(table, keys)).to_numpy() + 1).tolist()]
    ends = [*starts[1:], rows]
    values = table.select(keys).take(pa.array(starts, pa.int64()))
    keyed = zip(*(values.column(name).to_pylist() for name in keys))
    return [(key, start, end - start) for key, start, end in zip(keyed, starts, ends)]


def sort_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An integer per value of `column` in the order `sort_by` ascending puts them (nulls last, equal to each
    other): rows sorted by the codes are sorted by the column, and equal codes are equal values."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count == 0:
        if pa.types.is_integer(array.type):
            return array.to_numpy()
        if pa.types.is_date32(array.type):
            return array.cast(pa.int32()).to_numpy()
        if pa.types.is_timestamp(array.type):
            return array.cast(pa.int64()).to_numpy()
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    ranks = pc.rank(encoded.dictionary, sort_keys="ascending").to_numpy()  # nulls rank last
    return ranks[encoded.indices.to_numpy()]


def sorted_runs(keys: list[np.ndarray], then: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows given by their `keys` and `then` columns (integers of one length, as `sort_codes` makes them) ->
    (the order sorting them by `keys`, then by `then`, ties kept in row order; where each run of equal `keys`
    starts in that order)."""
    rows = len(keys[0])
    varying = [key for key in keys if rows and key.min() != key.max()]  # a constant key orders nothing
    order = np.lexsort([*reversed(then), *reversed(varying)]) if rows and (varying or then) else np.arange(rows)
    changes = np.zeros(max(rows - 1, 0), dtype=bool)
    for key in varying:
        ordered = key[order]
        changes |= ordered[1:] != ordered[:-1]
    return order, np.concatenate([np.zeros(min(rows, 1), dtype=np.int64), np.flatnonzero(changes) + 1])
