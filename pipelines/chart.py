"""`marketstream chart`: one ticker-day of one-minute bars as a candlestick chart with volume, in a
self-contained HTML file (inline SVG: no script, no network, opens in any browser), with what was said about
the ticker that day where the lake holds it:
- a marker above each minute that has news articles (the `news` table), their headlines on hover, and every
  article of the day listed under the chart as text (a link only for an http(s) address), those outside the
  axis included;
- where the signals table (`signals`, or `signals_synthetic` for synthetic bars) has rows, a pane under the
  volume with the mean sentiment of the news and of the posts of the 15 minutes ending with each minute, in
  [-1, 1], broken where no item was scored.

- The ticker must be one by the trades contract's rule (`marketstream.trades.TICKER_PATTERN`), so it can
  never make the default file name (`<ticker>-<date>.html`, `…-synthetic.html` for synthetic bars) a path
  out of the working directory; a file the user names is written there and nowhere else, all or nothing.
- The time axis is real time: the day's NYSE session (`marketstream.calendar`), or the span of the bars
  when some lie outside it (synthetic trades, a closed day); a minute is as wide wherever it falls, so an
  hour without trades is an hour wide. Ticks fall on round New York times.
- Every text in the page is escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from marketstream.calendar import NEW_YORK, nyse
from marketstream.trades import TICKER_PATTERN
from pipelines.files import check_writable, replaced_atomically
from pipelines.query import QueryFailed, one_line
from pipelines.time_travel import Lake, TimeTravel, open_tables

WIDTH, PRICE_HEIGHT, VOLUME_HEIGHT, SENTIMENT_HEIGHT, MARGIN = 1200, 420, 120, 100, 60
PLOT_WIDTH = WIDTH - 2 * MARGIN
MINUTE = timedelta(minutes=1)
TICK_STEPS_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 240)
MOST_TICKS = 9
MAX_CANDLE_WIDTH = 24.0
"""A candle is 70 % of its minute wide, up to this many pixels: over a few minutes it would fill the page."""


class NotATicker(Exception):
    """The text given as a ticker breaks the trades contract's rule."""


class NoBars(Exception):
    """The table holds no bar of that ticker and day: nothing is drawn."""


def check_ticker(ticker: str) -> str:
    if not TICKER_PATTERN.fullmatch(ticker):
        raise NotATicker(f"{ticker[:40]!r} is not a ticker: 1 to 10 capital letters and digits, starting with a "
                         "letter, with an optional class suffix such as .B or -WS")
    return ticker


def default_path(ticker: str, day: date, synthetic: bool) -> Path:
    """`AAPL-2026-11-24.html`, or `AAPL-2026-11-24-synthetic.html`, in the working directory."""
    return Path(f"{check_ticker(ticker)}-{day.isoformat()}{'-synthetic' if synthetic else ''}.html")


def draw(lake: Lake, table: str, ticker: str, day: date, out: Path | None) -> tuple[Path, int, int]:
    """Draw `ticker`'s bars of `day` in `table` into `out` (default: `default_path`), with its news and the
    signals' sentiment where `lake` has those tables (`SAID_TABLES`); the path, the number of bars and of
    articles drawn. NotATicker, UnwritablePath, NoBars (no file written), StoreUnreachable or QueryFailed."""
    synthetic = table.endswith("_synthetic")
    path = out or default_path(ticker, day, synthetic)
    check_ticker(ticker)
    check_writable(path)
    bars = bars_of(lake, table, ticker, day)
    if not bars:
        raise NoBars(f"no bars of {ticker} on {day.isoformat()} in {table} ({lake.tables[table]}): nothing drawn")
    said = said_about(lake, ticker, day, synthetic)
    with replaced_atomically(path) as stream:
        stream.write(render(ticker, day, bars, synthetic, said).encode("utf-8"))
    return path, len(bars), len(said.news)


SAID_TABLES = ("news", "signals", "signals_synthetic")
"""The tables `said_about` reads besides the bars, by their names in `pipelines.sql_command.sql_tables`."""


@dataclass(frozen=True)
class Said:
    """What was said about a ticker on a day."""

    news: list[dict] = field(default_factory=list)
    """Its articles, oldest first: datetime, headline, source, url, sentiment (null: not scored)."""
    sentiment: list[dict] = field(default_factory=list)
    """The signals' minutes, oldest first: minute, news_sentiment_15m, posts_sentiment_15m (null: none scored)."""


def said_about(lake: Lake, ticker: str, day: date, synthetic: bool) -> Said:
    """`ticker`'s news of `day` and the sentiment of its signals (of synthetic bars when `synthetic`); nothing
    of a table `lake` does not name or that holds nothing yet."""
    signals = "signals_synthetic" if synthetic else "signals"
    news = (ticker_day_rows(lake, "news", ticker, day, ["datetime", "headline", "source", "url", "sentiment"])
            if "news" in lake.tables else [])
    sentiment = (ticker_day_rows(lake, signals, ticker, day, ["minute", "news_sentiment_15m", "posts_sentiment_15m"])
                 if signals in lake.tables else [])
    return Said(sorted(news, key=lambda row: row["datetime"]), sorted(sentiment, key=lambda row: row["minute"]))


