"""The engine of `marketstream sql`: which lake tables a query names, a locked-down DuckDB over them, and
the result streamed out.

- **DuckDB is locked down**: no file, network or extension access (unless `allow_files`), a memory limit,
  spills only into a temporary folder of its own, and its configuration locked before the query runs, so
  no statement can lift either. The tables are Arrow scans registered before the lock.
- **The result is streamed**: read from DuckDB in Arrow record batches and handed to the output batch by
  batch, never whole in memory; at most `limit` rows, and the caller learns whether more were cut.
  Zoned timestamps come out in `UTC` (the lake's type), whatever zone DuckDB's session names.
- **Errors are one line**: `BadRequest` (the request cannot be honoured: exit 2), `StoreUnreachable`
  (exit 3, naming S3_ENDPOINT_URL), `QueryFailed` (the query failed: exit 1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

BATCH_ROWS = 10_000
"""Rows per record batch read from DuckDB: what one step of the output holds."""


class BadRequest(Exception):
    """The request cannot be honoured as asked (a time-travel pin, an option); the message says why."""


class StoreUnreachable(Exception):
    """The object store did not answer; the message names S3_ENDPOINT_URL."""


class QueryFailed(Exception):
    """DuckDB refused or failed the query; the message is its first line."""


def tables_named(query: str, tables: Iterable[str]) -> list[str]:
    """The lake tables among the query's identifiers (quoted or not, any case; `macro` is also a DuckDB
    keyword). A column named like a table only costs opening that table; a syntax error is left for DuckDB
    to report."""
    import duckdb

    try:
        tokens = duckdb.tokenize(query)
    except duckdb.Error:
        return []
    words = set()
    for (start, kind), (end, _) in zip(tokens, [*tokens[1:], (len(query), None)]):
        if kind in (duckdb.token_type.identifier, duckdb.token_type.keyword):
            word = query[start:end].strip()
            if word.startswith('"') and word.endswith('"') and len(word) > 1:
                word = word[1:-1].replace('""', '"')
            words.add(word.lower())
    return [name for name in tables if name in words]


def connect(datasets: Mapping[str, object], *, allow_files: bool, memory_limit: str, spill_directory: str):
    """A DuckDB connection with a view of each dataset, its configuration locked: file, network and
    extension access off unless `allow_files`, at most `memory_limit`, spilling into `spill_directory`."""
    import duckdb

    try:
        connection = duckdb.connect(config={
            "enable_external_access": allow_files,
            "memory_limit": memory_limit,
            "temp_directory": spill_directory,
            "python_enable_replacements": False,  # the caller's Python variables are no tables
        })
    except duckdb.Error as exc:
        raise BadRequest(f"memory limit {memory_limit!r}: {_first_line(exc)}") from None
    for name, dataset in datasets.items():
        connection.register(name, dataset)  # an Arrow scan: works with external access off, downloads nothing
    connection.execute("SET lock_configuration = true")
    return connection


@dataclass
class Outcome:
    rows: int = 0
    """Rows written."""
    cut: bool = False
    """True when the result held more rows than the limit."""


class Output(Protocol):
    def begin(self, schema: pa.Schema) -> None: ...

    def write(self, batch: pa.RecordBatch) -> None: ...


def run(connection, query: str, output: Output, limit: int | None) -> Outcome:
    """Execute `query` and hand its rows to `output`, batch by batch, at most `limit` of them (None: all).
    A statement without a result (SET, CREATE VIEW) begins no output."""
    import duckdb

    outcome = Outcome()
    try:
        relation = connection.sql(query)
        if relation is None:
            return outcome
        reader = relation.to_arrow_reader(BATCH_ROWS)
        del relation
    except duckdb.Error as exc:
        raise QueryFailed(_first_line(exc)) from None
    schema = utc_schema(reader.schema)
    output.begin(schema)
    while limit is None or outcome.rows < limit:
        batch = _next_batch(reader)
        if batch is None:
            return outcome
        if limit is not None and outcome.rows + batch.num_rows > limit:
            batch, outcome.cut = batch.slice(0, limit - outcome.rows), True
        output.write(batch.cast(schema) if batch.schema != schema else batch)
        outcome.rows += batch.num_rows
    outcome.cut = outcome.cut or _next_batch(reader) is not None
    return outcome


def _next_batch(reader) -> pa.RecordBatch | None:
    """The next batch that holds rows, or None at the end."""
    import duckdb

    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        except (duckdb.Error, pa.ArrowException) as exc:  # an error while running: a cast, error(), …
            raise QueryFailed(_first_line(exc)) from None
        if batch.num_rows:
            return batch


def utc_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every zoned timestamp (nested ones too) in `UTC`: DuckDB's TIMESTAMPTZ is an instant,
    and the lake's timestamps are `timestamp[us, tz=UTC]`, whatever zone DuckDB's session names."""
    return pa.schema([field.with_type(_utc_type(field.type)) for field in schema], metadata=schema.metadata)


def _utc_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, "UTC")
    if pa.types.is_map(kind):
        return pa.map_(kind.key_field.with_type(_utc_type(kind.key_type)),
                       kind.item_field.with_type(_utc_type(kind.item_type)), kind.keys_sorted)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        item = kind.value_field.with_type(_utc_type(kind.value_type))
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(item, kind.list_size)
        return pa.large_list(item) if pa.types.is_large_list(kind) else pa.list_(item)
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_utc_type(kind.field(i).type)) for i in range(kind.num_fields)])
    return kind


def spill_directory() -> tempfile.TemporaryDirectory:
    """Where DuckDB may spill a large sort or join: a folder of its own, removed afterwards."""
    return tempfile.TemporaryDirectory(prefix="marketstream-sql-")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(error: BaseException) -> str:
    """An object-store client's error (several indented lines with terminal colours) as one line."""
    from pipelines.status import one_line as joined

    return joined(error)
