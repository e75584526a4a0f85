"""Where a batch goes in the lake: hive-style partition paths (Delta tables and plain Parquet alike) and the
plain Parquet sink's deterministic object names (a Delta table's files are named by its sink and listed in
its log).

Partition values are percent-encoded like Hive and Spark do (`%2F` for `/`, `%20` for a space): letters
and digits of any script stay readable, everything else becomes `%XX` of its UTF-8 bytes, so a value can
never add a path level or climb out of its prefix, and `urllib.parse.unquote` (which pyarrow's
`segment_encoding="uri"` and DuckDB apply) gives the original back.
"""

from __future__ import annotations

import datetime
import re
from typing import NamedTuple
from urllib.parse import quote

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SAFE_PUNCTUATION = "-_"


class UnsafeKeyError(ValueError):
    """An object key that would leave its bucket prefix."""


def encode_partition_value(value: object) -> str:
    """Encode one partition value as a single, reversible, readable path segment."""
    if value is None:
        return HIVE_NULL
    if isinstance(value, datetime.date):
        return value.isoformat()
    text = str(value)
    if text == "":
        return HIVE_NULL
    out = []
    for char in text:
        if char.isalnum() and char.isprintable() or char in _SAFE_PUNCTUATION:
            out.append(char)
        elif char == ".":
            out.append("." if text.strip(".") else "%2E")  # a dot is safe unless the value is all dots
        else:
            out.append(quote(char, safe=""))
    return "".join(out)


def partition_path(fields: list[tuple[str, object]]) -> str:
    """`[("ticker", "AAPL"), ("date", date(2026, 11, 24))]` -> `ticker=AAPL/date=2026-11-24`."""
    return "/".join(f"{name}={encode_partition_value(value)}" for name, value in fields)


def batch_object_name(topic: str, incarnation: str, kafka_partition: int, first_offset: int, last_offset: int) -> str:
    """A name fixed by what the file holds, so rewriting the same batch after a crash replaces it.

    `incarnation` is the Kafka topic id (32 hex digits): a topic deleted and created again under the same
    name starts its offsets at 0 again, and its rows must not pass for those of the old topic."""
    return f"{topic}-i{incarnation}-p{kafka_partition:04d}-{first_offset:020d}-{last_offset:020d}.parquet"


class BatchObject(NamedTuple):
    incarnation: str | None
    """None for objects written before names carried the topic id."""
    kafka_partition: int
    first_offset: int
    last_offset: int


_BATCH_NAME = re.compile(r"(?:i(?P<incarnation>[0-9a-f]{32})-)?p(?P<partition>\d{4,})-(?P<first>\d{20})-(?P<last>\d{20})\.parquet")


def parse_batch_object_name(name: str, topic: str) -> BatchObject | None:
    """The inverse of `batch_object_name` for the objects of `topic` (None for any other name)."""
    name = name.rsplit("/", 1)[-1]
    if not name.startswith(f"{topic}-"):
        return None
    match = _BATCH_NAME.fullmatch(name, len(topic) + 1)
    if match is None:
        return None
    return BatchObject(match["incarnation"], int(match["partition"]), int(match["first"]), int(match["last"]))


def object_key(*parts: str) -> str:
    """Join key parts with `/`, refusing any part that could escape the prefix it is placed under."""
    segments = [segment for part in parts if part for segment in part.split("/")]
    for segment in segments:
        if segment in ("", ".", "..") or "\\" in segment or any(not c.isprintable() for c in segment):
            raise UnsafeKeyError(f"unsafe object key segment {segment!r}")
    return "/".join(segments)
