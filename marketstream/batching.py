"""Window-batching of keyed rows: emit a key's rows once they reach a row count or an age, and at EOF.

Unlike `bytewax.operators.collect`, whose timeout restarts with every item, the age here is counted from
the first row of a batch, so a steady trickle still flushes within `max_age`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bytewax.operators import StatefulBatchLogic

_NOTHING: tuple = ()


class SizeOrAgeBatcher(StatefulBatchLogic[dict, list[dict], tuple[list[dict], datetime | None]]):
    def __init__(self, max_rows: int, max_age: timedelta, state=None, now=lambda: datetime.now(timezone.utc)):
        self._max_rows = max_rows
        self._max_age = max_age
        self._now = now
        self._rows, self._deadline = state if state is not None else ([], None)

    def on_batch(self, values: list[dict]):
        if not self._rows:
            self._deadline = self._now() + self._max_age
        self._rows.extend(values)
        if len(self._rows) < self._max_rows:
            return _NOTHING, StatefulBatchLogic.RETAIN
        full = len(self._rows) - len(self._rows) % self._max_rows
        out = [self._rows[i : i + self._max_rows] for i in range(0, full, self._max_rows)]
        self._rows = self._rows[full:]
        if self._rows:
            return out, StatefulBatchLogic.RETAIN
        return out, StatefulBatchLogic.DISCARD

    def on_notify(self):
        return self._flush()

    def on_eof(self):
        return self._flush()

    def _flush(self):
        rows, self._rows = self._rows, []
        return ((rows,) if rows else _NOTHING), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline if self._rows else None

    def snapshot(self):
        return (list(self._rows), self._deadline)
