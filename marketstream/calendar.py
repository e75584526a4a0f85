"""The NYSE regular trading session, from pandas_market_calendars.

Holidays and early closes (13:00 ET) come from the exchange calendar, and session bounds are kept in UTC,
so the weeks where US and European daylight-saving time differ need no special case. Pre-market and
after-hours trading are outside the session.

The sessions of 1990-2045 ship with the package (`nyse_sessions.json`: the weekdays without a session and
the sessions of other hours than 09:30-16:00 New York time), written by the pinned pandas_market_calendars
(`python -m marketstream.calendar` writes it again) and used only while that very version is installed: a
year it lacks, or another version, asks pandas_market_calendars itself. The calendar library and pandas
cost a process ~45 MB and ~1 s of CPU to load; a stock consumer, which must check every real trade against
the session, holds neither. `tests/test_calendar.py` compares every year of the file with the library's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NEW_YORK = "America/New_York"
CALENDAR_LIBRARY = "pandas_market_calendars"
SESSIONS_FILE = Path(__file__).with_name("nyse_sessions.json")
SHIPPED_YEARS = (1990, 2045)
REGULAR_HOURS = ("09:30", "16:00")
_US_PER_S = 1_000_000

log = logging.getLogger(__name__)


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


Bounds = tuple[np.ndarray, np.ndarray]
"""The open and close of each session, UTC epoch microseconds, in order."""


def library_sessions(year: int) -> Bounds:
    """The sessions of `year` as pandas_market_calendars gives them (imported on first use)."""
    import pandas_market_calendars as mcal

    schedule = mcal.get_calendar("NYSE").schedule(start_date=f"{year}-01-01", end_date=f"{year}-12-31")
    return tuple(np.array([moment.value // 1_000 for moment in schedule[column]], dtype=np.int64)
                 for column in ("market_open", "market_close"))


def shipped_table(path: Path = SESSIONS_FILE) -> dict | None:
    """The sessions table at `path`, if the installed pandas_market_calendars is the version that wrote it."""
    table = json.loads(path.read_text())
    installed = {CALENDAR_LIBRARY: version(CALENDAR_LIBRARY)}
    if table["written_by"] == installed:
        return table
    # said, since asking the library costs each process that checks sessions ~45 MB and ~1 s of CPU
    log.info("NYSE sessions: %s was written by %s %s and %s is installed: the library is asked instead "
             "(python -m marketstream.calendar writes the file for it)", path.name, CALENDAR_LIBRARY,
             table["written_by"].get(CALENDAR_LIBRARY), installed[CALENDAR_LIBRARY])
    return None


def _days_of(year: int) -> Iterator[date]:
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=1)


def table_sessions(table: dict, year: int) -> Bounds:
    """The sessions of `year` from a table of `SESSIONS_FILE`'s form: every weekday but those closed, at the
    regular hours unless the day has hours of its own (New York time)."""
    new_york, closed, hours = ZoneInfo(NEW_YORK), set(table["closed"].get(str(year), ())), table["hours"]
    opens, closes = [], []
    for day in _days_of(year):
        iso = day.isoformat()
        if iso in hours or (day.weekday() < 5 and iso[5:] not in closed):
            for clock, bounds in zip(hours.get(iso, table["regular_hours"]), (opens, closes)):
                bounds.append(_to_us(datetime.combine(day, time.fromisoformat(clock), new_york)))
    return np.array(opens, dtype=np.int64), np.array(closes, dtype=np.int64)


def sessions_table(first: int, last: int) -> dict:
    """The table `table_sessions` reads, of the years `first` to `last`, from pandas_market_calendars."""
    new_york = ZoneInfo(NEW_YORK)
    closed: dict[str, list[str]] = {}
    hours: dict[str, list[str]] = {}
    for year in range(first, last + 1):
        sessions = {}
        for open_us, close_us in zip(*library_sessions(year)):
            local = [_from_us(moment).astimezone(new_york) for moment in (open_us, close_us)]
            if any(moment.second or moment.microsecond for moment in local):
                raise ValueError(f"a session of {local[0].date()} does not start and end on a minute")
            sessions[local[0].date()] = [moment.strftime("%H:%M") for moment in local]
        for day in _days_of(year):
            if day not in sessions and day.weekday() < 5:
                closed.setdefault(str(year), []).append(day.isoformat()[5:])
            if day in sessions and (sessions[day] != list(REGULAR_HOURS) or day.weekday() >= 5):
                hours[day.isoformat()] = sessions[day]
    return {"written_by": {CALENDAR_LIBRARY: version(CALENDAR_LIBRARY)}, "years": [first, last],
            "regular_hours": list(REGULAR_HOURS), "closed": closed, "hours": hours}


def write_sessions_file(table: dict, path: Path = SESSIONS_FILE) -> None:
    """`table` as JSON, one year or day per line."""
    closed = ",\n".join(f"  {json.dumps(year)}: {json.dumps(days)}" for year, days in table["closed"].items())
    hours = ",\n".join(f"  {json.dumps(day)}: {json.dumps(bounds)}" for day, bounds in table["hours"].items())
    head = {key: table[key] for key in ("written_by", "years", "regular_hours")}
    path.write_text(json.dumps(head)[:-1] + f',\n "closed": {{\n{closed}\n }},\n "hours": {{\n{hours}\n }}\n}}\n')


class NyseCalendar:
    """Regular NYSE sessions as sorted UTC bounds, loaded per calendar year on first use: from `table` (the
    shipped one by default) for the years it holds, else from pandas_market_calendars."""

    def __init__(self, table: dict | None = None, *, shipped: bool = True) -> None:
        """`table`: the sessions of some years in `SESSIONS_FILE`'s form; by default the shipped ones, if
        their library is installed; none if not `shipped`."""
        if table is None and shipped:
            table = shipped_table()
        self._table = table
        self._lock = threading.Lock()
        self._years: dict[int, Bounds] = {}

    def _year(self, year: int) -> Bounds:
        with self._lock:
            bounds = self._years.get(year)
            if bounds is None:
                bounds = table_sessions(self._table, year) if self._tabled(year) else library_sessions(year)
                self._years[year] = bounds
            return bounds

    def _tabled(self, year: int) -> bool:
        return self._table is not None and self._table["years"][0] <= year <= self._table["years"][1]

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
    return moment.astimezone(ZoneInfo(NEW_YORK)).date()


def exchange_dates(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """`exchange_date` of every value of a `timestamp[us, tz=UTC]` column, in one Arrow call."""
    return pc.local_timestamp(timestamps.cast(pa.timestamp("us", tz=NEW_YORK))).cast(pa.date32())


if __name__ == "__main__":
    write_sessions_file(sessions_table(*SHIPPED_YEARS))
    print(f"wrote {SESSIONS_FILE}")
