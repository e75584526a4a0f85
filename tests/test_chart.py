"""The candlestick chart: one candle and one volume bar per minute, on a real-time axis in New York time;
the ticker checked by the trades contract's rule before it names a file."""

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from marketstream.trades import TICKER_PATTERN
from pipelines.chart import MARGIN, MAX_CANDLE_WIDTH, MOST_TICKS, PLOT_WIDTH, NotATicker, check_ticker, default_path, render, time_axis, time_ticks

DAY = date(2026, 11, 24)  # a full session: 14:30-21:00 UTC, 09:30-16:00 in New York
OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)


def bar(minute: int, open_: float = 100, close: float = 101, volume: float = 10, start: datetime = OPEN) -> dict:
    return {"minute": start + timedelta(minutes=minute), "open": open_, "high": max(open_, close) + 1,
            "low": min(open_, close) - 1, "close": close, "volume": volume}


def candle_centres(page: str) -> list[float]:
    return [float(x) for x in re.findall(r'<g class="candle \w+"><title>[^<]*</title><line x1="([\d.]+)"', page)]


def test_each_bar_is_a_candle_and_a_volume_bar_coloured_by_its_direction():
    page = render("AAPL", DAY, [bar(1, 101, 100, 50), bar(0, 100, 101, 200), bar(2, 100, 100, 10)])
    assert page.count('class="candle up"') == 2 and page.count('class="candle down"') == 1
    assert page.count('class="volume ') == 3
    assert "09:30 O 100 H 102 L 99 C 101 V 200" in page  # sorted by minute, labelled in New York time
    assert page.index("09:30 O") < page.index("09:31 O")
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_an_hour_without_trades_is_sixty_times_as_wide_as_a_minute():
    x = candle_centres(render("AAPL", DAY, [bar(30), bar(31), bar(91)]))
    assert (x[2] - x[1]) / (x[1] - x[0]) == pytest.approx(60, rel=0.01)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 389), min_size=2, max_size=40, unique=True))
def test_a_candle_stands_where_its_minute_falls_in_the_session(minutes):
    x = candle_centres(render("AAPL", DAY, [bar(m) for m in minutes]))
    per_minute = PLOT_WIDTH / 390
    for centre, minute in zip(x, sorted(minutes)):
        assert centre == pytest.approx(MARGIN + (minute + 0.5) * per_minute, abs=0.01)


def test_the_axis_is_the_session_and_its_ticks_round_new_york_times():
    page = render("AAPL", DAY, [bar(0), bar(389)])
    ticks = re.findall(r'text-anchor="middle">(\d\d:\d\d)</text>', page)
    assert ticks == ["10:00", "11:00", "12:00", "13:00", "14:00", "15:00", "16:00"]
    assert time_axis(DAY, [bar(0)]) == (OPEN, OPEN + timedelta(hours=6, minutes=30))


def test_bars_outside_the_session_are_drawn_over_their_own_span():
    night = datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc)  # 00:00 in New York: synthetic trades
    bars = [bar(0, start=night), bar(1, start=night), bar(4, start=night)]
    assert time_axis(DAY, bars) == (night, night + timedelta(minutes=5))
    x = candle_centres(render("AAPL", DAY, bars, synthetic=True))
    assert (x[2] - x[1]) / (x[1] - x[0]) == pytest.approx(3)
    assert time_ticks(night, night + timedelta(minutes=5))[0].strftime("%H:%M") == "00:00"


def test_a_closed_day_is_drawn_over_the_bars_span():
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=timezone.utc)
    assert time_axis(date(2026, 11, 28), [bar(0, start=saturday), bar(9, start=saturday)]) == (
        saturday, saturday + timedelta(minutes=10))


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
       st.integers(1, 24 * 60))
def test_ticks_are_few_evenly_spaced_round_new_york_times_inside_the_axis(start, minutes):
    end = start + timedelta(minutes=minutes)
    ticks = time_ticks(start, end)
    assert 1 <= len(ticks) <= MOST_TICKS
    assert all(start <= t <= end for t in ticks)
    step = (ticks[1] - ticks[0]) if len(ticks) > 1 else timedelta(minutes=1)
    assert all(b - a == step for a, b in zip(ticks, ticks[1:]))
    local = [t.astimezone(ZoneInfo("America/New_York")) for t in ticks]
    assert all((t.hour * 60 + t.minute) % (step.seconds // 60) == 0 and t.second == t.microsecond == 0 for t in local)


def test_no_bars_is_nothing_to_draw():
    with pytest.raises(ValueError):
        render("AAPL", DAY, [])


def test_every_text_is_escaped():
    page = render("<b>", DAY, [bar(0)])
    assert "&lt;b&gt;" in page and "<b>" not in page


@given(st.from_regex(TICKER_PATTERN, fullmatch=True), st.dates(), st.booleans())
def test_a_ticker_names_a_file_in_the_working_directory_and_synthetic_bars_another(ticker, day, synthetic):
    path = default_path(ticker, day, synthetic)
    assert path.parent == Path(".") and path.name.startswith(f"{ticker}-{day.isoformat()}")
    assert path.suffix == ".html" and (path.stem.endswith("-synthetic") == synthetic)
    assert default_path(ticker, day, True) != default_path(ticker, day, False)


@given(st.text(max_size=20).filter(lambda text: not TICKER_PATTERN.fullmatch(text)))
def test_a_text_that_breaks_the_ticker_rule_names_no_file(text):
    with pytest.raises(NotATicker):
        default_path(text, DAY, False)


@pytest.mark.parametrize("text", ["../../elsewhere/evil", "/etc/passwd", "aapl", "AAPL/..", ".", "A" * 11])
def test_paths_and_lowercase_are_not_tickers(text):
    with pytest.raises(NotATicker, match="is not a ticker"):
        check_ticker(text)


def test_a_candle_is_most_of_its_minute_wide_but_never_a_wall():
    widths = lambda page: {float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', page)}
    assert widths(render("AAPL", DAY, [bar(0), bar(389)])) == {round(0.7 * PLOT_WIDTH / 390, 2)}
    night = datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc)
    assert widths(render("AAPL", DAY, [bar(0, start=night)])) == {MAX_CANDLE_WIDTH}
