"""The output formats of `marketstream sql`, each written batch by batch to a binary stream.

- `table`: aligned columns for a terminal (numbers right, the rest left), widths taken from the first
  batch (a longer value later pushes its line out rather than holding rows back); NULL for nulls; nested
  values as JSON; every control character escaped, so a stored text cannot drive the terminal.
- `csv`: a header line, then RFC 4180 rows (Arrow's writer); timestamps `2026-11-24 14:30:00.123456Z`;
  nested values as JSON text, binary as base64.
- `json`: one JSON object per line (the Unicode line breaks U+0085, U+2028, U+2029 escaped, so any line
  splitter finds the same lines); timestamps ISO 8601 (`2026-11-24T14:30:00.123456Z` in UTC), dates and
  times ISO 8601, binary as base64, whole decimals (DuckDB's sums of integers) as numbers and others as
  exact text, NaN and infinities as null.
- `parquet`: the result's Arrow types exactly (zoned timestamps in UTC, as the lake's), zstd-compressed.

Each keeps at most one batch (and `table` one line per row) in memory.
"""

from __future__ import annotations

import base64
import io
import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import BinaryIO, TextIO

import orjson
import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")
TEXT_FORMATS = ("table", "csv", "json")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS_IN_JSON = {"\x85".encode(): b"\\u0085", "\u2028".encode(): b"\\u2028", "\u2029".encode(): b"\\u2029"}


class ResultFormat:
    """What `pipelines.query.run` writes into: `begin` with the result's schema, `write` each batch, and the
    caller's `end` once the rows are done."""

    _schema: pa.Schema | None = None

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def begin(self, schema: pa.Schema) -> None:
        self._schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def end(self) -> None:
        self._stream.flush()


class TableFormat(ResultFormat):
    GAP = "  "

    _widths: list[int] | None = None

    def begin(self, schema: pa.Schema) -> None:
        super().begin(schema)
        self._right = [_is_number(field.type) for field in schema]

    def write(self, batch: pa.RecordBatch) -> None:
        columns = [[_cell(value) for value in column.to_pylist()] for column in batch.columns]
        if self._widths is None:
            self._widths = [max([len(name), *map(len, cells)]) for name, cells in zip(self._schema.names, columns)]
            self._line([_escape(name) for name in self._schema.names])
        for row in zip(*columns):
            self._line(row)

    def end(self) -> None:
        if self._widths is None and self._schema is not None:
            self._widths = [len(name) for name in self._schema.names]
            self._line([_escape(name) for name in self._schema.names])
        super().end()

    def _line(self, cells) -> None:
        padded = (cell.rjust(width) if right else cell.ljust(width)
                  for cell, width, right in zip(cells, self._widths, self._right))
        self._stream.write((self.GAP.join(padded).rstrip() + "\n").encode("utf-8"))


class CsvFormat(ResultFormat):
    _writer = None

    def begin(self, schema: pa.Schema) -> None:
        import pyarrow.csv as csv

        super().begin(schema)
        self._text = [i for i, field in enumerate(schema) if _needs_text(field.type)]
        self._text_schema = pa.schema([field.with_type(pa.string()) if i in self._text else field
                                       for i, field in enumerate(schema)])
        self._writer = csv.CSVWriter(self._stream, self._text_schema)

    def write(self, batch: pa.RecordBatch) -> None:
        columns = list(batch.columns)
        for i in self._text:
            columns[i] = pa.array([None if value is None else _json_text(value) for value in columns[i].to_pylist()],
                                  pa.string())
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._text_schema))

    def end(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().end()


class JsonLinesFormat(ResultFormat):
    def write(self, batch: pa.RecordBatch) -> None:
        option = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        lines = b"".join(orjson.dumps(row, default=_json_value, option=option) for row in batch.to_pylist())
        for line_break, escaped in _LINE_BREAKS_IN_JSON.items():  # valid JSON, but line splitters split at them
            lines = lines.replace(line_break, escaped)
        self._stream.write(lines)


class ParquetFormat(ResultFormat):
    _writer = None

    def begin(self, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        super().begin(schema)
        self._writer = pq.ParquetWriter(self._stream, schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def end(self) -> None:
        if self._writer is not None:
            self._writer.close()
        super().end()


def result_format(name: str, stream: BinaryIO) -> ResultFormat:
    formats = {"table": TableFormat, "csv": CsvFormat, "json": JsonLinesFormat, "parquet": ParquetFormat}
    return formats[name](stream)


class TextSink(io.RawIOBase):
    """A binary stream that writes into a text stream (an in-process caller's `out`), decoding UTF-8."""

    def __init__(self, out: TextIO):
        super().__init__()
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._out.write(bytes(data).decode("utf-8"))
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def binary_stream_of(out: TextIO) -> BinaryIO:
    """`out`'s own bytes (standard output's buffer) when it has them, else a decoding sink into it."""
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        return buffer
    return TextSink(out)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _needs_text(kind: pa.DataType) -> bool:
    return (pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_fixed_size_binary(kind) or pa.types.is_interval(kind))


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (int, Decimal)):
        return str(value)
    return _escape(_json_text(value))


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _json_text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return orjson.dumps(value, default=_json_value, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS).decode()


def _json_value(value):
    """What orjson cannot write itself."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and -(2**63) <= value < 2**64:
            return int(value)
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "isoformat"):  # pandas' Timestamp, for nanosecond timestamps
        return value.isoformat()
    if hasattr(value, "_asdict"):  # an interval: (months, days, nanoseconds)
        return value._asdict()
    raise TypeError(f"{type(value).__name__} is not JSON")