def ticker_day_rows(lake: Lake, table: str, ticker: str, day: date, columns: list[str]) -> list[dict]:
    """The `columns` of `table`'s rows of `ticker` and `day` (a table partitioned by both: bars, signals,
    news); none when the table holds nothing yet. A column the table does not have yet is left out."""
    import pyarrow.compute as pc

    dataset = open_tables(lake, [table], TimeTravel()).datasets.get(table)
    if dataset is None:
        return []
    columns = [name for name in columns if name in dataset.schema.names]  # a table written before a column came
    try:
        rows = dataset.to_table(columns=columns, filter=(pc.field("ticker") == ticker) & (pc.field("date") == day))
    except Exception as exc:  # noqa: BLE001 - the scan failing: the store down, else one line
        lake.check_reachable()
        raise QueryFailed(f"cannot read {table}: {one_line(exc)}") from None
    return rows.to_pylist()


def bars_of(lake: Lake, table: str, ticker: str, day: date) -> list[dict]:
    """The bars of `table` for `ticker` and `day` (none when the table holds nothing yet)."""
    return ticker_day_rows(lake, table, ticker, day, ["minute", "open", "high", "low", "close", "volume"])


def time_axis(day: date, bars: list[dict]) -> tuple[datetime, datetime]:
    """Where the axis starts and ends: the day's session when every bar lies in it, else the bars' span."""
    first, last = min(b["minute"] for b in bars), max(b["minute"] for b in bars) + MINUTE
    for session in nyse().sessions(day, day):
        if session.open <= first and last <= session.close:
            return session.open, session.close
    return first, last


def render(ticker: str, day: date, bars: list[dict], synthetic: bool = False, said: Said = Said()) -> str:
    """`bars`: rows of the bars table (minute, open, high, low, close, volume), any order, at least one;
    `said`: the ticker's news and signals' sentiment that day (`said_about`)."""
    if not bars:
        raise ValueError("no bars to draw")
    title = f"{ticker} {day.isoformat()} — one-minute bars{' of synthetic trades' if synthetic else ''} (New York time)"
    bars = sorted(bars, key=lambda bar: bar["minute"])
    start, end = time_axis(day, bars)
    per_second = PLOT_WIDTH / (end - start).total_seconds()
    low, high = min(b["low"] for b in bars), max(b["high"] for b in bars)
    span = (high - low) or 1.0
    top_volume = max(b["volume"] for b in bars) or 1.0
    body_width = min(max(60 * per_second * 0.7, 1.0), MAX_CANDLE_WIDTH)
    zone = ZoneInfo(NEW_YORK)

    def x(moment: datetime) -> float:
        return MARGIN + (moment - start).total_seconds() * per_second

    def y(price: float) -> float:
        return MARGIN + (high - price) / span * PRICE_HEIGHT

    shapes = []
    volume_top = MARGIN + PRICE_HEIGHT + 20
    for bar in bars:
        centre = x(bar["minute"] + MINUTE / 2)
        kind = "up" if bar["close"] >= bar["open"] else "down"
        top, bottom = y(max(bar["open"], bar["close"])), y(min(bar["open"], bar["close"]))
        label = (f'{bar["minute"].astimezone(zone):%H:%M} O {bar["open"]:g} H {bar["high"]:g} '
                 f'L {bar["low"]:g} C {bar["close"]:g} V {bar["volume"]:g}')
        shapes.append(f'<g class="candle {kind}"><title>{html.escape(label)}</title>'
                      f'<line x1="{centre:.2f}" x2="{centre:.2f}" y1="{y(bar["high"]):.2f}" y2="{y(bar["low"]):.2f}"/>'
                      f'<rect x="{centre - body_width / 2:.2f}" y="{top:.2f}" width="{body_width:.2f}" '
                      f'height="{max(bottom - top, 1.0):.2f}"/></g>')
        height = bar["volume"] / top_volume * VOLUME_HEIGHT
        shapes.append(f'<rect class="volume {kind}" x="{centre - body_width / 2:.2f}" '
                      f'y="{volume_top + VOLUME_HEIGHT - height:.2f}" width="{body_width:.2f}" height="{height:.2f}"/>')
    shapes += news_markers(said.news, start, end, x, zone)
    bottom = volume_top + VOLUME_HEIGHT
    if said.sentiment:
        shapes += sentiment_pane(said.sentiment, start, end, x, bottom + 20)
        bottom += 20 + SENTIMENT_HEIGHT
    ticks = [f'<text class="axis" x="{x(moment):.2f}" y="{bottom + 18}" text-anchor="middle">'
             f'{moment.astimezone(zone):%H:%M}</text>' for moment in time_ticks(start, end)]
    for price in (low, (low + high) / 2, high):
        ticks.append(f'<text class="axis" x="{MARGIN - 8}" y="{y(price) + 4:.2f}" text-anchor="end">{price:.2f}</text>')
    height = bottom + MARGIN
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}">{"".join(shapes)}{"".join(ticks)}</svg>')
    return _page(title, svg + article_list(said.news, zone))


