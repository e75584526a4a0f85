"""`marketstream sql` put together: the lake of the settings, the tables a query names at the versions asked
for (`pipelines.time_travel`), a locked-down DuckDB streaming the result (`pipelines.query`) into a format
(`pipelines.query_output`), on standard output or into a file written all or nothing (`pipelines.files`).

The object store is asked first: when it does not answer, that is the one thing said (exit 3, naming
S3_ENDPOINT_URL), never that a table does not exist. When the result is longer than the row limit (by
default 1 000 rows for the `table` format, none for the others), a line on stderr says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from marketstream.datasets import lake_tables, signals_tables
from marketstream.settings import MEMORY_SIZE, Settings
from pipelines import query_output
from pipelines.files import UnwritablePath, replaced_atomically
from pipelines.query import BadRequest, Outcome, QueryFailed, StoreUnreachable, connect, run, spill_directory, \
    tables_named
from pipelines.time_travel import Lake, TimeTravel, open_tables, parse_time_travel

TABLE_ROWS = 1_000
"""The `table` format's row limit unless `--limit` says otherwise."""


@dataclass(frozen=True)
class Request:
    query: str
    versions: Sequence[str] = ()
    """`table=N` texts, as given to `--version`."""
    as_of: str | None = None
    output_format: str = "table"
    output: Path | None = None
    """None: the caller's `out`."""
    limit: int | None = None
    """Rows at most; None: the format's default (TABLE_ROWS for `table`, else all); 0: all."""
    allow_files: bool = False
    memory_limit: str | None = None
    """None: SQL_MEMORY_LIMIT."""
    tables: Mapping[str, str] = field(default_factory=dict)
    """Table name -> s3:// URI: the lake's tables."""

    def row_limit(self) -> int | None:
        if self.limit is None:
            return TABLE_ROWS if self.output_format == "table" else None
        return self.limit or None


def sql_tables(settings: Settings) -> dict[str, str]:
    """The views SQL is asked over (`marketstream sql`, the console): every table of the lake and the signals
    tables, each with its URI."""
    return {**lake_tables(settings.stock_synthetic_prefix, settings.bars_bucket),
            **signals_tables(settings.stock_synthetic_prefix, settings.signals_bucket)}


def lake_of(settings: Settings, tables: Mapping[str, str]) -> Lake:
    from marketstream import preflight
    from marketstream.lake import arrow_filesystem, lake_filesystem

    def check_reachable() -> None:
        try:
            preflight.CHECKS["s3"](settings)
        except preflight.Unreachable as exc:
            raise StoreUnreachable(f"cannot reach {exc}") from None

    return Lake(tables, settings.delta_storage_options(), lake_filesystem(settings), arrow_filesystem(settings),
                check_reachable)


def answer(settings: Settings, request: Request, out: TextIO, say: Callable[[str], None]) -> Outcome:
    """Answer `request`, writing the result to `request.output` or `out`; `say` gets the line about rows
    cut. Raises BadRequest, StoreUnreachable or QueryFailed with a one-line message."""
    if request.output_format not in query_output.FORMATS:
        raise BadRequest(f"--format {request.output_format}: one of {', '.join(query_output.FORMATS)}")
    if request.output_format not in query_output.TEXT_FORMATS and request.output is None:
        raise BadRequest(f"--format {request.output_format} writes a file: give it with --output FILE")
    if request.limit is not None and request.limit < 0:
        raise BadRequest(f"--limit {request.limit}: a number of rows, 0 for all")
    if request.memory_limit is not None and not re.fullmatch(MEMORY_SIZE, request.memory_limit):
        raise BadRequest(f"--memory-limit {request.memory_limit!r}: a size such as 1GB, 512MiB or 50% (of the RAM)")
    lake = lake_of(settings, request.tables)
    travel = parse_time_travel(request.versions, request.as_of, lake.tables)
    try:
        if request.output is None:
            outcome = _answer_into(lake, travel, request, settings, query_output.binary_stream_of(out))
        else:
            with replaced_atomically(request.output) as stream:
                outcome = _answer_into(lake, travel, request, settings, stream)
    except UnwritablePath as exc:
        raise BadRequest(f"--output {exc}") from None
    if outcome.cut:
        shown = "showing" if request.output_format == "table" else "wrote"
        say(f"{shown} the first {outcome.rows:,} rows of more; use --limit N (0 for all) or --format csv")
    return outcome


def _answer_into(lake: Lake, travel: TimeTravel, request: Request, settings: Settings, stream) -> Outcome:
    lake.check_reachable()
    opened = open_tables(lake, tables_named(request.query, lake.tables), travel)
    output = query_output.result_format(request.output_format, stream)
    memory_limit = request.memory_limit or settings.sql_memory_limit
    with spill_directory() as spill:
        connection = connect(opened.datasets, allow_files=request.allow_files, memory_limit=memory_limit,
                             spill_directory=spill)
        try:
            outcome = run(connection, request.query, output, request.row_limit())
        except QueryFailed as failure:
            lake.check_reachable()  # a scan cut short by the store going down says so
            absent = "; ".join(f"{name}: no Delta table at {uri}" for name, uri in opened.absent.items()
                               if name in str(failure).lower())
            raise QueryFailed(f"{failure} ({absent})" if absent else str(failure)) from None
        finally:
            connection.close()
    output.end()
    return outcome
