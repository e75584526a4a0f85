"""Progress of a long command (backfill, maintain, demo): done and total units, rows, rate and time left.

On a terminal one line is redrawn in place as a bar; otherwise (a log file, CI, cron) a plain line is
written at most every `every` seconds, and once at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class Progress:
    def __init__(self, what: str, total: int, unit: str, *, counting: str = "rows", out: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic, every: float = 10.0):
        """`total` `unit`s of work (ticker-days, tables, seconds); `counting` names what `rows` counts; `out`:
        default the standard error of the moment (not of when this module was imported)."""
        self.what, self.total, self.unit, self.counting = what, total, unit, counting
        self.done = self.rows = 0
        self._out = out = out or sys.stderr
        self._tty = out.isatty() if tty is None else tty
        self._clock = clock
        self._every = every
        self._started = clock()
        self._said_at: float | None = None

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        parts = [self.what]
        if self._tty:
            filled = int(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        parts.append(f"{self.done:,}/{self.total:,} {self.unit}")
        parts.append(f"{self.rows:,} {self.counting}, {self.rows / elapsed:,.0f} {self.counting}/s")
        if 0 < self.done < self.total:
            parts.append(f"about {_duration(elapsed / self.done * (self.total - self.done))} left")
        elif self.done >= self.total:
            parts.append(f"done in {_duration(elapsed)}")
        return "  ".join(parts)

    def advance(self, units: int = 1, rows: int = 0) -> None:
        self.done += units
        self.rows += rows
        self._say(final=self.done >= self.total)

    def _say(self, final: bool = False) -> None:
        now = self._clock()
        if self._tty:
            self._out.write("\r" + self.line() + ("\n" if final else ""))
            self._out.flush()
        elif final or self._said_at is None or now - self._said_at >= self._every:
            self._out.write(self.line() + "\n")
            self._out.flush()
            self._said_at = now