def _minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def news_markers(news: list[dict], start: datetime, end: datetime, x, zone: ZoneInfo) -> list[str]:
    """A marker above each minute of the axis that has articles; its title their times and headlines."""
    by_minute: dict[datetime, list[dict]] = {}
    for article in news:
        if start <= article["datetime"] < end:
            by_minute.setdefault(_minute_of(article["datetime"]), []).append(article)
    markers = []
    for minute, articles in sorted(by_minute.items()):
        centre = x(minute + MINUTE / 2)
        label = "\n".join(f'{a["datetime"].astimezone(zone):%H:%M} {a["headline"]}' for a in articles)
        markers.append(f'<g class="news"><title>{html.escape(label)}</title>'
                       f'<path d="M{centre - 6:.2f} {MARGIN - 22} h12 l-6 10 z"/></g>')
    return markers


def sentiment_pane(rows: list[dict], start: datetime, end: datetime, x, top: float) -> list[str]:
    """The news and posts sentiment of the 15 minutes ending with each minute, from -1 (bottom) to 1 (top), a
    line per kind broken where that minute has none scored; the zero line and a legend."""
    def y(value: float) -> float:
        return top + (1 - value) / 2 * SENTIMENT_HEIGHT

    shapes = [f'<line class="zero" x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(0):.2f}" y2="{y(0):.2f}"/>',
              f'<text class="axis" x="{MARGIN - 8}" y="{y(1) + 4:.2f}" text-anchor="end">+1</text>',
              f'<text class="axis" x="{MARGIN - 8}" y="{y(-1) + 4:.2f}" text-anchor="end">-1</text>']
    for kind, column, legend_x in (("news", "news_sentiment_15m", MARGIN), ("posts", "posts_sentiment_15m", MARGIN + 220)):
        shapes.append(f'<text class="legend {kind}" x="{legend_x}" y="{top - 4:.2f}">'
                      f'{kind} sentiment, 15 minutes</text>')
        run: list[str] = []
        for row in [*rows, None]:  # None ends the last run
            value = None if row is None or not start <= row["minute"] < end else row.get(column)
            if value is not None:
                run.append(f'{x(row["minute"] + MINUTE / 2):.2f},{y(max(-1.0, min(1.0, value))):.2f}')
            elif run:
                shapes.append(f'<polyline class="sentiment {kind}" points="{" ".join(run)}"/>' if len(run) > 1 else
                              f'<circle class="sentiment {kind}" cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}" r="2"/>')
                run = []
    return shapes


def article_list(news: list[dict], zone: ZoneInfo) -> str:
    """Every article of the day as text, oldest first; a link only for an http(s) address."""
    if not news:
        return ""
    items = []
    for article in news:
        headline = html.escape(article["headline"] or "")
        url = article.get("url") or ""
        if url.lower().startswith(("https://", "http://")):
            headline = f'<a href="{html.escape(url, quote=True)}">{headline}</a>'
        score = "" if article.get("sentiment") is None else f' <span class="score">{article["sentiment"]:+.2f}</span>'
        items.append(f'<li><time>{article["datetime"].astimezone(zone):%H:%M}</time> {headline} '
                     f'<span class="source">{html.escape(article.get("source") or "")}</span>{score}</li>')
    return f'<h2>News ({len(news)})</h2><ol class="news">{"".join(items)}</ol>'


def time_ticks(start: datetime, end: datetime) -> list[datetime]:
    """Round New York times from `start` to `end`, at most MOST_TICKS of them (fewer steps on long spans)."""
    minutes = (end - start).total_seconds() / 60
    step = next((s for s in TICK_STEPS_MINUTES if minutes / s < MOST_TICKS - 1), TICK_STEPS_MINUTES[-1])
    local = start.astimezone(ZoneInfo(NEW_YORK))
    since_midnight = local.hour * 60 + local.minute + (1 if local.second or local.microsecond else 0)
    first = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=-(-since_midnight // step) * step)
    ticks, moment = [], first
    while moment <= end:
        ticks.append(moment)
        moment += timedelta(minutes=step)
    return ticks


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.candle line {{ stroke: #555; }}
.candle.up rect, .volume.up {{ fill: #2e9d5b; }}
.candle.down rect, .volume.down {{ fill: #d04a3c; }}
.axis {{ font-size: 11px; fill: #444; }}
.news path {{ fill: #2f6fd6; }}
.zero {{ stroke: #bbb; }}
.sentiment {{ fill: none; stroke-width: 1.5; }}
.sentiment.news, circle.sentiment.news {{ stroke: #2f6fd6; }}
.sentiment.posts, circle.sentiment.posts {{ stroke: #c27c0e; }}
.legend {{ font-size: 12px; }}
.legend.news {{ fill: #2f6fd6; }}
.legend.posts {{ fill: #c27c0e; }}
ol.news {{ list-style: none; padding: 0; font-size: 14px; }}
ol.news time, ol.news .source, ol.news .score {{ color: #666; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
