"""`marketstream chart`: one ticker-day of one-minute bars as a candlestick chart with volume, in a
self-contained HTML file (inline SVG: no script, no network, opens in any browser)."""

from __future__ import annotations

import html
from datetime import date
from zoneinfo import ZoneInfo

from marketstream.calendar import NEW_YORK

WIDTH, PRICE_HEIGHT, VOLUME_HEIGHT, MARGIN = 1200, 420, 120, 60


def render(ticker: str, day: date, bars: list[dict]) -> str:
    """`bars`: rows of the bars table (minute, open, high, low, close, volume), any order."""
    title = f"{ticker} {day.isoformat()} — one-minute bars (New York time)"
    if not bars:
        body = f'<p class="empty">No bars for {html.escape(ticker)} on {day.isoformat()}.</p>'
        return _page(title, body)
    bars = sorted(bars, key=lambda bar: bar["minute"])
    low, high = min(b["low"] for b in bars), max(b["high"] for b in bars)
    span = (high - low) or 1.0
    top_volume = max(b["volume"] for b in bars) or 1.0
    step = (WIDTH - 2 * MARGIN) / len(bars)
    body_width = max(step * 0.7, 1.0)

    def y(price: float) -> float:
        return MARGIN + (high - price) / span * PRICE_HEIGHT

    shapes = []
    volume_top = MARGIN + PRICE_HEIGHT + 20
    for i, bar in enumerate(bars):
        x = MARGIN + i * step + step / 2
        rising = bar["close"] >= bar["open"]
        kind = "up" if rising else "down"
        top, bottom = y(max(bar["open"], bar["close"])), y(min(bar["open"], bar["close"]))
        label = (f'{bar["minute"].astimezone(ZoneInfo(NEW_YORK)):%H:%M} O {bar["open"]:g} H {bar["high"]:g} '
                 f'L {bar["low"]:g} C {bar["close"]:g} V {bar["volume"]:g}')
        shapes.append(f'<g class="candle {kind}"><title>{html.escape(label)}</title>'
                      f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(bar["high"]):.1f}" y2="{y(bar["low"]):.1f}"/>'
                      f'<rect x="{x - body_width / 2:.1f}" y="{top:.1f}" width="{body_width:.1f}" '
                      f'height="{max(bottom - top, 1.0):.1f}"/></g>')
        height = bar["volume"] / top_volume * VOLUME_HEIGHT
        shapes.append(f'<rect class="volume {kind}" x="{x - body_width / 2:.1f}" '
                      f'y="{volume_top + VOLUME_HEIGHT - height:.1f}" width="{body_width:.1f}" height="{height:.1f}"/>')
    ticks = []
    for i in range(0, len(bars), max(len(bars) // 8, 1)):
        x = MARGIN + i * step + step / 2
        moment = bars[i]["minute"].astimezone(ZoneInfo(NEW_YORK))
        ticks.append(f'<text class="axis" x="{x:.1f}" y="{volume_top + VOLUME_HEIGHT + 18}">{moment:%H:%M}</text>')
    for price in (low, (low + high) / 2, high):
        ticks.append(f'<text class="axis" x="{MARGIN - 8}" y="{y(price) + 4:.1f}" text-anchor="end">{price:.2f}</text>')
    height = volume_top + VOLUME_HEIGHT + MARGIN
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}">{"".join(shapes)}{"".join(ticks)}</svg>')
    return _page(title, svg)


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
