"""Window-batching of keyed Arrow tables: emit a key's rows once the first is `max_age` old, once the
process holds too many rows, and at end of input.

Unlike `bytewax.operators.collect`, whose timeout restarts with every item, the age here is counted from
the first row of a batch, so a steady trickle still flushes within `max_age`. Rows travel as Arrow
tables, so a batch of 100 000 rows is a handful of objects, cheap to hold and to snapshot. A process-wide
`BufferBudget` caps the rows held across all keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

_NOTHING: tuple = ()


class BufferBudget:
    """Rows held by all batchers of this process. Past `limit`, a batcher that receives rows and holds at
    least its fair share (`limit` / batchers holding rows) flushes, so memory stays bounded however many
    keys are open, and the largest batches, not whichever receives rows next, become files."""

    def __init__(self, limit: int):
        self.limit = limit
        self.rows = 0
        self.holders = 0
        self._lock = threading.Lock()

    def add(self, rows: int, held_before: int) -> bool:
        """Count `rows` more for a batcher that held `held_before`; True if the process now holds more
        than its limit."""
        with self._lock:
            self.rows += rows
            if not held_before and rows:
                self.holders += 1
            return self.rows > self.limit

    def release(self, rows: int) -> None:
        """A batcher holding `rows` flushed them all."""
        with self._lock:
            self.rows -= rows
            if rows:
                self.holders -= 1

    def fair_share(self) -> float:
        return self.limit / max(1, self.holders)


class TableBatcher(StatefulBatchLogic[pa.Table, pa.Table, tuple[list[pa.Table], datetime | None]]):
    """Holds the tables of one key and emits them as one table when the first is `max_age` old, when the
    process holds more rows than its `BufferBudget` allows, and at end of input."""

    def __init__(self, max_age: timedelta, budget: BufferBudget, state=None, now=lambda: datetime.now(timezone.utc),
                 on_flush: Callable[[int, timedelta], None] | None = None):
        """`on_flush(rows, age)` is told of each flush: its rows and how long ago its first row arrived."""
        self._max_age = max_age
        self._budget = budget
        self._now = now
        self._on_flush = on_flush
        self._tables, self._deadline = state if state is not None else ([], None)
        self._rows = sum(t.num_rows for t in self._tables)
        budget.add(self._rows, 0)

    def on_batch(self, values: list[pa.Table]):
        if not self._tables:
            self._deadline = self._now() + self._max_age
        self._tables.extend(values)
        added = sum(t.num_rows for t in values)
        over_budget = self._budget.add(added, self._rows)
        self._rows += added
        if over_budget and self._rows >= self._budget.fair_share():
            return self._flush()
        return _NOTHING, StatefulBatchLogic.RETAIN

    def on_notify(self):
        return self._flush()

    def on_eof(self):
        return self._flush()

    def _flush(self):
        tables, rows, self._tables, self._rows = self._tables, self._rows, [], 0
        self._budget.release(rows)
        if tables and self._on_flush is not None and self._deadline is not None:
            self._on_flush(rows, self._now() - (self._deadline - self._max_age))
        return ((pa.concat_tables(tables),) if tables else _NOTHING), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self._deadline if self._tables else None

    def snapshot(self):
        return (list(self._tables), self._deadline)
