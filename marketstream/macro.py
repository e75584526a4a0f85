"""The `macrodata` message: one FRED observation as JSON, key = alias.

    {"alias": "cpi", "series_id": "CPIAUCSL", "date": "2026-10-01", "value": 324.1,
     "realtime_start": "2026-11-13", "fetched_at": "2026-11-25T12:00:00.000000Z"}

`value` is null where FRED has no value ("."). `realtime_start` is the first day of the vintage the value
belongs to, so a revised observation arrives again with a later `realtime_start`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

import orjson

from marketstream.records import InvalidRecord, json_object, rfc3339, utc_micros

ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
SERIES_PATTERN = re.compile(r"[A-Z0-9_]{1,40}")
EARLIEST_FETCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class MacroObservation:
    alias: str
    series_id: str
    date: date
    value: float | None
    realtime_start: date
    fetched_at: datetime

    @property
    def key(self) -> str:
        return self.alias

    def to_json(self) -> bytes:
        return orjson.dumps({
            "alias": self.alias, "series_id": self.series_id, "date": self.date.isoformat(),
            "value": self.value, "realtime_start": self.realtime_start.isoformat(),
            "fetched_at": rfc3339(self.fetched_at),
        })


def _iso_date(obj: dict, name: str) -> date:
    value = obj.get(name)
    if not isinstance(value, str) or len(value) != 10:
        raise InvalidRecord(f"field '{name}' must be a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"field '{name}' is not a valid date: {value!r}") from None


def parse_macro(raw: bytes | None) -> dict:
    """Validate one `macrodata` message into a row with `alias` and `year` for partitioning."""
    obj = json_object(raw)
    alias, series_id = obj.get("alias"), obj.get("series_id")
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidRecord(f"field 'alias' must match {ALIAS_PATTERN.pattern}, got {str(alias)[:48]!r}")
    if not isinstance(series_id, str) or not SERIES_PATTERN.fullmatch(series_id):
        raise InvalidRecord(f"field 'series_id' must match {SERIES_PATTERN.pattern}, got {str(series_id)[:48]!r}")
    observed = _iso_date(obj, "date")
    if not 1800 <= observed.year <= 2200:
        raise InvalidRecord(f"field 'date' is out of range: {observed}")
    value = obj.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRecord("field 'value' must be a finite number or null")
        value = float(value)
    return {
        "alias": alias,
        "year": observed.year,
        "series_id": series_id,
        "date": observed,
        "value": value,
        "realtime_start": _iso_date(obj, "realtime_start"),
        "fetched_at": utc_micros(obj.get("fetched_at"), "fetched_at", earliest=EARLIEST_FETCH),
    }
