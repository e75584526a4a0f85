"""The candlestick chart: one candle and one volume bar per minute, on a real-time axis in New York time;
the ticker checked by the trades contract's rule before it names a file; news markers, the article list and
the signals' sentiment pane, every text escaped."""

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from marketstream.trades import TICKER_PATTERN
from pipelines.chart import (MARGIN, MAX_CANDLE_WIDTH, MOST_TICKS, PLOT_WIDTH, SENTIMENT_HEIGHT, NotATicker, Said, check_ticker,
                             default_path, render, time_axis, time_ticks)

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


def article(minute: int, headline: str = "Apple beats", second: int = 0, url: str = "https://news.example/1",
            sentiment: float | None = 0.5, start: datetime = OPEN) -> dict:
    return {"datetime": start + timedelta(minutes=minute, seconds=second), "headline": headline, "source": "Wire",
            "url": url, "sentiment": sentiment}


def markers(page: str) -> list[tuple[str, float]]:
    """(title, x of the marker's centre) of each news marker."""
    return [(title, float(left) + 6) for title, left in
            re.findall(r'<g class="news"><title>([^<]*)</title><path d="M([\d.]+) ', page)]


def test_a_minute_with_news_has_one_marker_over_its_candle_titled_with_its_headlines():
    page = render("AAPL", DAY, [bar(0), bar(5), bar(389)], said=Said(news=[
        article(5, "Apple beats", 10), article(5, "Apple raises guidance", 50), article(200, "Apple slips")]))
    found = markers(page)
    assert [title for title, _ in found] == ["09:35 Apple beats\n09:35 Apple raises guidance", "12:50 Apple slips"]
    assert found[0][1] == pytest.approx(candle_centres(page)[1], abs=0.01)
    assert found[1][1] == pytest.approx(MARGIN + 200.5 * PLOT_WIDTH / 390, abs=0.01)  # a minute without a bar too


def test_every_article_is_listed_those_outside_the_axis_too_without_a_marker():
    news = [article(-60, "Before the open"), article(3, "During"), article(400, "After the close")]
    page = render("AAPL", DAY, [bar(0), bar(389)], said=Said(news=news))
    assert [title for title, _ in markers(page)] == ["09:33 During"]
    assert re.findall(r"<li><time>(\d\d:\d\d)</time>", page) == ["08:30", "09:33", "16:10"]
    assert "News (3)" in page


def test_headlines_sources_and_addresses_are_text_and_only_http_addresses_are_links():
    hostile = '<img src=x onerror="alert(1)">'
    news = [article(1, hostile, url="javascript:alert(1)"), article(2, "Plain", url='https://a.example/?q="><script>'),
            {**article(3, "No source"), "source": hostile}]
    page = render("AAPL", DAY, [bar(0)], said=Said(news=news))
    assert "<img" not in page and "<script" not in page and "javascript:" not in page  # the address is not shown
    assert 'href="https://a.example/?q=&quot;&gt;&lt;script&gt;"' in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 3  # marker title, list, source


def sentiment_points(page: str, kind: str) -> list[list[tuple[float, float]]]:
    """The runs of the `kind` sentiment line: a polyline's points, or a lone minute's circle."""
    runs = []
    for points, cx, cy in re.findall(rf'<polyline class="sentiment {kind}" points="([^"]*)"/>|'
                                     rf'<circle class="sentiment {kind}" cx="([\d.]+)" cy="([\d.]+)"', page):
        runs.append([tuple(map(float, point.split(","))) for point in points.split()] if points else [(float(cx), float(cy))])
    return runs


scores = st.one_of(st.none(), st.floats(-1, 1))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(scores, scores), min_size=1, max_size=60))
def test_the_sentiment_lines_follow_each_scored_minute_and_break_where_none_is(values):
    rows = [{"minute": OPEN + timedelta(minutes=m), "news_sentiment_15m": news, "posts_sentiment_15m": posts}
            for m, (news, posts) in enumerate(values)]
    page = render("AAPL", DAY, [bar(0), bar(389)], said=Said(sentiment=rows))
    zero = float(re.search(r'<line class="zero" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"', page).group(1))
    for kind, position in (("news", 0), ("posts", 1)):
        expected, run = [], []
        for m, pair in enumerate(values):
            if pair[position] is None:
                expected, run = expected + ([run] if run else []), []
            else:
                run.append((MARGIN + (m + 0.5) * PLOT_WIDTH / 390, zero - pair[position] * SENTIMENT_HEIGHT / 2))
        expected += [run] if run else []
        drawn = sentiment_points(page, kind)
        assert [len(r) for r in drawn] == [len(r) for r in expected]
        for got, want in zip(drawn, expected):
            assert [c for point in got for c in point] == pytest.approx([c for point in want for c in point], abs=0.02)


def test_without_signals_there_is_no_sentiment_pane_and_the_page_is_as_before():
    plain = render("AAPL", DAY, [bar(0), bar(1)])
    assert 'class="zero"' not in plain and "sentiment" not in plain.split("</style>")[1]
    assert render("AAPL", DAY, [bar(0), bar(1)], said=Said()) == plain
