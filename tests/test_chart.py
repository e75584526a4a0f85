"""The candlestick chart: one candle and one volume bar per minute, colours by direction, times in New York."""

from datetime import date, datetime, timezone

from pipelines.chart import render

DAY = date(2026, 11, 24)


def bar(minute: int, open_: float, close: float, volume: float) -> dict:
    return {"minute": datetime(2026, 11, 24, 14, 30 + minute, tzinfo=timezone.utc), "open": open_,
            "high": max(open_, close) + 1, "low": min(open_, close) - 1, "close": close, "volume": volume}


def test_each_bar_is_a_candle_and_a_volume_bar_coloured_by_its_direction():
    page = render("AAPL", DAY, [bar(1, 101, 100, 50), bar(0, 100, 101, 200), bar(2, 100, 100, 10)])
    assert page.count('class="candle up"') == 2 and page.count('class="candle down"') == 1
    assert page.count('class="volume ') == 3
    assert "09:30 O 100 H 102 L 99 C 101 V 200" in page  # sorted by minute, labelled in New York time
    assert page.index("09:30 O") < page.index("09:31 O")
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_no_bars_say_so_and_the_ticker_is_escaped():
    page = render("<b>", DAY, [])
    assert "No bars for &lt;b&gt; on 2026-11-24." in page and "<b>" not in page
