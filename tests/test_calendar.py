"""The NYSE session on its edges. 2026: Thanksgiving 26 Nov (closed), 27 Nov early close at 13:00 ET;
US daylight-saving time starts 8 Mar, Europe's 29 Mar; US ends 1 Nov, Europe's 25 Oct."""

from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from marketstream.calendar import NyseCalendar, exchange_date, exchange_dates


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cal() -> NyseCalendar:
    return NyseCalendar()


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
    from marketstream.calendar import nyse
    from marketstream.trades import prepare_session_check

    prepare_session_check(utc(2087, 6, 1))
    asked = []
    monkeypatch.setattr(nyse()._calendar, "schedule", lambda **dates: asked.append(dates))
    july_4th, day_after = utc(2087, 7, 4, 15), utc(2087, 7, 7, 15)  # a Friday (Independence Day), a Monday
    stamps = np.array([int(moment.timestamp() * 1_000_000) for moment in (july_4th, day_after)])
    assert nyse().in_session_us(stamps).tolist() == [False, True]
    assert asked == []


def test_the_process_has_one_calendar_whichever_threads_ask_first():
    from concurrent.futures import ThreadPoolExecutor

    from marketstream.calendar import nyse

    with ThreadPoolExecutor(8) as threads:
        calendars = list(threads.map(lambda _: nyse(), range(32)))
    assert all(calendar is calendars[0] for calendar in calendars)
