"""Validation helpers shared by every dataset's message parser."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import orjson
import pyarrow as pa

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE = timedelta(days=1)


class InvalidRecord(ValueError):
    """A message that does not conform to its dataset's schema; the message is the dead-letter reason."""


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise InvalidRecord(f"duplicate key {repeated[:32]!r} in a JSON object")
    return obj


def check_unique_keys(raw: bytes, obj: object) -> None:
    """Raise InvalidRecord if any JSON object in `raw` (already parsed as `obj`) repeats a key.

    Parsers keep the last of repeated keys, so `{"symbol": "../x", "symbol": "HOST"}` would pass for
    whichever value a validator happened to see: such a message is refused whole. Most messages are
    compact JSON, which re-serialises to exactly their length when no key is repeated; only the others
    are parsed again, key by key."""
    if len(orjson.dumps(obj)) != len(raw):
        json.loads(raw, object_pairs_hook=_refuse_duplicates)


def json_object(raw: bytes | None) -> dict:
    """A message value parsed as a JSON object without repeated keys, or InvalidRecord saying why not."""
    if raw is None:
        raise InvalidRecord("empty message value")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(obj).__name__}")
    check_unique_keys(raw, obj)
    return obj


def rfc3339(moment: datetime) -> str:
    """UTC with microseconds and a Z, the timestamp format of every marketstream message."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_micros(value: object, name: str, *, earliest: datetime) -> int:
    """Parse an RFC 3339 timestamp with an offset into UTC epoch microseconds, within sane bounds.

    Fractions finer than a microsecond are truncated. Timestamps before `earliest` or more than a day in
    the future are rejected: they are clock or encoding errors, and would create absurd partitions.
    """
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidRecord(f"field '{name}' must be an RFC 3339 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"field '{name}' is not an RFC 3339 timestamp: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise InvalidRecord(f"field '{name}' has no UTC offset: {value!r}")
    if moment < earliest or moment > datetime.now(timezone.utc) + MAX_FUTURE:
        raise InvalidRecord(f"field '{name}' is out of range: {value!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


ROW_INDEX = "__row"
"""Column holding each decoded row's position in its message batch (to find its offset and key)."""


def decode_each(parse, columns: pa.Schema, values: list, indices=None) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Decode messages one by one with a dataset's authoritative `parse`.

    Returns the valid rows as a table of `columns` plus `__row`, and `(position, reason)` for the others.
    `indices` restricts decoding to those positions of `values`."""
    rows, rejects = [], []
    for i in range(len(values)) if indices is None else indices:
        try:
            row = parse(values[i])
        except InvalidRecord as exc:
            rejects.append((i, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the flow or lose the message
            rejects.append((i, f"unexpected {type(exc).__name__} while parsing: {exc}"))
            continue
        row[ROW_INDEX] = i
        rows.append(row)
    schema = columns.append(pa.field(ROW_INDEX, pa.int64()))
    return pa.Table.from_pylist(rows, schema=schema), rejects
