"""The NYSE session on its edges. 2026: Thanksgiving 26 Nov (closed), 27 Nov early close at 13:00 ET;
US daylight-saving time starts 8 Mar, Europe's 29 Mar; US ends 1 Nov, Europe's 25 Oct."""

import json
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from marketstream.calendar import (
    CALENDAR_LIBRARY,
    SESSIONS_FILE,
    SHIPPED_YEARS,
    NyseCalendar,
    exchange_date,
    exchange_dates,
    library_sessions,
    sessions_table,
    shipped_table,
    table_sessions,
    write_sessions_file,
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture(scope="module", params=["shipped", "library"])
def cal(request) -> NyseCalendar:
    return NyseCalendar(shipped=request.param == "shipped")


def test_regular_day_open_is_inclusive_and_close_exclusive(cal):
    assert not cal.is_open(utc(2026, 11, 24, 14, 29, 59))  # 09:29:59 ET, pre-market
    assert cal.is_open(utc(2026, 11, 24, 14, 30))  # 09:30 ET
    assert cal.is_open(utc(2026, 11, 24, 20, 59, 59, 999999))
    assert not cal.is_open(utc(2026, 11, 24, 21, 0))  # 16:00 ET, after-hours starts


def test_holiday_is_closed_all_day(cal):
    for hour in range(24):
        assert not cal.is_open(utc(2026, 11, 26, hour, 30))


def test_early_close_at_13_eastern(cal):
    assert cal.is_open(utc(2026, 11, 27, 17, 59))  # 12:59 ET
    assert not cal.is_open(utc(2026, 11, 27, 18, 0))  # 13:00 ET
    assert not cal.is_open(utc(2026, 11, 27, 20, 0))  # would be open on a normal day


def test_spring_weeks_when_only_us_has_moved_to_summer_time(cal):
    # 9 Mar 2026: New York is UTC-4 while Europe is still on winter time: opens 13:30 UTC
    assert not cal.is_open(utc(2026, 3, 9, 13, 29))
    assert cal.is_open(utc(2026, 3, 9, 13, 30))
    assert not cal.is_open(utc(2026, 3, 9, 20, 0))
    # the Friday before, New York was UTC-5: opened at 14:30 UTC
    assert not cal.is_open(utc(2026, 3, 6, 14, 0))
    assert cal.is_open(utc(2026, 3, 6, 20, 30))


def test_autumn_week_when_only_europe_has_moved_back(cal):
    # 27 Oct 2026: Europe on winter time, New York still UTC-4: 13:30-20:00 UTC
    assert cal.is_open(utc(2026, 10, 27, 13, 30))
    assert not cal.is_open(utc(2026, 10, 27, 20, 0))


def test_weekend_is_closed(cal):
    assert not cal.is_open(utc(2026, 11, 28, 16, 0))
    assert not cal.is_open(utc(2026, 11, 29, 16, 0))


def test_session_bounds_and_next_open(cal):
    session = cal.session_at(utc(2026, 11, 27, 15, 0))
    assert session.open == utc(2026, 11, 27, 14, 30)
    assert session.close == utc(2026, 11, 27, 18, 0)
    assert cal.next_open(utc(2026, 11, 25, 22, 0)) == utc(2026, 11, 27, 14, 30)  # skips Thanksgiving
    assert cal.next_open(utc(2026, 12, 31, 22, 0)) == utc(2027, 1, 4, 14, 30)  # crosses the year


def test_vectorised_check_agrees_with_scalar_check(cal):
    start = utc(2026, 11, 20).timestamp()
    seconds = np.random.default_rng(7).uniform(start, start + 14 * 86400, 2000)
    micros = (seconds * 1_000_000).astype(np.int64)
    expected = [cal.is_open(datetime.fromtimestamp(m / 1e6, tz=timezone.utc)) for m in micros]
    assert cal.in_session_us(micros).tolist() == expected
    assert any(expected) and not all(expected)


def test_naive_datetimes_are_refused(cal):
    with pytest.raises(ValueError, match="naive"):
        cal.is_open(datetime(2026, 11, 24, 15, 0))


def test_exchange_date_is_the_new_york_date():
    assert exchange_date(utc(2026, 11, 25, 3, 0)) == date(2026, 11, 24)  # 22:00 ET the day before
    assert exchange_date(utc(2026, 11, 25, 5, 0)) == date(2026, 11, 25)


def test_exchange_dates_of_a_column_are_exchange_date_of_each_value():
    # around both 2026 daylight-saving changes in New York, and midnight there in winter and summer
    moments = [utc(2026, 3, 8, hour, minute) for hour in range(3, 9) for minute in (0, 59)]
    moments += [utc(2026, 11, 1, hour, minute) for hour in range(3, 9) for minute in (0, 59)]
    moments += [utc(2026, 1, 15, 4, 59), utc(2026, 1, 15, 5, 0), utc(2026, 7, 15, 3, 59), utc(2026, 7, 15, 4, 0)]
    column = pa.array(moments, pa.timestamp("us", tz="UTC"))
    assert exchange_dates(column).to_pylist() == [exchange_date(moment) for moment in moments]


def test_a_prepared_year_needs_the_exchange_calendar_no_more(monkeypatch):
    from marketstream import calendar
    from marketstream.trades import prepare_session_check

    prepare_session_check(utc(2087, 6, 1))  # a year past the shipped sessions
    asked = []
    monkeypatch.setattr(calendar, "library_sessions", lambda year: asked.append(year))
    july_4th, day_after = utc(2087, 7, 4, 15), utc(2087, 7, 7, 15)  # a Friday (Independence Day), a Monday
    stamps = np.array([int(moment.timestamp() * 1_000_000) for moment in (july_4th, day_after)])
    assert calendar.nyse().in_session_us(stamps).tolist() == [False, True]
    assert asked == []


def test_every_shipped_session_is_the_calendar_librarys():
    """The library's whole schedule of the shipped years, read in one call, against the file."""
    import pandas_market_calendars as mcal

    table = shipped_table()
    assert table is not None, (f"{SESSIONS_FILE.name} was written by another {CALENDAR_LIBRARY} than the "
                               "installed one: run python -m marketstream.calendar")
    first, last = table["years"]
    assert (first, last) == SHIPPED_YEARS
    schedule = mcal.get_calendar("NYSE").schedule(start_date=f"{first}-01-01", end_date=f"{last}-12-31")
    expected = [(moment.value // 1_000, close.value // 1_000)
                for moment, close in zip(schedule["market_open"], schedule["market_close"])]
    shipped = [pair for year in range(first, last + 1) for pair in zip(*(b.tolist() for b in table_sessions(table, year)))]
    assert shipped == expected


def test_a_table_written_and_read_again_gives_the_librarys_sessions(tmp_path):
    # 2025: Jimmy Carter's day of mourning (9 Jan, a Thursday) closed, early closes on 3 Jul, 28 Nov, 24 Dec
    path = tmp_path / "sessions.json"
    write_sessions_file(sessions_table(2024, 2025), path)
    table = shipped_table(path)
    assert table["closed"]["2025"][:2] == ["01-01", "01-09"] and table["hours"]["2025-11-28"] == ["09:30", "13:00"]
    for year in (2024, 2025):
        assert [b.tolist() for b in table_sessions(table, year)] == [b.tolist() for b in library_sessions(year)]


def test_a_table_of_another_version_of_the_library_is_not_used_and_that_is_said(tmp_path, caplog):
    table = json.loads(SESSIONS_FILE.read_text())
    table["written_by"] = {CALENDAR_LIBRARY: "0.0.1"}
    table["closed"]["2026"] = []  # so wrong that using it would show: Thanksgiving open
    (tmp_path / "old.json").write_text(json.dumps(table))
    with caplog.at_level("INFO", logger="marketstream.calendar"):
        assert shipped_table(tmp_path / "old.json") is None
    assert len(caplog.records) == 1 and "0.0.1" in caplog.text and "python -m marketstream.calendar" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="marketstream.calendar"):
        assert shipped_table() is not None
    assert caplog.records == []
    assert NyseCalendar(table).is_open(utc(2026, 11, 26, 15))  # given outright, a table is used
    assert not NyseCalendar(shipped_table(tmp_path / "old.json")).is_open(utc(2026, 11, 26, 15))


def test_a_year_the_table_lacks_comes_from_the_library():
    table = json.loads(SESSIONS_FILE.read_text())
    first, last = table["years"]
    calendar = NyseCalendar(table)
    for year in (first - 1, last + 1):
        assert [b.tolist() for b in calendar._year(year)] == [b.tolist() for b in library_sessions(year)]
        assert len(calendar._year(year)[0]) > 240


def test_the_process_has_one_calendar_whichever_threads_ask_first():
    from concurrent.futures import ThreadPoolExecutor

    from marketstream.calendar import nyse

    with ThreadPoolExecutor(8) as threads:
        calendars = list(threads.map(lambda _: nyse(), range(32)))
    assert all(calendar is calendars[0] for calendar in calendars)
