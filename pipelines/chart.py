"""`marketstream chart`: one ticker-day of one-minute bars as a candlestick chart with volume, in a
self-contained HTML file (inline SVG: no script, no network, opens in any browser).

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
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from marketstream.calendar import NEW_YORK, nyse
from marketstream.trades import TICKER_PATTERN
from pipelines.files import check_writable, replaced_atomically
from pipelines.query import QueryFailed, one_line
from pipelines.time_travel import Lake, TimeTravel, open_tables

WIDTH, PRICE_HEIGHT, VOLUME_HEIGHT, MARGIN = 1200, 420, 120, 60
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


def draw(lake: Lake, table: str, ticker: str, day: date, out: Path | None) -> tuple[Path, int]:
    """Draw `ticker`'s bars of `day` in `table` into `out` (default: `default_path`); the path and the number
    of bars drawn. NotATicker, UnwritablePath, NoBars (no file written), StoreUnreachable or QueryFailed."""
    synthetic = table.endswith("_synthetic")
    path = out or default_path(ticker, day, synthetic)
    check_ticker(ticker)
    check_writable(path)
    bars = bars_of(lake, table, ticker, day)
    if not bars:
        raise NoBars(f"no bars of {ticker} on {day.isoformat()} in {table} ({lake.tables[table]}): nothing drawn")
    with replaced_atomically(path) as stream:
        stream.write(render(ticker, day, bars, synthetic).encode("utf-8"))
    return path, len(bars)


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


def render(ticker: str, day: date, bars: list[dict], synthetic: bool = False) -> str:
    """`bars`: rows of the bars table (minute, open, high, low, close, volume), any order, at least one."""
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
    ticks = [f'<text class="axis" x="{x(moment):.2f}" y="{volume_top + VOLUME_HEIGHT + 18}" text-anchor="middle">'
             f'{moment.astimezone(zone):%H:%M}</text>' for moment in time_ticks(start, end)]
    for price in (low, (low + high) / 2, high):
        ticks.append(f'<text class="axis" x="{MARGIN - 8}" y="{y(price) + 4:.2f}" text-anchor="end">{price:.2f}</text>')
    height = volume_top + VOLUME_HEIGHT + MARGIN
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}">{"".join(shapes)}{"".join(ticks)}</svg>')
    return _page(title, svg)


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
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
