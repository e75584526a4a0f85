"""The NYSE regular trading session, from pandas_market_calendars.

Holidays and early closes (13:00 ET) come from the exchange calendar, and session bounds are kept in UTC,
so the weeks where US and European daylight-saving time differ need no special case. Pre-market and
after-hours trading are outside the session.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NEW_YORK = "America/New_York"
_US_PER_S = 1_000_000


@dataclass(frozen=True)
class Session:
    open: datetime
    close: datetime


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: NYSE session checks need an aware timestamp")
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * _US_PER_S + delta.microseconds


def _from_us(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(micros))


class NyseCalendar:
    """Regular NYSE sessions as sorted UTC bounds, loaded per calendar year on first use."""

    def __init__(self) -> None:
        # imported here, at the first session asked for: the exchange calendars and a year's schedule cost
        # ~9 MB beside pandas and 0.3 s of CPU (1-2 s on a loaded machine), which processes that need no
        # session (the consumers of other datasets, the CLI's queries) are spared; the stock consumer asks
        # at start, on a thread of its own (`Dataset.prepare`)
        import pandas_market_calendars as mcal

        self._calendar = mcal.get_calendar("NYSE")
        self._lock = threading.Lock()
        self._years: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _year(self, year: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            bounds = self._years.get(year)
            if bounds is None:
                schedule = self._calendar.schedule(start_date=f"{year}-01-01", end_date=f"{year}-12-31")
                bounds = tuple(
                    np.array([moment.value // 1_000 for moment in schedule[column]], dtype=np.int64)
                    for column in ("market_open", "market_close")
                )
                self._years[year] = bounds
            return bounds

    def prepare(self, year: int) -> None:
        """Load the sessions of `year` now rather than when first asked for."""
        self._year(year)

    def _bounds_around(self, micros: int) -> tuple[np.ndarray, np.ndarray]:
        year = _from_us(micros).year
        parts = [self._year(y) for y in (year - 1, year, year + 1) if 1900 < y < 2200]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def session_at(self, moment: datetime) -> Session | None:
        """The regular session that contains `moment` (open inclusive, close exclusive), if any."""
        micros = _to_us(moment)
        opens, closes = self._bounds_around(micros)
        i = int(np.searchsorted(opens, micros, side="right")) - 1
        if i >= 0 and micros < closes[i]:
            return Session(_from_us(opens[i]), _from_us(closes[i]))
        return None

    def is_open(self, moment: datetime) -> bool:
        return self.session_at(moment) is not None

    def next_open(self, moment: datetime) -> datetime:
        """The first session open strictly after `moment`."""
        micros = _to_us(moment)
        opens, _ = self._bounds_around(micros)
        i = int(np.searchsorted(opens, micros, side="right"))
        if i >= len(opens):
            return self.next_open(_from_us(opens[-1]) + timedelta(days=1))
        return _from_us(opens[i])

    def sessions(self, first: date, last: date) -> list[Session]:
        """The regular sessions of the trading days from `first` to `last` (New York dates), in order."""
        found = []
        for year in range(first.year, last.year + 1):
            opens, closes = self._year(year)
            for open_us, close_us in zip(opens, closes):
                session = Session(_from_us(open_us), _from_us(close_us))
                if first <= exchange_date(session.open) <= last:
                    found.append(session)
        return found

    def in_session_us(self, micros: np.ndarray) -> np.ndarray:
        """Vectorised `is_open` for an int64 array of UTC epoch microseconds."""
        micros = np.asarray(micros, dtype=np.int64)
        result = np.zeros(len(micros), dtype=bool)
        if len(micros) == 0:
            return result
        years = {_from_us(m).year for m in (micros.min(), micros.max())}
        lo, hi = min(years), max(years)
        if not (1900 < lo and hi < 2200):
            inside = (micros >= _to_us(datetime(1901, 1, 1, tzinfo=timezone.utc))) & (
                micros < _to_us(datetime(2199, 1, 1, tzinfo=timezone.utc))
            )
            result[inside] = self.in_session_us(micros[inside])
            return result
        parts = [self._year(y) for y in range(lo, hi + 1)]
        opens = np.concatenate([p[0] for p in parts])
        closes = np.concatenate([p[1] for p in parts])
        i = np.searchsorted(opens, micros, side="right") - 1
        valid = i >= 0
        result[valid] = micros[valid] < closes[i[valid]]
        return result


_made = threading.Lock()
_nyse: NyseCalendar | None = None


def nyse() -> NyseCalendar:
    """The process's one NYSE calendar, made by whichever thread asks first (a consumer prepares it on a
    thread of its own while its worker starts: `Dataset.prepare`)."""
    global _nyse
    with _made:
        if _nyse is None:
            _nyse = NyseCalendar()
        return _nyse


def exchange_date(moment: datetime) -> date:
    """The calendar date in New York, which names the trading day a trade belongs to."""
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(NEW_YORK)).date()


def exchange_dates(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`exchange_date` of every value of a `timestamp[us, tz=UTC]` column, in one Arrow call."""
    return pc.local_timestamp(timestamps.cast(pa.timestamp("us", tz=NEW_YORK))).cast(pa.date32())
